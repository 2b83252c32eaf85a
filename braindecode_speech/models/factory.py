"""Any model by config: ``model.target`` names a factory, ``model.kwargs`` its settings.

The factory is called as ``factory(n_subjects=..., n_outputs=..., n_channels=..., **kwargs)``
(the number of training subjects, of speech features F and of padded sensors C, from the data)
and returns an ``nn.Module`` with the encoder's call::

    model(x [B, C, T], subjects [B], positions [B, C, 2], mask [B, C]) -> [B, F, T]

(``subjects``: index into the training subjects, -1 for an unknown one; ``positions``: sensor
layout positions in [0, 1]; ``mask``: True for real sensors, padding is zeros). A class whose
``__init__`` takes those arguments is a factory too.

``target`` is ``"package.module:factory"`` or the name of a *registered* model: one declared
under the entry-point group ``braindecode_speech.models`` by an installed package, e.g. in its
``pyproject.toml``::

    [project.entry-points."braindecode_speech.models"]
    my_encoder = "my_package.models:make_encoder"

Safety: a config read from someone else's folder (``evaluate --run``) may only build
registered models (by name, or by their ``"module:factory"``). Any other target is imported
only with ``trust_model_code=True`` (``--trust-model-code`` on the command line), as
``trust_remote_code`` in transformers: importing a module and calling a function named by a
file runs whatever that file asks for (``subprocess:run`` with arguments in ``kwargs``). The
refusal comes before anything is imported.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from torch import nn

from ..config import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN_MODELS", "UntrustedModelError", "registered_models",
           "resolve_target", "build_from_target", "FACTORY_ARGUMENTS"]

ENTRY_POINT_GROUP = "braindecode_speech.models"

#: this package's own registered models; the same entries are declared in ``pyproject.toml``
#: (listed here as well so that a source checkout that was not reinstalled knows them)
BUILTIN_MODELS: dict[str, str] = {
    "brain_encoder": "braindecode_speech.models.encoder:brain_encoder",
    "braindecode": "braindecode_speech.models.braindecode:BraindecodeEncoder",
}

#: the arguments every factory receives from the data (``model.kwargs`` cannot set them)
FACTORY_ARGUMENTS = ("n_subjects", "n_outputs", "n_channels")


class UntrustedModelError(ConfigError):
    """A config asks for a model that is not registered, without ``trust_model_code``."""


def registered_models() -> dict[str, str]:
    """Name → ``"module:attribute"`` of the models registered under :data:`ENTRY_POINT_GROUP`
    (this package's own first)."""
    out = dict(BUILTIN_MODELS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(entry.name, entry.value)
    return out


def resolve_target(target: str, trust_model_code: bool = False,
                   source: str = "the config") -> Callable[..., nn.Module]:
    """The factory named by ``target``: a registered name, or ``"package.module:attribute"``.

    Raises :class:`UntrustedModelError` (before importing anything) for a target that is not
    registered unless ``trust_model_code``; :class:`ConfigError` for a target that cannot be
    imported or is not callable. ``source``: where the config was read, for the messages.
    """
    registry = registered_models()
    reference = registry.get(target, target)
    if ":" not in reference:
        raise ConfigError(f"model.target={target!r} in {source} is neither "
                          "'package.module:factory' nor a registered model (registered: "
                          f"{', '.join(sorted(registry))})")
    if reference not in registry.values() and not trust_model_code:
        raise UntrustedModelError(
            f"model.target={target!r} in {source} is not a registered model (entry-point group "
            f"{ENTRY_POINT_GROUP!r}: {', '.join(sorted(registry))}); importing and calling it "
            "would run code named by that config. If you trust it, pass --trust-model-code "
            "(trust_model_code=True in Python)")
    module_name, _, attribute = reference.partition(":")
    try:
        factory: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model.target={target!r} in {source}: cannot import {module_name} "
                          f"({exc})") from None
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ConfigError(f"model.target={target!r} in {source}: {module_name} has no "
                              f"{attribute}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(f"model.target={target!r} in {source}: {attribute} is a "
                          f"{type(factory).__name__}, not a factory or nn.Module class")
    return factory


def build_from_target(target: str, kwargs: Mapping[str, Any], n_subjects: int, n_outputs: int,
                      n_channels: int | None, trust_model_code: bool = False,
                      source: str = "the config") -> nn.Module:
    """``factory(n_subjects=, n_outputs=, n_channels=, **kwargs)`` of :func:`resolve_target`,
    checked: the arguments must fit the factory's signature, and the result must be an
    ``nn.Module`` (:class:`ConfigError` naming ``model.target`` otherwise)."""
    factory = resolve_target(target, trust_model_code, source)
    arguments = {"n_subjects": n_subjects, "n_outputs": n_outputs, "n_channels": n_channels,
                 **kwargs}
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to check (a builtin)
        signature = None
    if signature is not None:
        try:
            signature.bind(**arguments)
        except TypeError as exc:
            raise ConfigError(
                f"model.target={target!r} in {source} cannot be called with "
                f"{', '.join(FACTORY_ARGUMENTS)} and model.kwargs "
                f"({', '.join(kwargs) or 'none'}): {exc}") from None
    model = factory(**arguments)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.target={target!r} in {source} returned a "
                          f"{type(model).__name__}, not a torch.nn.Module")
    return model
