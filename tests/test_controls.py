"""The controls of every report: within-recording/story accuracy, identity ceilings, shuffled
pairs, phase-randomised surrogates and the null model trained on mismatched pairs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braindecode_speech.evaluation.report import format_table
from braindecode_speech.evaluation.retrieval import (
    EvaluationConfig,
    RetrievalEvaluator,
    phase_randomized,
    within_subject_derangement,
)
from braindecode_speech.experiments import analysis, run_experiment
from braindecode_speech.experiments.presets import tiny_config


def _case(n_windows: int = 60, n_candidates: int = 24, shape=(8, 20), seed: int = 0) -> dict:
    """Random candidates; each of 4 recordings (2 stories, 2 subjects) hears its own share of
    the candidates, so that groups restrict them."""
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((n_candidates, *shape)).astype(np.float32)
    recording = np.arange(n_windows) % 4
    share = np.array_split(np.arange(n_candidates), 4)
    targets = np.array([rng.choice(share[r]) for r in recording])
    windows = pd.DataFrame({"subject": [f"s{r % 2}" for r in recording],
                            "recording_uid": [f"rec{r}" for r in recording],
                            "story": [f"story{r // 2}" for r in recording]})
    return dict(candidates=candidates, targets=targets, windows=windows,
                words=[f"w{m % 7}" for m in range(n_candidates)])


def _evaluate(case: dict, predictions: np.ndarray, **config):
    evaluator = RetrievalEvaluator(EvaluationConfig(n_bootstrap=200, **config))
    return evaluator.evaluate(predictions, case["candidates"], case["targets"], case["words"],
                              case["windows"])


def test_perfect_model_scores_100_percent_within_recording_and_story():
    case = _case()
    result = _evaluate(case, case["candidates"][case["targets"]])
    for control in ("within_recording", "within_story"):
        assert result.controls[control]["accuracy"] == {"top1": 1.0, "top5": 1.0, "top10": 1.0}
        assert (result.per_window[f"{control}_rank"] == 1).all()
    assert result.controls["within_recording"]["n_groups"] == 4
    assert result.controls["within_story"]["n_groups"] == 2


def test_batches_scored_as_they_come_equal_the_stored_predictions(tmp_path):
    """evaluate_batches (predictions in uneven batches, as out of a model; candidates in memory
    or memory-mapped) gives the same per-window table, metrics, CIs, per-subject rows, chance
    levels and controls as evaluate on the whole stored predictions: ranks are identical and,
    the scores of a window depending on its own prediction only, so is everything else."""
    case = _case(seed=3)
    rng = np.random.default_rng(4)
    predictions = (case["candidates"][case["targets"]]
                   + 6.0 * rng.standard_normal(case["candidates"][case["targets"]].shape)
                   ).astype(np.float32)
    np.save(tmp_path / "predictions.npy", predictions)
    np.save(tmp_path / "candidates.npy", case["candidates"])
    stored = np.load(tmp_path / "predictions.npy", mmap_mode="r")
    on_disk = np.load(tmp_path / "candidates.npy", mmap_mode="r")
    evaluator = RetrievalEvaluator(EvaluationConfig(n_bootstrap=200, chunk_size=7))
    dense = evaluator.evaluate(stored, on_disk, case["targets"], case["words"], case["windows"])
    assert 0 < dense.metrics["segment"]["top1"] < 1  # neither trivial nor hopeless
    bounds = [0, 1, 9, 10, 33, 60]
    for candidates in (case["candidates"], on_disk):
        batches = (predictions[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:]))
        streamed = evaluator.evaluate_batches(batches, candidates, case["targets"],
                                              case["words"], case["windows"])
        pd.testing.assert_frame_equal(streamed.per_window, dense.per_window)
        pd.testing.assert_frame_equal(streamed.per_subject, dense.per_subject)
        assert streamed.to_dict() == dense.to_dict()
        for column in ("segment_rank", "word_rank", "within_recording_rank",
                       "within_story_rank", "shuffled_rank", "best_1", "best_5"):
            assert streamed.per_window[column].equals(dense.per_window[column])
    with pytest.raises(ValueError, match="predictions hold 59 windows, expected 60"):
        evaluator.evaluate_batches([predictions[:50], predictions[50:59]], case["candidates"],
                                   case["targets"], case["words"], case["windows"])
    with pytest.raises(ValueError, match="more than the 60 windows"):
        evaluator.evaluate_batches([predictions, predictions[:1]], case["candidates"],
                                   case["targets"], case["words"], case["windows"])
    bad = predictions.copy()
    bad[41, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"predictions of windows \[41\] contain NaN"):
        evaluator.evaluate_batches([bad[:40], bad[40:]], case["candidates"], case["targets"],
                                   case["words"], case["windows"])


def test_within_group_ranks_match_dense_brute_force():
    case = _case(seed=1)
    rng = np.random.default_rng(2)
    predictions = (case["candidates"][case["targets"]]
                   + 3 * rng.standard_normal((60, 8, 20))).astype(np.float32)
    result = _evaluate(case, predictions, chunk_size=5)  # ranks summed over 5 chunks
    z = predictions.reshape(60, -1).astype(np.float64)
    y = case["candidates"].reshape(24, -1).astype(np.float64)
    scores = z @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T
    rows = np.arange(60)
    true = scores[rows, case["targets"]]
    for control, column in (("within_recording", "recording_uid"), ("within_story", "story")):
        labels = case["windows"][column].to_numpy()
        expected = []
        for i in rows:
            members = np.unique(case["targets"][labels == labels[i]])
            others = members[members != case["targets"][i]]
            expected.append(int((scores[i, others] > true[i]).sum()) + 1)
        np.testing.assert_array_equal(result.per_window[f"{control}_rank"], expected)
    # the shuffled control scores each window against its partner's target, among all
    decoy = result.per_window["shuffled_target"].to_numpy()
    others = scores.copy()
    others[rows, decoy] = -np.inf
    expected = (others > scores[rows, decoy][:, None]).sum(axis=1) + 1
    np.testing.assert_array_equal(result.per_window["shuffled_rank"].to_numpy(int), expected)


def test_identity_ceiling_equals_its_closed_form_on_a_hand_built_table():
    # recording A: 4 windows over 2 segments; B: 5 windows over 5; C: 12 windows over 12
    targets = np.array([0, 1, 0, 1] + list(range(2, 7)) + list(range(7, 19)))
    recordings = ["A"] * 4 + ["B"] * 5 + ["C"] * 12
    rng = np.random.default_rng(0)
    case = dict(candidates=rng.standard_normal((19, 4, 6)).astype(np.float32), targets=targets,
                words=[f"w{m}" for m in range(19)],
                windows=pd.DataFrame({"subject": "s", "recording_uid": recordings}))
    result = _evaluate(case, rng.standard_normal((21, 4, 6)).astype(np.float32))
    expected = {"top1": (4 / 2 + 5 / 5 + 12 / 12) / 21,  # min(k, n_r) / n_r per window
                "top5": (4 + 5 + 12 * 5 / 12) / 21,
                "top10": (4 + 5 + 12 * 10 / 12) / 21}
    assert result.controls["identity_ceiling"] == {"recording": pytest.approx(expected)}
    assert result.controls["within_recording"]["chance"] == pytest.approx(expected)
    assert result.controls["within_recording"]["mean_candidates"] == pytest.approx(
        (4 * 2 + 5 * 5 + 12 * 12) / 21)
    assert "within_story" not in result.controls  # no story column


@pytest.mark.parametrize("kind", ["random predictions", "perfect model shuffled"])
def test_shuffled_control_is_at_chance(kind):
    rng = np.random.default_rng(3)
    n, m = 3000, 400
    candidates = rng.standard_normal((m, 4, 8)).astype(np.float32)
    targets = rng.integers(0, m, n)
    windows = pd.DataFrame({"subject": [f"s{i % 5}" for i in range(n)]})
    predictions = (rng.standard_normal((n, 4, 8)).astype(np.float32)
                   if kind == "random predictions" else candidates[targets])
    result = RetrievalEvaluator(EvaluationConfig(n_bootstrap=200)).evaluate(
        predictions, candidates, targets, [f"w{i % 50}" for i in range(m)], windows)
    shuffled = result.controls["shuffled"]
    assert shuffled["n_windows"] == n
    for k in (1, 5, 10):
        chance = shuffled["chance"][f"top{k}"]
        assert chance == pytest.approx(k / m)
        low, high = shuffled["ci"][f"top{k}"]
        assert low - 0.005 <= chance <= high + 0.005
        assert abs(shuffled["accuracy"][f"top{k}"] - chance) < 4 * np.sqrt(chance / n)
    if kind == "perfect model shuffled":
        assert result.metrics["segment"]["top1"] == 1.0


def test_derangement_pairs_windows_of_the_same_subject_and_never_itself():
    subjects = np.array(["a", "b", "a", "a", "c", "b", "a"])
    partner = within_subject_derangement(subjects, np.random.default_rng(0))
    assert partner[4] == -1  # the only window of subject c
    kept = partner >= 0
    assert (partner[kept] != np.flatnonzero(kept)).all()
    assert (subjects[partner[kept]] == subjects[kept]).all()
    assert sorted(partner[kept]) == sorted(np.flatnonzero(kept))  # a permutation
    again = within_subject_derangement(subjects, np.random.default_rng(0))
    np.testing.assert_array_equal(partner, again)


@pytest.mark.parametrize("n_times", [50, 51])
def test_surrogates_keep_each_channels_amplitude_spectrum_and_change_phases(n_times):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, n_times)).astype(np.float32)
    x[:, 1] += np.sin(np.arange(n_times) / 3.0)
    surrogate = phase_randomized(x, np.random.default_rng(1))
    assert surrogate.shape == x.shape and surrogate.dtype == np.float32
    spectrum, new = np.fft.rfft(x, axis=-1), np.fft.rfft(surrogate, axis=-1)
    np.testing.assert_allclose(np.abs(new), np.abs(spectrum), rtol=1e-3, atol=1e-3)
    shift = np.angle(new[..., 1:-1] / spectrum[..., 1:-1])
    assert np.abs(shift).mean() > 1.0  # phases changed (uniform shifts: mean |angle| ~ pi / 2)
    np.testing.assert_allclose(shift[:, 0], shift[:, 2], atol=1e-3)  # same shift per channel
    assert not np.allclose(shift[0], shift[1], atol=1e-2)  # new shifts for every window
    assert np.abs(x - surrogate).mean() > 0.5
    np.testing.assert_array_equal(surrogate, phase_randomized(x, np.random.default_rng(1)))


def test_controls_can_be_switched_off():
    case = _case()
    result = _evaluate(case, case["candidates"][case["targets"]], controls=False)
    assert result.controls == {}
    assert not {"within_recording_rank", "shuffled_rank"} & set(result.per_window)
    assert "controls" not in format_table({"model": result})
    assert EvaluationConfig(controls=False, train_null=True).signature() == \
        EvaluationConfig().signature()


def test_table_prints_ceilings_beside_chance_and_every_control():
    case = _case()
    result = _evaluate(case, case["candidates"][case["targets"]])
    lines = format_table({"model": result}).splitlines()
    names = [line.split("  ")[0].strip() for line in lines]
    assert names[1:5] == ["model", "chance", "recording ceiling", "story ceiling"]
    ceiling = result.controls["identity_ceiling"]["recording"]["top10"]
    assert lines[3].split()[4] == f"{100 * ceiling:.1f}" and lines[3].split()[-1] == "-"
    assert "controls (segment level, %)" in lines
    for control in ("within recording", "within story", "shuffled"):
        row = next(line for line in lines if line.startswith(f"model {control}"))
        assert "100.0" in row or control == "shuffled"


@pytest.fixture(scope="module")
def tiny_run(tiny_meg_root, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny run of one short epoch with the null model, for this module."""
    folder = tmp_path_factory.mktemp("controls")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache").with_overrides({
        "optim.max_epochs": 1, "optim.batches_per_epoch": 3, "evaluation.train_null": True})
    return folder / "run", run_experiment(config, folder / "run")


def test_controls_in_the_report_of_a_tiny_run(tiny_run):
    folder, result = tiny_run
    report = json.loads((folder / "report.json").read_text())
    controls = report["controls"]["model"]
    assert {"within_recording", "within_story", "identity_ceiling", "shuffled", "surrogate",
            "train_null"} <= set(controls)
    assert set(report["controls"]["ridge"]) >= {"within_recording", "shuffled"}
    for name in ("within_recording", "within_story", "shuffled", "surrogate", "train_null"):
        for k in ("top1", "top5", "top10"):
            low, high = controls[name]["ci"][k]
            assert 0 <= low <= controls[name]["accuracy"][k] <= high <= 1
            assert 0 < controls[name]["chance"][k] <= 1
    assert controls["surrogate"]["chance"]["top10"] == pytest.approx(10 / report["n_candidates"])
    assert set(controls["identity_ceiling"]) == {"recording", "story"}
    assert (folder / "null" / "best.pt").exists()
    table = (folder / "table.txt").read_text()
    assert table.strip() == result["table"].strip()
    for label in ("recording ceiling", "model within recording", "model surrogate",
                  "model train null", "ridge shuffled"):
        assert label in table
    per_window = pd.read_csv(folder / "per_window_model.csv")
    assert per_window["voice"].nunique() >= 2 and per_window["story"].notna().all()


def test_accuracy_by_voice_and_the_controls_table_agree_with_the_report(tiny_run, tmp_path):
    folder, _ = tiny_run
    report = json.loads((folder / "report.json").read_text())
    run = analysis.load_run(folder)
    n = len(run.windows)
    within = report["controls"]["model"]["within_recording"]
    for rank, expected in (("segment_rank", report["metrics"]["model"]["segment"]),
                           ("within_recording_rank", within["accuracy"])):
        table = analysis.accuracy_by(run, "voice", rank=rank)
        assert len(table) >= 2 and table["n_windows"].sum() == n
        for k in ("top1", "top10"):
            assert (table[k] * table["n_windows"]).sum() / n == pytest.approx(expected[k])
    chance = analysis.within_recording_chance(run, "voice")
    assert list(chance.index) == list(table.index)
    assert (chance["top10"] * table["n_windows"]).sum() / n == pytest.approx(
        within["chance"]["top10"])
    controls = analysis.controls_table(run)
    assert {"within recording", "shuffled", "surrogate", "train null",
            "recording ceiling"} <= set(controls.index)
    assert controls.at["within recording", "top10"] == round(100 * within["accuracy"]["top10"], 1)
    assert controls.at["within recording", "chance top10"] == round(
        100 * within["chance"]["top10"], 1)
    # a run written before windows carried story and voice: read from the study's events
    for name in ("config.yaml", "report.json", "per_subject.csv"):
        shutil.copy(folder / name, tmp_path / name)
    windows = pd.read_csv(folder / "per_window_model.csv", dtype=str, keep_default_na=False)
    windows.drop(columns=["story", "voice"]).to_csv(tmp_path / "per_window_model.csv",
                                                    index=False)
    old = analysis.load_run(tmp_path)
    assert list(old.windows["voice"]) == list(run.windows["voice"])
    assert list(old.windows["story"]) == list(run.windows["story"])
