"""Sharing trained models (issue 14, part 1): export a run into a model folder, load it with
``BrainDecoder.from_pretrained``, decode with it; incompatible or incomplete folders are refused
with one clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.numpy import load_file, save_file

from braindecode_speech import __version__
from braindecode_speech.cli import EXIT_INPUT_ERROR, main
from braindecode_speech.data.studies import get as get_study
from braindecode_speech.experiments.config import ExperimentConfig
from braindecode_speech.sharing import BrainDecoder, ModelFolderError, SharingError
from braindecode_speech.sharing.folder import REQUIRED_FILES


@pytest.fixture(scope="module")
def shared(tiny_model):
    """The session's tiny run and its exported model folder (tests/conftest.py)."""
    return tiny_model


@pytest.fixture(autouse=True)
def _cache(shared, monkeypatch):
    """The exported config has no cache_dir: decoding uses the package's default cache."""
    monkeypatch.setenv("BRAINDECODE_SPEECH_CACHE", str(shared["cache"]))


def test_export_writes_a_self_contained_folder(shared):
    model, run = shared["model"], shared["run"]
    names = {p.name for p in model.iterdir()}
    assert names == {*REQUIRED_FILES, "README.md"}
    meta = json.loads((model / "config.json").read_text())
    report = json.loads((run / "report.json").read_text())
    assert meta["package_version"] == __version__
    assert meta["subjects"] == report["subjects"] == ["01", "02"]
    assert meta["config_signature"] == shared["config"].signature()
    assert meta["features"]["name"] == "mel" and meta["features"]["dimension"] == 120
    assert meta["evaluation"]["metrics"] == report["metrics"]["model"]
    assert meta["evaluation"]["controls"] == report["controls"]["model"]
    experiment = yaml.safe_load((model / "experiment.yaml").read_text())
    assert experiment["study"]["root"] is None and experiment["cache_dir"] is None
    layouts = json.loads((model / "layouts.json").read_text())["recordings"]
    assert [r["uid"] for r in layouts] == meta["recordings"] and len(layouts) == 4
    for layout in layouts:  # KIT-208 (subject 01) and CTF-275 (subject 02)
        positions = np.array(layout["positions"])
        assert positions.shape == (len(layout["ch_names"]), 2)
        assert len(layout["ch_names"]) == {"01": 208, "02": 275}[layout["subject"]]
        assert positions.min() >= 0 and positions.max() <= 1
    card = ModelCard.load(model / "README.md")
    assert card.data.library_name == "braindecode-speech"
    assert card.data.license == "cc0-1.0"  # the simulated study's dataset_description.json
    assert {"meg", "study:simulated", "features:mel"} <= set(card.data.tags)
    top10 = report["metrics"]["model"]["segment"]["top10"]
    low, high = report["ci"]["model"]["segment"]["top10"]
    assert f"{100 * top10:.1f} ({100 * low:.1f}–{100 * high:.1f})" in card.text
    chance = report["chance"]["model"]["segment"]["top10"]
    assert f"{100 * chance:.1f}" in card.text and "shuffled" in card.text
    assert "01, 02" in card.text and "Protocol" in card.text


def test_decode_gives_the_ranks_of_evaluate(shared):
    """Export → from_pretrained → decode: the study's test windows get the ranks, and the same
    best candidate, as the run's evaluation."""
    decoder = BrainDecoder.from_pretrained(str(shared["model"]))
    candidates = decoder.study_candidates(shared["root"])
    evaluated = pd.read_csv(shared["run"] / "per_window_model.csv", keep_default_na=False)
    first = evaluated.groupby("target").head(1).sort_values("target")
    assert candidates.ids == first["segment"].tolist()  # the evaluation's candidates, in order
    table = decoder.decode_study(shared["root"], candidates=candidates, top_k=5)
    assert len(table) > table["test_window"].sum() > 0  # every word onset, test ones marked
    test = table[table["test_window"]].merge(
        evaluated, left_on=["recording", "anchor"], right_on=["recording_uid", "anchor"])
    assert len(test) == len(evaluated)
    np.testing.assert_array_equal(test["rank"].astype(int), test["segment_rank"])
    np.testing.assert_array_equal(test["top1_id"], np.array(candidates.ids)[test["best_1"]])
    scores = test[[f"top{j}_score" for j in range(1, 6)]].to_numpy()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_decode_a_raw_recording(shared):
    """Python API on an mne Raw and its events: windows at every word onset that fits, scaled
    by a scaler fitted on the recording itself (it is not identified as a training one)."""
    decoder = BrainDecoder.from_pretrained(shared["model"])
    candidates = decoder.study_candidates(shared["root"])
    recording = get_study("simulated", shared["root"]).recordings()[0]
    table = decoder.decode(recording.raw(), recording.events(), candidates, subject="01",
                           top_k=3)
    by_study = decoder.decode(recording, None, candidates, top_k=3)
    np.testing.assert_allclose(table["anchor"], by_study["anchor"])
    assert (table["recording"] == "decoded/sub-01").all() and "test_window" in by_study
    assert table["rank"].between(1, len(candidates)).all()
    assert set(table["top1_id"]) <= set(candidates.ids)
    strided = decoder.decode(recording.raw(), recording.events(), candidates, step=1.0, top_k=1)
    np.testing.assert_allclose(np.diff(strided["anchor"]), 1.0)
    with pytest.raises(SharingError, match="events are needed"):
        decoder.decode(recording.raw(), None, candidates)
    with pytest.raises(SharingError, match="step positive, got top_k=10, step=0"):
        decoder.decode(recording, None, candidates, step=0)


def test_save_pretrained_round_trip(shared, tmp_path):
    decoder = BrainDecoder.from_pretrained(shared["model"])
    decoder.save_pretrained(tmp_path / "copy")
    for name in (*REQUIRED_FILES, "README.md"):
        assert (tmp_path / "copy" / name).read_bytes() == (shared["model"] / name).read_bytes(), \
            name
    again = BrainDecoder.from_pretrained(tmp_path / "copy")
    for key, value in decoder.encoder.state_dict().items():
        torch.testing.assert_close(again.encoder.state_dict()[key], value, rtol=0, atol=0)
    for ours, theirs in zip(decoder.scalers.brain, again.scalers.brain):
        np.testing.assert_array_equal(ours.center, theirs.center)
        np.testing.assert_array_equal(ours.scale, theirs.scale)
    np.testing.assert_array_equal(decoder.scalers.speech.std, again.scalers.speech.std)
    assert again.experiment == decoder.experiment and again.subjects == ["01", "02"]


def _copy(shared, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(shared["model"], folder)
    return folder


@pytest.mark.parametrize("version, loads", [("0.1.0", False), ("1.2.0", False),
                                            ("0.2.9", True)])
def test_a_folder_of_another_version_is_refused(shared, tmp_path, version, loads):
    folder = _copy(shared, tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta["package_version"] = version
    (folder / "config.json").write_text(json.dumps(meta))
    if loads:  # a patch release reads the folder
        assert BrainDecoder.from_pretrained(folder).subjects == ["01", "02"]
        return
    with pytest.raises(ModelFolderError) as error:
        BrainDecoder.from_pretrained(folder)
    message = str(error.value)
    assert str(folder) in message and version in message and "incompatible" in message


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_a_folder_with_a_missing_file_is_refused(shared, tmp_path, name):
    folder = _copy(shared, tmp_path)
    (folder / name).unlink()
    with pytest.raises(ModelFolderError, match=f"{folder}: incomplete model folder, missing {name}"):
        BrainDecoder.from_pretrained(folder)


def test_damaged_or_mismatched_files_are_refused(shared, tmp_path):
    folder = _copy(shared, tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFolderError, match="model.safetensors: not a readable safetensors"):
        BrainDecoder.from_pretrained(folder)
    shutil.copy(shared["model"] / "model.safetensors", folder / "model.safetensors")
    arrays = load_file(str(folder / "scalers.safetensors"))
    save_file({k: v for k, v in arrays.items() if k != "brain.1.scale"},
              str(folder / "scalers.safetensors"))
    with pytest.raises(ModelFolderError, match="scalers.safetensors: no 'brain.1.scale' array"):
        BrainDecoder.from_pretrained(folder)
    save_file({**arrays, "speech.std": arrays["speech.std"][:3]},
              str(folder / "scalers.safetensors"))
    with pytest.raises(ModelFolderError, match=r"'speech.std' has shape \(3,\), expected \(120,\)"):
        BrainDecoder.from_pretrained(folder)
    shutil.copy(shared["model"] / "scalers.safetensors", folder / "scalers.safetensors")
    experiment = yaml.safe_load((folder / "experiment.yaml").read_text())
    experiment["model"]["hidden"] = 16  # another encoder than the weights'
    (folder / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    with pytest.raises(ModelFolderError, match="experiment.yaml: config signature"):
        BrainDecoder.from_pretrained(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config_signature"] = ExperimentConfig.from_yaml(folder / "experiment.yaml").signature()
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFolderError, match="model.safetensors: the weights do not fit"):
        BrainDecoder.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json: not a readable JSON file"):
        BrainDecoder.from_pretrained(folder)
    for missing in (tmp_path / "nowhere", "nowhere", "./owner/name"):  # not Hub ids: no network
        with pytest.raises(ModelFolderError, match="no such model folder"):
            BrainDecoder.from_pretrained(missing)


def _candidates_folder(root: Path, folder: Path, sequence_ids: list[str]) -> list[str]:
    """Wavs of the sentences ``sequence_ids``, cut from the study's story audio, with their
    transcripts, named after their first word's segment (``<sequence_id>#0``)."""
    folder.mkdir()
    names = []
    for sid in sequence_ids:
        for recording in get_study("simulated", root).recordings():
            events = recording.events()
            part = events[(events["kind"] == "word") & (events["sequence_id"] == sid)]
            if len(part):
                break
        part = part.sort_values("word_index")
        first = part.iloc[0]
        sounds = events[events["kind"] == "sound"]
        sound = sounds[sounds["onset"] <= first["onset"]].iloc[-1]
        wav, sfreq = soundfile.read(sound["filepath"], dtype="float32")
        start = first["onset"] - sound["onset"] + sound["offset"]
        stop = part["onset"].iloc[-1] + part["duration"].iloc[-1] - sound["onset"] \
            + sound["offset"]
        name = f"{sid}#0"
        soundfile.write(folder / f"{name}.wav", wav[int(start * sfreq):int(stop * sfreq)], sfreq)
        (folder / f"{name}.txt").write_text(" ".join(part["word"]))
        names.append(name)
    return names


def _first_word_segments(candidates, n: int) -> list[str]:
    """Sequence ids of up to ``n`` candidates anchored at their sentence's first word."""
    return [c.split("#")[0] for c in candidates.ids if c.endswith("#0")][:n]


def test_folder_candidates_match_the_study_segments(shared, tmp_path):
    """A sentence's wav, as a candidate, has the speech window of the study's segment anchored
    at its first word (same features up to the audio after the sentence)."""
    decoder = BrainDecoder.from_pretrained(shared["model"])
    study = decoder.study_candidates(shared["root"])
    names = _candidates_folder(shared["root"], tmp_path / "candidates",
                               _first_word_segments(study, 3))
    from_wavs = decoder.folder_candidates(tmp_path / "candidates")
    assert from_wavs.ids == sorted(names) and len(names) >= 2 and all(from_wavs.sentences)
    assert from_wavs.features.shape[1:] == study.features.shape[1:]
    body = slice(0, int(0.8 * from_wavs.features.shape[-1]))  # before the sentence's end
    for i, name in enumerate(from_wavs.ids):
        ours = from_wavs.features[i, :, body]
        theirs = study.features[study.ids.index(name), :, body]
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9, name
    (tmp_path / "candidates" / f"{names[0]}.txt").unlink()
    with pytest.raises(SharingError, match=f"no transcript for 1 sound files: {names[0]}.txt"):
        decoder.folder_candidates(tmp_path / "candidates")


def test_cli_export_and_decode(shared, tmp_path, capsys):
    model, out = tmp_path / "model", tmp_path / "decoded" / "sub-02.csv"
    assert main(["export", "--run", str(shared["run"]), "--to", str(model)]) == 0
    assert (model / "README.md").is_file()
    assert main(["decode", "--model", str(model), "--data", str(shared["root"]), "--study",
                 "simulated", "--subject", "02", "--top-k", "3", "--out", str(out)]) == 0
    table = pd.read_csv(out, dtype={"subject": str})
    assert set(table["subject"]) == {"02"}
    assert [c for c in table.columns if c.startswith("top")] == [
        f"top{j}_{field}" for j in (1, 2, 3) for field in ("id", "sentence", "score")]
    assert out.with_suffix(".png").stat().st_size > 0
    assert "test windows" in capsys.readouterr().out
    decoder = BrainDecoder.from_pretrained(model)
    names = _candidates_folder(shared["root"], tmp_path / "wavs",
                               _first_word_segments(decoder.study_candidates(shared["root"]), 3))
    assert main(["decode", "--model", str(model), "--data", str(shared["root"]), "--study",
                 "simulated", "--candidates", str(tmp_path / "wavs"), "--top-k", "2",
                 "--out", str(tmp_path / "wavs.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "wavs.csv")["top1_id"]) <= set(names)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_cli_refuses_an_incomplete_folder_in_one_line(shared, tmp_path, capsys):
    folder = _copy(shared, tmp_path)
    (folder / "scalers.safetensors").unlink()
    code = main(["decode", "--model", str(folder), "--data", str(shared["root"]), "--study",
                 "simulated", "--out", str(tmp_path / "x.csv")])
    assert code == EXIT_INPUT_ERROR
    assert f"{folder}: incomplete model folder, missing scalers.safetensors" in \
        _one_line_error(capsys)
    assert not (tmp_path / "x.csv").exists()
    code = main(["export", "--run", str(shared["run"]), "--to", str(folder)])
    assert code == EXIT_INPUT_ERROR
    assert "already exists and is not an empty folder" in _one_line_error(capsys)
