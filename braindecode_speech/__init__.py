"""braindecode-speech: decode perceived speech from non-invasive brain recordings.

The subpackages follow the data: ``data`` (studies → preprocessed arrays → splits → windows),
``features`` (speech features on the brain's clock), ``models``, ``training``, ``evaluation``
and ``experiments`` (config → run → report), ``sharing`` (a trained run as a model folder,
:class:`BrainDecoder`); ``simulation`` writes test studies and ``cli`` is the command line. The most used names are importable from here.
"""

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "ExperimentConfig": "experiments.config",
    "run_experiment": "experiments.run",
    "evaluate_run": "experiments.run",
    "BrainEncoder": "models.encoder",
    "BrainDecoder": "sharing",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:  # lazy: `import braindecode_speech` stays fast
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
