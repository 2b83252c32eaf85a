"""Tests of braindecode_speech.evaluation.retrieval: streamed top-k retrieval against a dense reference."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from braindecode_speech.config import ConfigError
from braindecode_speech.evaluation.retrieval import EvaluationConfig, RetrievalEvaluator


def make_case(
    n_windows: int = 40, n_candidates: int = 30, n_words: int = 8, shape=(6, 10), seed: int = 0
) -> dict:
    """Random candidates, their words, targets and 3 subjects' window table."""
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((n_candidates, *shape)).astype(np.float32)
    # every word owns at least one candidate; the rest are spread unevenly (Zipf-like)
    extra = rng.choice(n_words, n_candidates - n_words, p=1 / np.arange(1, n_words + 1) / sum(
        1 / np.arange(1, n_words + 1)))
    words = np.array([f"w{i}" for i in np.concatenate([np.arange(n_words), extra])])
    targets = rng.integers(0, n_candidates, n_windows)
    windows = pd.DataFrame({
        "subject": [f"s{i % 3}" for i in range(n_windows)],
        "onset": np.arange(n_windows, dtype=float),
    })
    return dict(candidates=candidates, words=list(words), targets=targets, windows=windows)


def dense_reference(predictions: np.ndarray, candidates: np.ndarray, targets: np.ndarray,
                    words: list[str]) -> dict:
    """Brute force in float64: full score matrix, softmax, per-word sums by a Python loop."""
    z = predictions.reshape(len(predictions), -1).astype(np.float64)
    y = candidates.reshape(len(candidates), -1).astype(np.float64)
    scores = z @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T
    prob = np.exp(scores - scores.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    vocabulary = sorted(set(words))
    word_prob = np.zeros((len(z), len(vocabulary)))
    for m, word in enumerate(words):
        word_prob[:, vocabulary.index(word)] += prob[:, m]
    rows = np.arange(len(z))
    true_word = np.array([vocabulary.index(words[t]) for t in targets])
    true_score = scores[rows, targets]
    others = scores.copy()
    others[rows, targets] = -np.inf
    return {
        "segment_rank": (others > true_score[:, None]).sum(axis=1) + 1,
        "word_rank": (word_prob > word_prob[rows, true_word][:, None]).sum(axis=1) + 1,
        "segment_prob": prob[rows, targets],
        "word_prob": word_prob[rows, true_word],
        "predicted_word": np.array(vocabulary)[word_prob.argmax(axis=1)],
        "best": np.argsort(-scores, axis=1, kind="stable"),
    }


def evaluate(case: dict, predictions, candidates=None, **config) -> object:
    evaluator = RetrievalEvaluator(EvaluationConfig(n_bootstrap=200, **config))
    return evaluator.evaluate(
        predictions, case["candidates"] if candidates is None else candidates, case["targets"],
        case["words"], case["windows"],
    )


def test_perfect_predictions_score_100_percent():
    case = make_case(shape=(8, 20))  # ||Y|| ~ 12.6 >> cross scores ~ N(0, 1)
    result = evaluate(case, case["candidates"][case["targets"]])
    for level in ("segment", "word"):
        assert result.metrics[level] == {"top1": 1.0, "top5": 1.0, "top10": 1.0}
    assert (result.per_window["segment_rank"] == 1).all()
    assert (result.per_window["best_1"] == case["targets"]).all()
    assert (result.per_window["predicted_word"] == result.per_window["target_word"]).all()


def test_shuffled_predictions_reach_chance():
    case = make_case(n_windows=3000, n_candidates=400, n_words=60, shape=(4, 8))
    perfect = case["candidates"][case["targets"]]
    shuffled = perfect[np.random.default_rng(1).permutation(len(perfect))]
    result = evaluate(case, shuffled, n_shuffles=5)
    n = result.n_windows
    for k in (1, 5, 10):
        chance = result.chance["segment"][f"top{k}"]
        assert chance == pytest.approx(k / 400)
        assert abs(result.metrics["segment"][f"top{k}"] - chance) < 4 * np.sqrt(chance / n)
        word_chance = result.chance["word"][f"top{k}"]
        sd = np.sqrt(word_chance * (1 - word_chance) / n)
        assert abs(result.metrics["word"][f"top{k}"] - word_chance) < 4 * sd + 0.01
        # words owning many candidates win more often than 1 / n_words
        assert result.chance["word_frequency"][f"top{k}"] > k / 60


def test_word_level_matches_dense_brute_force():
    case = make_case(n_windows=25, n_candidates=20, n_words=6, shape=(3, 5), seed=3)
    rng = np.random.default_rng(4)
    # scaled so that softmax probabilities are neither uniform nor one-hot
    predictions = 0.5 * rng.standard_normal((25, 3, 5)).astype(np.float32)
    predictions += 0.3 * case["candidates"][case["targets"]]
    result = evaluate(case, predictions)
    dense = dense_reference(predictions, case["candidates"], case["targets"], case["words"])
    table = result.per_window
    np.testing.assert_array_equal(table["segment_rank"], dense["segment_rank"])
    np.testing.assert_array_equal(table["word_rank"], dense["word_rank"])
    np.testing.assert_allclose(table["segment_prob"], dense["segment_prob"], rtol=1e-5)
    np.testing.assert_allclose(table["word_prob"], dense["word_prob"], rtol=1e-5)
    np.testing.assert_array_equal(table["predicted_word"], dense["predicted_word"])
    best = table[[f"best_{j}" for j in range(1, 6)]].to_numpy()
    np.testing.assert_array_equal(best, dense["best"][:, :5])
    assert 1 < table["word_rank"].max() and table["word_rank"].min() == 1  # not a trivial case
    for k in (1, 5, 10):
        assert result.metrics["word"][f"top{k}"] == pytest.approx(np.mean(dense["word_rank"] <= k))


@pytest.mark.parametrize("chunk_size", [1, 7, 30])
def test_streamed_memmap_and_callable_match_dense(tmp_path, chunk_size):
    case = make_case(n_windows=40, n_candidates=30, seed=5)
    predictions = np.random.default_rng(6).standard_normal((40, 6, 10)).astype(np.float32)
    predictions += case["candidates"][case["targets"]]
    dense = dense_reference(predictions, case["candidates"], case["targets"], case["words"])

    path = tmp_path / "candidates.npy"
    np.save(path, case["candidates"])
    on_disk = np.load(path, mmap_mode="r")
    calls = []

    def source(start: int, stop: int) -> np.ndarray:
        calls.append(stop - start)
        return case["candidates"][start:stop]

    for candidates in (on_disk, source, torch.from_numpy(case["candidates"])):
        result = evaluate(case, predictions, candidates, chunk_size=chunk_size)
        np.testing.assert_array_equal(result.per_window["segment_rank"], dense["segment_rank"])
        np.testing.assert_array_equal(result.per_window["word_rank"], dense["word_rank"])
        np.testing.assert_allclose(result.per_window["word_prob"], dense["word_prob"], rtol=1e-5)
    assert max(calls) == chunk_size  # the callable was asked for chunks, never for everything


def test_dtypes():
    case = make_case(shape=(8, 20))
    perfect = case["candidates"][case["targets"]]
    for dtype in ("float64", "bfloat16"):
        result = evaluate(case, perfect, dtype=dtype)
        assert result.metrics["segment"]["top1"] == 1.0
    # float64 inputs with float32 compute, and the reverse
    result = evaluate(case, perfect.astype(np.float64), case["candidates"].astype(np.float64))
    assert result.metrics["segment"]["top1"] == 1.0
    assert evaluate(case, perfect, dtype="float64").metrics["word"]["top1"] == 1.0
    bf16 = torch.from_numpy(perfect).bfloat16()
    assert evaluate(case, bf16, dtype="bfloat16").metrics["segment"]["top1"] == 1.0
    bf16[3, 0, 0] = torch.nan
    with pytest.raises(ValueError, match=r"windows \[3\] contain NaN"):
        evaluate(case, bf16, dtype="bfloat16")


def test_per_subject_split():
    case = make_case(n_windows=60, n_candidates=50, shape=(8, 20), seed=7)
    predictions = case["candidates"][case["targets"]].copy()
    noisy = (case["windows"]["subject"] == "s1").to_numpy()
    predictions[noisy] = np.random.default_rng(8).standard_normal(predictions[noisy].shape)
    result = evaluate(case, predictions)
    per_subject = result.per_subject.set_index("subject")
    assert list(per_subject.index) == ["s0", "s1", "s2"]
    assert per_subject["n_windows"].tolist() == [20, 20, 20]
    assert per_subject.loc["s0", "segment_top1"] == 1.0
    assert per_subject.loc["s2", "segment_top1"] == 1.0
    assert per_subject.loc["s1", "segment_top1"] < 0.3
    expected = result.per_window.groupby("subject")["word_top5"].mean()
    np.testing.assert_allclose(per_subject["word_top5"], expected)
    assert result.metrics["segment"]["top1"] == pytest.approx(per_subject["segment_top1"].mean())
    assert (per_subject["segment_top1_ci_low"] <= per_subject["segment_top1"]).all()


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n_windows in (50, 800):
        case = make_case(n_windows=n_windows, n_candidates=60, shape=(4, 8), seed=9)
        rng = np.random.default_rng(10)
        predictions = case["candidates"][case["targets"]] + 4.0 * rng.standard_normal(
            (n_windows, 4, 8)).astype(np.float32)
        result = evaluate(case, predictions)
        for level in ("segment", "word"):
            for metric, value in result.metrics[level].items():
                low, high = result.ci[level][metric]
                assert low <= value <= high
        value = result.metrics["segment"]["top5"]
        assert 0.1 < value < 0.9  # a case where the interval has a width
        widths.append(np.subtract(*result.ci["segment"]["top5"][::-1]))
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_seeded():
    case = make_case()
    predictions = np.random.default_rng(2).standard_normal((40, 6, 10)).astype(np.float32)
    first = evaluate(case, predictions, seed=1)
    assert evaluate(case, predictions, seed=1).ci == first.ci
    assert evaluate(case, predictions, seed=2).to_dict()["metrics"] == first.to_dict()["metrics"]


def test_frequency_baseline_exact():
    # counts: a=3, b=2, c=1, d=1; targets' words: a, b, c
    words = ["a", "a", "a", "b", "b", "c", "d"]
    case = make_case(n_windows=3, n_candidates=7, n_words=4)
    case.update(words=words, targets=np.array([0, 3, 5]), windows=case["windows"].iloc[:3])
    predictions = np.random.default_rng(0).standard_normal((3, 6, 10)).astype(np.float32)
    result = evaluate(case, predictions, topk=(1, 2, 3))
    # top1: only a; top2: a, b; top3: a, b, then c or d with probability 1/2
    assert result.chance["word_frequency"] == pytest.approx(
        {"top1": 1 / 3, "top2": 2 / 3, "top3": (1 + 1 + 0.5) / 3})


def test_to_dict_is_json_and_in_unit_interval():
    case = make_case()
    predictions = np.random.default_rng(2).standard_normal((40, 6, 10)).astype(np.float32)
    summary = json.loads(json.dumps(evaluate(case, predictions).to_dict()))
    assert summary["n_candidates"] == 30 and summary["n_words"] == 8 and summary["n_windows"] == 40
    assert set(summary["per_subject"]) == {"s0", "s1", "s2"}
    for key in ("metrics", "chance"):
        for values in summary[key].values():
            assert all(0 <= v <= 1 for v in values.values())


def test_config_validation_and_signature():
    with pytest.raises(ConfigError, match="topk"):
        EvaluationConfig.from_dict({"topk": [5, 1]})
    with pytest.raises(ConfigError, match="dtype"):
        EvaluationConfig.from_dict({"dtype": "float16"})
    assert EvaluationConfig(chunk_size=3).signature() == EvaluationConfig().signature()
    assert EvaluationConfig(seed=3).signature() != EvaluationConfig().signature()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(targets=np.array([0] * 39 + [30])),
         r"targets out of range \[0, 30\) for windows \[39\]"),
        (dict(targets=np.zeros(39, dtype=int)), "targets must have shape"),
        (dict(words=["w"] * 29, targets=np.zeros(40, dtype=int)),
         r"candidates have shape \(30, 6, 10\), expected \(29, 6, 10\)"),
        (dict(windows=pd.DataFrame({"onset": np.zeros(40)})), "lacks a 'subject' column"),
        (dict(windows=pd.DataFrame({"subject": ["a"] * 39})), "windows has 39 rows"),
        (dict(windows=pd.DataFrame({"subject": ["a"] * 40, "word_rank": 0})), "reserved"),
    ],
)
def test_bad_inputs_raise(change, message):
    case = {**make_case(), **change}
    predictions = np.zeros((40, 6, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        evaluate(case, predictions)


def test_shape_mismatch_and_non_finite_values_raise(tmp_path):
    case = {**make_case(), "targets": np.zeros(40, dtype=int)}
    good = np.zeros((40, 6, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=r"have shape \(30, 6, 10\), expected \(30, 6, 9\)"):
        evaluate(case, good[:, :, :9])
    with pytest.raises(ValueError, match=r"predictions must be \[N, F, T\]"):
        evaluate(case, good[:, :, 0])
    with pytest.raises(ValueError, match="no test window"):
        evaluate({**case, "targets": [], "windows": case["windows"].iloc[:0]}, good[:0])
    nan_predictions = good.copy()
    nan_predictions[7, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"predictions of windows \[7\] contain NaN"):
        evaluate(case, nan_predictions)

    bad = case["candidates"].copy()
    bad[12, 0, 0] = np.nan
    bad[20] = 0
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"candidates \[12, 20\] have a zero or non-finite norm"):
        evaluate(case, good, np.load(tmp_path / "bad.npy", mmap_mode="r"), chunk_size=64)

    def wrong_source(start: int, stop: int) -> np.ndarray:
        return np.zeros((stop - start, 6, 11), dtype=np.float32)

    with pytest.raises(ValueError, match=r"returned shape \(1, 6, 11\).*expected \(1, 6, 10\)"):
        evaluate(case, good, wrong_source)
    with pytest.raises(TypeError, match="candidates must be an array"):
        evaluate(case, good, [[0.0]])


def _mapped_file_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("RssFile")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memmap_pages_are_released_after_each_chunk(tmp_path):
    n_candidates, shape = 1000, (100, 100)  # 40 MB of candidates
    case = make_case(n_windows=8, n_candidates=n_candidates, n_words=50, shape=shape)
    np.save(tmp_path / "candidates.npy", case["candidates"])
    on_disk = np.load(tmp_path / "candidates.npy", mmap_mode="r")
    predictions = np.ones((8, *shape), dtype=np.float32)
    evaluate(case, predictions, chunk_size=10)  # loads the libraries' code pages (file-backed)
    before = _mapped_file_kb()
    result = evaluate(case, predictions, on_disk, chunk_size=10)
    assert result.n_candidates == n_candidates
    assert _mapped_file_kb() - before < 8_000  # the 40 MB file is not left mapped


def test_memmaps_with_header_offset_and_truncated_file(tmp_path):
    case = make_case(seed=11)
    path = tmp_path / "raw.f32"
    with open(path, "wb") as f:
        f.write(b"x" * 100)  # a header of another format
        f.write(case["candidates"].tobytes())
    on_disk = np.memmap(path, np.float32, "r", offset=100, shape=case["candidates"].shape)
    predictions = case["candidates"][case["targets"]] + 0.5
    dense = dense_reference(predictions, case["candidates"], case["targets"], case["words"])
    np.save(tmp_path / "predictions.npy", predictions)
    read_only_predictions = np.load(tmp_path / "predictions.npy", mmap_mode="r")
    result = evaluate(case, read_only_predictions, on_disk, chunk_size=7)
    np.testing.assert_array_equal(result.per_window["word_rank"], dense["word_rank"])
    np.testing.assert_array_equal(result.per_window["segment_rank"], dense["segment_rank"])

    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match="raw.f32 holds 1000 bytes.*truncated"):
        evaluate(case, predictions, on_disk)


def test_retrieval_benchmark_runs_on_tiny_shapes(tmp_path):
    """bench/retrieval.py: the cache file holds the generator's values; both sources agree."""
    spec = importlib.util.spec_from_file_location(
        "bench_retrieval", Path(__file__).parents[1] / "bench" / "retrieval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shape = (300, 4, 6)
    path = bench.ensure_cache(tmp_path, shape, chunk_size=64)
    generated = bench.RolledBankCandidates(4, 6)(0, 300)
    np.testing.assert_array_equal(np.load(path), generated)
    assert len({row.tobytes() for row in generated}) == 300  # distinct candidates

    args = bench._parser().parse_args([
        "--n-candidates", "300", "--n-windows", "20", "--n-features", "4", "--n-times", "6",
        "--chunk-size", "64", "--repeats", "1", "--cache-dir", str(tmp_path),
        "--threads", str(torch.get_num_threads()),
    ])
    from_file = bench._measure(args)
    args.source = "generated"
    generated_run = bench._measure(args)
    assert from_file["name"] == "retrieval_0.3k" and from_file["seconds"] > 0
    assert from_file["gflops"] > 0 and from_file["peak_rss_mb"] > 0
    for key in ("segment_top1", "segment_top10"):
        assert from_file["config"][key] == generated_run["config"][key]
    assert 0 < from_file["config"]["segment_top10"] <= 1


def test_paper_scale_benchmark_runs_on_tiny_shapes(tmp_path):
    """bench/eval_paper_scale.py, through bench/run.py's driver code path: the JSON keys of
    issue 13, nothing written, and the GEMM bound from the measured peak."""
    spec = importlib.util.spec_from_file_location(
        "bench_eval_paper_scale", Path(__file__).parents[1] / "bench" / "eval_paper_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench._parser().parse_args([
        "--n-windows", "70", "--n-candidates", "40", "--n-features", "4", "--n-times", "6",
        "--batch-size", "32", "--chunk-size", "16", "--threads", "1", "--gemm-size", "256",
    ])
    result = bench.run(args)
    assert {"seconds", "peak_rss_gb", "bytes_written", "gemm_bound_s"} <= set(result)
    assert result["bytes_written"] == 0 and 0 < result["peak_rss_gb"] < 4
    flops = 2 * 70 * 40 * 4 * 6
    assert result["config"]["flops"] == flops
    assert result["gemm_bound_s"] == pytest.approx(
        flops / result["config"]["gemm_peak_gflops"] / 1e9)
    assert 0 < result["config"]["segment_top10"] <= 1
