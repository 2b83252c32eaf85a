"""Tests of braindecode_speech.evaluation.report: report.json schema, CSV tables, figures, terminal table."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from braindecode_speech.evaluation.report import (
    ReportError,
    flat_metrics,
    format_table,
    read_report,
    read_results,
    write_report,
)
from braindecode_speech.evaluation.retrieval import (
    EvaluationConfig,
    RetrievalEvaluator,
    RetrievalResult,
)

SENTENCES = [
    "the cat sat on the mat",
    "a dog barked at the mailman this morning",
    "she sells sea shells by the sea shore",
    "colourless green ideas sleep furiously",
]


@pytest.fixture(scope="module")
def evaluated() -> dict:
    """Two models on 27 candidates (every word of SENTENCES) and 30 windows of 3 subjects."""
    rng = np.random.default_rng(0)
    anchors = [(s, i) for s, sentence in enumerate(SENTENCES) for i in range(len(sentence.split()))]
    sentences = [SENTENCES[s] for s, _ in anchors]
    word_index = [i for _, i in anchors]
    words = [SENTENCES[s].split()[i] for s, i in anchors]
    candidates = rng.standard_normal((len(anchors), 8, 20)).astype(np.float32)
    targets = rng.integers(0, len(anchors), 30)
    windows = pd.DataFrame({"subject": [f"s{i % 3}" for i in range(30)]})
    noise = rng.standard_normal((30, 8, 20)).astype(np.float32)
    evaluator = RetrievalEvaluator(EvaluationConfig(n_bootstrap=100))
    results = {
        "model": evaluator.evaluate(candidates[targets] + 0.5 * noise, candidates, targets, words,
                                    windows),
        "ridge": evaluator.evaluate(noise, candidates, targets, words, windows),
    }
    return dict(results=results, sentences=sentences, word_index=word_index)


def test_report_json_schema(tmp_path, evaluated):
    extra = {"leak_audit": {"shared_sentences": 0}, "skipped": ["sub-07: no events"]}
    path = write_report(tmp_path, evaluated["results"], extra, evaluated["sentences"],
                        evaluated["word_index"])
    assert path == tmp_path / "report.json"
    report = json.loads(path.read_text())
    assert report["schema_version"] == 2
    assert report["n_candidates"] == 27 and report["topk"] == [1, 5, 10]
    assert report["n_windows"] == {"model": 30, "ridge": 30}
    for model in ("model", "ridge"):
        chance = report["chance"][model]
        assert set(chance) == {"segment", "word_shuffled", "word_frequency_baseline"}
        assert chance["segment"]["top10"] == pytest.approx(10 / 27)
        assert chance["word_shuffled"] == evaluated["results"][model].chance["word_shuffled"]
    assert report["chance"]["model"]["word_frequency_baseline"] == \
        report["chance"]["ridge"]["word_frequency_baseline"]  # the same candidates
    for model in ("model", "ridge"):
        for level in ("segment", "word"):
            metrics = report["metrics"][model][level]
            assert set(metrics) == {"top1", "top5", "top10"}
            assert all(0 <= v <= 1 for v in metrics.values())
            for metric, (low, high) in report["ci"][model][level].items():
                assert 0 <= low <= metrics[metric] <= high <= 1
        assert set(report["per_subject"][model]) == {"s0", "s1", "s2"}
        assert report["per_subject"][model]["s1"]["n_windows"] == 10
        low, high = report["per_subject"][model]["s1"]["ci"]["word"]["top5"]
        assert low <= report["per_subject"][model]["s1"]["word"]["top5"] <= high
    metrics = report["metrics"]
    assert metrics["model"]["segment"]["top1"] > metrics["ridge"]["segment"]["top1"]
    assert report["leak_audit"] == {"shared_sentences": 0}
    assert report["skipped"] == ["sub-07: no events"]
    assert report["files"]["figures"] == ["accuracy_per_subject.png", "decoded_examples.png"]
    assert report["controls"]["ridge"] == evaluated["results"]["ridge"].controls
    assert set(report["controls"]["model"]) == {"shuffled"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left no temporary file


def test_tables_written(tmp_path, evaluated):
    write_report(tmp_path, evaluated["results"])
    per_subject = pd.read_csv(tmp_path / "per_subject.csv")
    assert len(per_subject) == 6
    assert list(per_subject.columns[:3]) == ["model", "subject", "n_windows"]
    model_s0 = per_subject.query("model == 'model' and subject == 's0'").iloc[0]
    expected = evaluated["results"]["model"].per_subject.set_index("subject").loc["s0"]
    assert model_s0["word_top5"] == pytest.approx(expected["word_top5"])
    per_window = pd.read_csv(tmp_path / "per_window_ridge.csv")
    assert len(per_window) == 30 and {"segment_rank", "word_rank", "best_1"} <= set(per_window)


def test_figures_written_and_not_blank(tmp_path, evaluated):
    write_report(tmp_path, evaluated["results"], {}, evaluated["sentences"],
                 evaluated["word_index"], n_examples=3)
    for name in ("accuracy_per_subject.png", "decoded_examples.png"):
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.05  # something is drawn


def test_no_sentences_no_examples_figure(tmp_path, evaluated):
    report = json.loads(write_report(tmp_path, evaluated["results"]).read_text())
    assert report["files"]["figures"] == ["accuracy_per_subject.png"]
    assert not (tmp_path / "decoded_examples.png").exists()


def test_format_table(evaluated):
    text = format_table(evaluated["results"])
    main, controls = text.split("\n\n")  # the main table, then the controls
    lines = main.splitlines()
    assert "segment top1" in lines[0] and "word top10" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["model", "ridge", "chance", "word"]
    assert [line.split()[:2] for line in controls.splitlines()[2:]] == [
        ["model", "shuffled"], ["ridge", "shuffled"]]  # no recording/story in the windows
    top10 = evaluated["results"]["model"].metrics["segment"]["top10"] * 100
    assert f"{top10:.1f}" == lines[1].split()[3]
    assert lines[3].split()[3] == f"{1000 / 27:.1f}"  # chance 10 / 27


def test_bad_report_inputs(tmp_path, evaluated):
    results = evaluated["results"]
    with pytest.raises(ValueError, match="would overwrite"):
        write_report(tmp_path, results, {"metrics": {}})
    with pytest.raises(TypeError, match=r"extra\['audit'\]"):
        write_report(tmp_path, results, {"audit": object()})
    with pytest.raises(ValueError, match="model name"):
        write_report(tmp_path, {"my model/1": results["model"]})
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, {})
    index = list(evaluated["word_index"])
    index[3] = 40
    with pytest.raises(ValueError, match="candidate 3: anchor word index 40 outside"):
        write_report(tmp_path, results, {}, evaluated["sentences"], index)
    with pytest.raises(ValueError, match="must be given together"):
        write_report(tmp_path, results, {}, evaluated["sentences"])
    rng = np.random.default_rng(1)
    other = RetrievalEvaluator(EvaluationConfig(n_bootstrap=10)).evaluate(
        rng.standard_normal((4, 2, 3)), rng.standard_normal((5, 2, 3)), [0, 1, 2, 3],
        list("abcde"), pd.DataFrame({"subject": [1, 1, 2, 2]}))
    with pytest.raises(ValueError, match="evaluated on 5 candidates"):
        write_report(tmp_path, {"model": results["model"], "other": other})


def test_report_fields_constant_matches_report(tmp_path, evaluated):
    from braindecode_speech.evaluation.report import REPORT_FIELDS

    report = json.loads(write_report(tmp_path, evaluated["results"], {"x": 1}).read_text())
    assert set(report) == {*REPORT_FIELDS, "x"}


def test_bad_extra_writes_nothing(tmp_path, evaluated):
    with pytest.raises(TypeError, match="extra"):
        write_report(tmp_path / "out", evaluated["results"], {"audit": {1, 2}})
    assert not (tmp_path / "out").exists()


def _same_result(a: RetrievalResult, b: RetrievalResult) -> None:
    assert a.to_dict() == b.to_dict()
    pd.testing.assert_frame_equal(a.per_subject.astype({"subject": str}), b.per_subject)


def test_result_dict_round_trip(evaluated):
    result = evaluated["results"]["model"]
    data = json.loads(json.dumps(result.to_dict()))  # through JSON, as in report.json
    back = RetrievalResult.from_dict(data, result.per_window)
    _same_result(result, back)
    assert back.per_window is result.per_window
    assert RetrievalResult.from_dict(data).n_windows == 30  # without the per-window table
    with pytest.raises(ValueError, match="per_window has 3 rows"):
        RetrievalResult.from_dict(data, result.per_window.head(3))


def test_report_json_round_trip(tmp_path, evaluated):
    results = evaluated["results"]
    write_report(tmp_path, results, {"skipped": []})
    back = read_results(tmp_path)
    assert list(back) == ["model", "ridge"]
    for name, result in results.items():
        _same_result(result, back[name])
        assert back[name].per_window["segment_rank"].tolist() == \
            result.per_window["segment_rank"].tolist()
    # the word chance and the frequency baseline keep their own names through the file
    chance = back["model"].chance
    assert chance["word_shuffled"] == results["model"].chance["word_shuffled"]
    assert chance["word_frequency_baseline"] == results["model"].chance["word_frequency_baseline"]
    flat = flat_metrics(read_report(tmp_path / "report.json"))
    assert flat["model.segment.top10"] == results["model"].metrics["segment"]["top10"]
    assert flat["chance.segment.top10"] == pytest.approx(10 / 27)
    assert flat["model.chance.word_shuffled.top5"] == chance["word_shuffled"]["top5"]
    assert flat["word_frequency_baseline.top5"] == chance["word_frequency_baseline"]["top5"]
    assert flat["ridge.shuffled.top10"] == results["ridge"].controls["shuffled"]["accuracy"]["top10"]


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(schema_version=1), "schema_version 1; this version reads"),
    (lambda r: r.pop("schema_version"), "no schema_version; this version reads"),
    (lambda r: r.pop("ci"), r"report.json schema_version 2 without the field\(s\) \['ci'\]"),
])
def test_read_report_refuses_other_versions_naming_the_file(tmp_path, evaluated, edit, message):
    path = write_report(tmp_path / "run", evaluated["results"])
    report = json.loads(path.read_text())
    edit(report)
    path.write_text(json.dumps(report))
    with pytest.raises(ReportError, match=f"{tmp_path}/run/report.json: {message}"):
        read_report(path)
    with pytest.raises(ReportError, match="report.json"):
        read_results(tmp_path / "run")
    path.write_text("{not json")
    with pytest.raises(ReportError, match="report.json: not a JSON report"):
        read_report(path)

