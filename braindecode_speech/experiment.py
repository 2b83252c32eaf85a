"""Deprecated alias of :mod:`braindecode_speech.experiments` (moved there in 0.2.0; this alias
goes in 0.3.0)."""

import warnings

from .experiments import *  # noqa: F403
from .experiments import __all__  # noqa: F401

warnings.warn("braindecode_speech.experiment moved to braindecode_speech.experiments; import "
              "from there (this alias goes in 0.3.0)", DeprecationWarning, stacklevel=2)
