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


def _signature_entry(value: Any) -> Any:
    """A field's part of the signature: a section's own signature dict, else its plain value."""
    return value.signature_dict() if isinstance(value, Config) else _plain(value)


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys), ``length`` characters long."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class Config(BaseModel):
    """Base class of every configuration: strict, validated, hashable."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    _exclude_from_signature: ClassVar[tuple[str, ...]] = ()
    #: fields added after configs were first hashed: left out of the signature while they hold
    #: their default, so that earlier configs keep their signatures (caches, run folders)
    _omit_from_signature_at_default: ClassVar[tuple[str, ...]] = ()

    def signature_dict(self) -> dict[str, Any]:
        """The content that defines the signature (excluded fields removed, and the fields of
        ``_omit_from_signature_at_default`` that hold their default, recursively)."""
        out: dict[str, Any] = {}
        fields = type(self).model_fields
        for name in fields:
            if name in self._exclude_from_signature:
                continue
            out[name] = _signature_entry(getattr(self, name))
            if name in self._omit_from_signature_at_default and out[name] == _signature_entry(
                    fields[name].get_default(call_default_factory=True)):
                del out[name]
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
                lines.append(f"  - {_format_error(cls, err)}")
            raise ConfigError("\n".join(lines)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        """Read and validate the YAML file ``path``; every problem (missing file, YAML syntax
        with its line, not a mapping, bad fields) is a :class:`ConfigError` naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML{_yaml_position(exc)}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config file must hold a mapping of keys to values, "
                              f"found a {type(data).__name__}")
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
                try:
                    parsed[key.strip()] = yaml.safe_load(value)
                except yaml.YAMLError as exc:
                    raise ConfigError(f"Override {item!r}: the value is not valid YAML "
                                      f"({getattr(exc, 'problem', None) or exc})") from None
            overrides = parsed
        data = self.to_dict()
        for key, value in overrides.items():
            node = data
            parts = key.split(".")
            for depth, part in enumerate(parts, 1):
                if not isinstance(node, dict) or part not in node:
                    known = f" (known keys here: {', '.join(node)})" \
                        if isinstance(node, dict) else ""
                    raise ConfigError(f"Unknown config key {key!r} for "
                                      f"{type(self).__name__}{known}")
                if depth < len(parts):
                    node = node[part]
            node[parts[-1]] = value
        return type(self).from_dict(data, source="overrides")


def _format_error(cls: type[Config], err: dict[str, Any]) -> str:
    """One pydantic error of ``cls`` as ``key: problem (got value)``. An unknown key lists the
    known ones; the value is left out for errors of a whole section (a cross-field check),
    whose message names the fields."""
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = _section_fields(cls, err["loc"][:-1])
        if known:
            message = f"unknown key (known keys here: {', '.join(known)})"
    value = err.get("input")
    if isinstance(value, (dict, BaseModel)):
        return f"{loc}: {message}" if err["loc"] else message
    return f"{loc}: {message} (got {value!r})"


def _section_fields(cls: type[Config], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the config section at ``loc`` inside ``cls`` (empty if unknown)."""
    model: Any = cls
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _yaml_position(exc: yaml.YAMLError) -> str:
    """`` (line L, column C)`` of a YAML syntax error, 1-based, when known."""
    mark = getattr(exc, "problem_mark", None)
    return "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
