"""The package's folders are the pipeline: no module imports from a later stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import braindecode_speech

PACKAGE = Path(braindecode_speech.__file__).parent

#: the stages in the order data flow through them; a module may import from its own stage and
#: from earlier ones only (the shared foundations, ``config`` and ``fileio``, come first)
STAGES = [
    {"config", "fileio", "__version__"},
    {"data"},
    {"features"},
    {"simulation"},
    {"models"},
    {"training"},
    {"evaluation"},
    {"experiments"},
    {"sharing"},
    {"cli", "__main__"},
]
#: the package's front door and deprecated aliases may import from anywhere
EXEMPT = {"__init__", "experiment"}


def _stage(module: str) -> int | None:
    """Stage index of ``braindecode_speech.<top>...`` (None outside the package)."""
    parts = module.split(".")
    if parts[0] != "braindecode_speech" or len(parts) < 2:
        return None
    for index, names in enumerate(STAGES):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module}: not in any stage of STAGES; add it there")


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, lazy ones included."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up_the_pipeline(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    if len(relative.parts) == 1 and relative.stem in EXEMPT:
        return
    own = _stage(".".join(("braindecode_speech", *relative.with_suffix("").parts)))
    late = [f"line {line}: {target}" for line, target in _imports(path)
            if (stage := _stage(target)) is not None and stage > own]
    assert not late, f"{relative} imports from later stages: {late}"


def test_every_top_level_entry_has_a_stage() -> None:
    for entry in PACKAGE.iterdir():
        if entry.name.startswith(("_", ".")) or entry.suffix not in {".py", ""}:
            continue
        if entry.stem in EXEMPT or not (entry.is_dir() or entry.suffix == ".py"):
            continue
        assert _stage(f"braindecode_speech.{entry.stem}") is not None


def test_deprecated_alias_still_imports() -> None:
    with pytest.deprecated_call():
        import importlib
        import sys
        sys.modules.pop("braindecode_speech.experiment", None)
        legacy = importlib.import_module("braindecode_speech.experiment")
    assert legacy.ExperimentConfig is braindecode_speech.ExperimentConfig
