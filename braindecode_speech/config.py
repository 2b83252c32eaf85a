"""Typed configuration objects with a stable signature.

Every configuration in the project subclasses :class:`Config`, a pydantic model that

- rejects unknown keys and wrong types with an error naming the field,
- serialises to JSON/YAML and back (``to_yaml`` / ``from_yaml``),
- has a stable :meth:`Config.signature`, a short hash of its content used to key caches and to
  name grid runs. Fields that do not change *what* is computed (number of workers, progress
  bars, device...) are listed in ``_exclude_from_signature`` and left out of the hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Config", "ConfigError", "stable_hash"]

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A configuration could not be built: unknown key, wrong type or bad value."""


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys), ``length`` characters long."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class Config(BaseModel):
    """Base class of every configuration: strict, validated, hashable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    _exclude_from_signature: ClassVar[tuple[str, ...]] = ()

    def signature_dict(self) -> dict[str, Any]:
        """The content that defines the signature (excluded fields removed, recursively)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name in self._exclude_from_signature:
                continue
            value = getattr(self, name)
            out[name] = value.signature_dict() if isinstance(value, Config) else _plain(value)
        return out

    def signature(self, length: int = 12) -> str:
        """Stable hex hash of :meth:`signature_dict` (same config → same hash, across runs)."""
        return stable_hash({"__class__": type(self).__name__, **self.signature_dict()}, length)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        """Validate ``data``; raise :class:`ConfigError` naming ``source`` and the bad fields."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"Invalid {cls.__name__} in {source}:"]
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "<root>"
                lines.append(f"  - {loc}: {err['msg']} (got {err.get('input')!r})")
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.from_dict(data, source=str(path))

    def with_overrides(self: C, overrides: dict[str, Any] | list[str]) -> C:
        """A copy with dotted overrides applied, e.g. ``{"model.hidden": 64}`` or
        ``["model.hidden=64", "optim.lr=1e-3"]`` (values parsed as YAML)."""
        if isinstance(overrides, list):
            parsed: dict[str, Any] = {}
            for item in overrides:
                if "=" not in item:
                    raise ConfigError(f"Override {item!r} is not of the form key=value")
                key, value = item.split("=", 1)
                parsed[key.strip()] = yaml.safe_load(value)
            overrides = parsed
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"Unknown config key {key!r} for {type(self).__name__}")
                node = node[part]
            if not isinstance(node, dict) or parts[-1] not in node:
                raise ConfigError(f"Unknown config key {key!r} for {type(self).__name__}")
            node[parts[-1]] = value
        return type(self).from_dict(data, source="overrides")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
