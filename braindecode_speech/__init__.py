"""braindecode-speech: decode perceived speech from non-invasive brain recordings."""

__version__ = "0.1.0"
