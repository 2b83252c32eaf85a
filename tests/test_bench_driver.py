"""bench/run.py's driver: every figure carries the machine it was measured on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


@pytest.fixture(autouse=True)
def _scratch(tmp_path, monkeypatch):
    """The benchmarks' data folder of each test: its own, absent until a benchmark writes it."""
    monkeypatch.setenv("BRAINDECODE_SPEECH_BENCH", str(tmp_path / "scratch"))
    return tmp_path / "scratch"


def _driver():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_result_names_the_cpu_and_its_kernel_flags(tmp_path, monkeypatch, capsys):
    driver = _driver()
    fake = tmp_path / "fake_bench.py"
    fake.write_text("def bench(threads):\n    return {'seconds': 1.5, 'seconds_min': 1.0, "
                    "'peak_rss_mb': 10.0, 'gflops': None, 'config': {'threads': threads}, "
                    "'windows_per_s': 7}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(driver.BENCHMARKS, "fake", ("fake_bench", "bench"))
    assert driver.main(["--only", "fake", "--threads", "1", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    host = driver.machine()
    assert out[0].startswith(f"# {host['cpu']} [") and "1 threads" in out[0]
    assert out[1].startswith("fake") and "windows_per_s=7" in out[1] and host["cpu"] in out[1]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["machine"] == {**host, "threads": 1}
    assert set(host["flags"]) <= set(driver.KERNEL_FLAGS) and host["torch"]


def test_only_and_skip_choose_the_benchmarks(tmp_path, monkeypatch, capsys):
    driver = _driver()
    for name in ("first", "second", "third"):
        (tmp_path / f"{name}_bench.py").write_text(
            "def bench(threads):\n    return {'seconds': 1.0, 'seconds_min': 1.0, "
            "'peak_rss_mb': 1.0, 'gflops': None, 'config': {}}\n")
        monkeypatch.setitem(driver.BENCHMARKS, name, (f"{name}_bench", "bench"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert driver.main(["--only", "first", "second", "third", "--skip", "second",
                        "--json", str(tmp_path / "r.json")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["first", "third"]
    assert [r["name"] for r in json.loads((tmp_path / "r.json").read_text())] == ["first", "third"]


def test_training_steps_are_set_against_the_gemm_bound_of_the_same_run(tmp_path, monkeypatch,
                                                                        capsys):
    driver = _driver()
    (tmp_path / "peak_bench.py").write_text(
        "def bench(threads):\n    return {'seconds': 1.0, 'seconds_min': 1.0, 'peak_rss_mb': 1.0,"
        " 'gflops': 200.0, 'config': {'bf16_gflops': 400.0}}\n")
    (tmp_path / "step_bench.py").write_text(
        "def bench(threads, bf16=False):\n    return {'seconds': 40.0, 'seconds_min': 39.0, "
        "'peak_rss_mb': 1.0, 'gflops': 100.0, 'config': {'bf16': bf16, "
        "'flops_per_step': 4e12}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(driver, "BENCHMARKS", {
        "gemm_peak": ("peak_bench", "bench"), "fp32": ("step_bench", "bench"),
        "bf16": ("step_bench", "bench", {"bf16": True})})
    assert driver.main(["--json", str(tmp_path / "r.json")]) == 0
    peak, fp32, bf16 = json.loads((tmp_path / "r.json").read_text())
    assert "of_bound" not in peak
    assert (fp32["bound_s"], fp32["of_bound"], fp32["bound_dtype"]) == (20.0, 0.5, "fp32")
    assert (bf16["bound_s"], bf16["of_bound"], bf16["bound_dtype"]) == (10.0, 0.25, "bf16")
    assert "of_bound=0.5" in capsys.readouterr().out


def test_gpu_benchmarks_say_when_there_is_no_gpu_and_are_set_against_the_gpu_peak(
        tmp_path, monkeypatch, capsys):
    driver = _driver()
    (tmp_path / "gpu_bench.py").write_text(
        "import os\n"
        "GPU = os.environ.get('FAKE_GPU') == '1'\n"
        "def peak(threads):\n"
        "    if not GPU:\n        return {'skipped': 'no CUDA device'}\n"
        "    return {'seconds': 0.1, 'seconds_min': 0.1, 'peak_rss_mb': None, 'gflops': 8e5,"
        " 'config': {'bf16_gflops': 8e5, 'tf32_gflops': 4e5}}\n"
        "def step(threads):\n"
        "    if not GPU:\n        return {'skipped': 'no CUDA device'}\n"
        "    return {'seconds': 0.02, 'seconds_min': 0.02, 'peak_rss_mb': None, 'gflops': None,"
        " 'settings': {'plain': {'seconds': 0.02}, 'plain_fp32': {'seconds': 0.05},"
        " 'broken': {'error': 'x'}},"
        " 'config': {'flops_per_step': 4e12, 'settings': {'plain': {'bf16': True},"
        " 'plain_fp32': {'bf16': False}, 'broken': {'bf16': True}}}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(driver, "BENCHMARKS", {"gpu_peak": ("gpu_bench", "peak"),
                                               "train_step_b256_cuda": ("gpu_bench", "step")})
    assert driver.main(["--json", str(tmp_path / "r.json")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines == ["gpu_peak           skipped: no CUDA device",
                     "train_step_b256_cuda skipped: no CUDA device"]
    assert [r["skipped"] for r in json.loads((tmp_path / "r.json").read_text())] == [
        "no CUDA device"] * 2
    monkeypatch.setenv("FAKE_GPU", "1")
    monkeypatch.delitem(__import__("sys").modules, "gpu_bench")
    assert driver.main(["--json", str(tmp_path / "r.json")]) == 0
    _, step = json.loads((tmp_path / "r.json").read_text())
    # 4e12 FLOPs at 800 TFLOP/s (bf16) = 5 ms, at 400 (TF32, the float32 setting) = 10 ms
    assert (step["bound_s"], step["of_bound"]) == (0.005, 0.25)
    assert step["settings"]["plain"]["of_bound"] == 0.25
    assert step["settings"]["plain_fp32"]["of_bound"] == 0.2
    assert "of_bound" not in step["settings"]["broken"]


def test_the_data_left_behind_is_reported_and_clean_deletes_it(tmp_path, monkeypatch, capsys,
                                                                _scratch):
    driver = _driver()
    (tmp_path / "writer_bench.py").write_text(
        "import os\nfrom pathlib import Path\n"
        "def bench(threads):\n"
        "    folder = Path(os.environ['BRAINDECODE_SPEECH_BENCH']) / 'study'\n"
        "    folder.mkdir(parents=True)\n"
        "    (folder / 'a.npy').write_bytes(bytes(3_000_000))\n"
        "    return {'seconds': 1.0, 'seconds_min': 1.0, 'peak_rss_mb': 1.0, 'gflops': None,"
        " 'config': {}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(driver, "BENCHMARKS", {"writer": ("writer_bench", "bench")})
    assert driver.main([]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (f"# generated data kept for the next run: {_scratch}, 0.0 GB "
                    "(delete: python bench/run.py --clean)")
    assert driver.main(["--clean"]) == 0
    assert capsys.readouterr().out.strip() == f"deleted {_scratch} (0.0 GB)"
    assert not _scratch.exists()
