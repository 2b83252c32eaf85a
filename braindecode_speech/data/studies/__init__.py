"""Study adapters and their registry.

``get(name, root, **kwargs)`` builds the :class:`~braindecode_speech.data.study.Study` registered
under ``name``. Adapters are imported lazily so that importing the package stays fast.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from ..study import Study, StudyError

__all__ = ["REGISTRY", "get", "names"]

#: registry name -> "module:Class" (module relative to this package)
REGISTRY: dict[str, str] = {
    "simulated": "simulated:SimulatedStudy",
    "bids": "bids:BIDSStudy",
    "gwilliams2022": "gwilliams2022:Gwilliams2022",
    "schoffelen2019": "schoffelen2019:Schoffelen2019",
    "broderick2019": "broderick2019:Broderick2019",
    "brennan2019": "brennan2019:Brennan2019",
    "libribrain2025": "libribrain2025:LibriBrain2025",
    "armeni2022": "armeni2022:Armeni2022",
}


def names() -> list[str]:
    """Registered study names."""
    return sorted(REGISTRY)


def get(name: str, root: str | Path, **kwargs: Any) -> Study:
    """Build the study ``name`` on the local copy at ``root`` (an unknown name, or an option
    the adapter does not take, is a :class:`~braindecode_speech.data.study.StudyError` listing the
    known ones)."""
    if name not in REGISTRY:
        raise StudyError(f"Unknown study {name!r}; known studies: {', '.join(names())}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)
    options = _options(cls)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise StudyError(f"study {name!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(options)}")
    return cls(root, **kwargs)


def _options(cls: type) -> list[str]:
    """The keyword options of ``cls`` (all but ``root``): those of its ``__init__`` and, where
    that passes ``**kwargs`` on, those of its base classes' (base classes' first)."""
    options: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        options = [p.name for p in parameters if p.name not in ("self", "root")
                   and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)] + options
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return options
