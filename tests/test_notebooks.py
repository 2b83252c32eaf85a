"""The analysis notebooks: stored without outputs, executed (nbclient) against one tiny trained
run shared by the module; the analysis functions they call, checked against the run's files."""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import numpy as np
import pandas as pd
import pytest

from braindecode_speech.experiments import analysis, run_experiment
from braindecode_speech.experiments.presets import tiny_config

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def tiny_run(tiny_meg_root, tmp_path_factory) -> Path:
    """One run of the tiny configuration on the tiny simulated MEG study (without the ridge
    baseline, which the notebooks do not need and which takes most of a tiny run's time)."""
    folder = tmp_path_factory.mktemp("notebook_run")
    config = tiny_config(tiny_meg_root, cache_dir=folder / "cache")
    run_experiment(config.with_overrides({"ridge.enabled": False}), folder / "run")
    return folder / "run"


def test_notebooks_are_stored_without_outputs():
    assert {p.name for p in NOTEBOOKS} == {"decoded_segments.ipynb", "spatial_attention.ipynb"}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        sources = "".join(cell.source for cell in notebook.cells)
        assert "BRAINDECODE_SPEECH_RUN" in sources and "braindecode_speech.experiments import analysis" \
            in sources


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_a_trained_run(path, tiny_run, monkeypatch):
    monkeypatch.setenv("BRAINDECODE_SPEECH_RUN", str(tiny_run))
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tiny_run)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == (8 if path.stem == "decoded_segments" else 2)


@pytest.mark.slow
def test_decoded_segment_analyses_agree_with_the_report(tiny_run):
    run = analysis.load_run(tiny_run)
    report = json.loads((tiny_run / "report.json").read_text())
    assert len(run.candidates) == report["n_candidates"]
    assert (run.candidates["sentence"].str.split().str.len() > run.candidates["word_index"]).all()
    # the best candidates come from what the run kept: no predictions were written
    assert not (tiny_run / "predictions.npy").exists()
    rows = np.arange(min(len(run.windows), 40))
    best = analysis.retrieve(run, rows, k=5)
    np.testing.assert_array_equal(best, run.windows.loc[rows, [f"best_{i}" for i in range(1, 6)]])
    with pytest.raises(FileNotFoundError, match="kept the 5 best candidates.*n_best=8"):
        analysis.retrieve(run, rows, k=8)
    # accuracy by any grouping averages back to the report's accuracy
    for column, bins in [("word_index", [-0.5, 0.5, 2.5, 1000]), ("words_in_window", None)]:
        table = analysis.accuracy_by(run, column, bins)
        assert table["n_windows"].sum() == len(run.windows)
        mean = (table["top10"] * table["n_windows"]).sum() / len(run.windows)
        assert mean == pytest.approx(report["metrics"]["model"]["segment"]["top10"])
    assert (run.windows["words_in_window"] >= 1).all()  # the anchor word itself
    examples = analysis.decoded_examples(run, n=5)
    for example in examples.itertuples():
        assert len(example.retrieved) == 5
        assert any(s.startswith("* ") for s in example.retrieved) == (example.segment_rank <= 5)
    errors = int((run.windows["best_1"] != run.windows["target"]).sum())
    assert analysis.confusions(run, n=10 ** 6)["count"].sum() == errors
    confusion = analysis.sentence_confusion(run)
    np.testing.assert_allclose(confusion.sum(axis=1), 1.0)
    assert 0 <= analysis.same_sentence_errors(run) <= 1


@pytest.mark.slow
def test_attention_maps_and_subject_similarity(tiny_run):
    weights, info = analysis.attention_maps(tiny_run)
    config, state = analysis.load_weights(tiny_run)
    assert weights.shape == (config.model.n_spatial, len(info.ch_names))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    similarity = analysis.subject_layer_similarity(tiny_run)
    subjects = json.loads((tiny_run / "report.json").read_text())["subjects"]
    assert list(similarity.index) == [str(s) for s in subjects]
    np.testing.assert_allclose(np.diag(similarity), 1.0)
    pd.testing.assert_frame_equal(similarity, similarity.T)
