"""Offline English speech synthesis with eSpeak NG, with exact word onsets.

A small ctypes binding to the ``libespeak-ng`` shipped by the ``espeakng-loader`` wheel. eSpeak
runs in synchronous mode: a callback receives the audio (16-bit, 22050 Hz) and the synthesis
events; ``espeakEVENT_WORD`` events carry the sample at which each word starts, so word onsets
are exact (no forced alignment). The audio is resampled to 16 kHz with
:func:`scipy.signal.resample_poly`.

eSpeak keeps global state, so one engine serves the whole process and calls are serialised with
a lock.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

__all__ = ["SAMPLE_RATE", "Utterance", "TTSError", "synthesize", "available_voices",
           "check_voice"]

#: sample rate of the synthesised audio, Hz
SAMPLE_RATE = 16_000

# Constants of speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_EE_OK = 0

_WORD = re.compile(r"[A-Za-z']+")
# eSpeak speaks some frequent word pairs ("in the", "there was") as one dictionary entry, with
# a single word event; a zero-width space before each word keeps them apart (the audio is
# unchanged to within 0.1 % of its duration)
_WORD_START = re.compile(r" (?=[A-Za-z'])")


class TTSError(RuntimeError):
    """eSpeak NG could not be loaded or could not synthesise a text."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word
        ("length", ctypes.c_int),  # word length in characters
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at the native rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Utterance:
    """Synthesised speech of one text.

    Attributes
    ----------
    audio : float32 waveform ``[n_samples]`` at :data:`SAMPLE_RATE`, in [-1, 1].
    words : the words of the text, in order (punctuation stripped).
    onsets : float64 ``[n_words]``, s from the start of ``audio`` at which each word starts.
    """

    audio: np.ndarray
    words: tuple[str, ...]
    onsets: np.ndarray

    @property
    def duration(self) -> float:
        """Length of the audio, s."""
        return len(self.audio) / SAMPLE_RATE


class _Engine:
    """The process-wide eSpeak NG instance (use through :func:`synthesize`)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader

            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
            self.data_path = Path(espeakng_loader.get_data_path())
        except (ImportError, OSError, RuntimeError) as exc:
            raise TTSError(f"cannot load eSpeak NG from espeakng-loader: {exc}") from exc
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        self.native_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if self.native_rate <= 0:
            raise TTSError(f"espeak_Initialize failed (data path {self.data_path})")
        self._chunks: list[np.ndarray] = []
        self._word_events: list[tuple[int, int]] = []
        # keep a reference: the C library calls it after this method returns
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD:
                self._word_events.append((events[i].text_position, events[i].sample))
            i += 1
        return 0  # continue synthesis

    def run(self, text: str, voice: str, rate: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Synthesise ``text``; return int16 audio at the native rate and (position, sample)
        of every word event."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise TTSError(f"eSpeak NG has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self._chunks, self._word_events = [], []
            data = text.encode()
            status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                           _ESPEAK_CHARS_UTF8, None, None)
            if status != _EE_OK:
                raise TTSError(f"espeak_Synth failed with status {status} on {text!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio, list(self._word_events)


@functools.cache
def _engine() -> _Engine:
    return _Engine()


@functools.cache
def available_voices() -> tuple[str, ...]:
    """Voice variants usable as ``<language>+<variant>`` (e.g. ``en-us+f3``)."""
    return tuple(sorted(p.name for p in (_engine().data_path / "voices" / "!v").iterdir()))


def check_voice(voice: str) -> None:
    """Raise :class:`TTSError` unless ``voice`` (``language[+variant]``) exists in eSpeak NG."""
    engine = _engine()
    language, _, variant = voice.partition("+")
    if variant and variant not in available_voices():
        raise TTSError(f"eSpeak NG has no voice variant {variant!r} (voice {voice!r}); "
                       "see braindecode_speech.simulation.tts.available_voices()")
    with engine.lock:
        if engine.lib.espeak_SetVoiceByName(language.encode()) != _EE_OK:
            raise TTSError(f"eSpeak NG has no voice {language!r} (voice {voice!r})")


def synthesize(text: str, voice: str = "en-us", rate: int = 175) -> Utterance:
    """Speak ``text`` with eSpeak NG.

    Parameters
    ----------
    text : ASCII English text; words are runs of letters and apostrophes.
    voice : eSpeak voice name, optionally with a variant, e.g. ``"en-gb-x-rp+f2"``.
    rate : speaking rate, words per minute (eSpeak accepts 80-450).

    Returns
    -------
    Utterance : 16 kHz audio and the exact onset of every word of ``text``.

    Raises
    ------
    TTSError : unknown voice or variant, or eSpeak's word events do not match the words of
        ``text`` one to one.
    """
    engine = _engine()
    check_voice(voice)
    if not 80 <= rate <= 450:
        raise TTSError(f"speaking rate {rate} wpm is outside eSpeak's range 80-450")
    spoken = _WORD_START.sub(" \u200b", text)
    tokens = [(m.start() + 1, m.group()) for m in _WORD.finditer(spoken)]  # 1-based positions
    native, events = engine.run(spoken, voice, rate)
    positions = [position for position, _ in events]
    if positions != [position for position, _ in tokens]:
        raise TTSError(
            f"eSpeak's word events do not match the words of {text!r}: "
            f"events at characters {positions}, words at {[p for p, _ in tokens]}")
    up, down = _resample_factors(engine.native_rate)
    audio = resample_poly(native.astype(np.float64) / 32768.0, up, down)
    onsets = np.array([sample for _, sample in events], dtype=np.float64) / engine.native_rate
    return Utterance(audio=np.clip(audio, -1, 1).astype(np.float32),
                     words=tuple(word for _, word in tokens), onsets=onsets)


def _resample_factors(native_rate: int) -> tuple[int, int]:
    gcd = np.gcd(SAMPLE_RATE, native_rate)
    return SAMPLE_RATE // gcd, native_rate // gcd
