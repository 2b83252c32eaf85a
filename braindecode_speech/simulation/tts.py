"""Offline English speech synthesis with eSpeak NG, with exact word and phoneme onsets.

A small ctypes binding to the ``libespeak-ng`` shipped by the ``espeakng-loader`` wheel. eSpeak
runs in synchronous mode: a callback receives the audio (16-bit, 22050 Hz) and the synthesis
events; ``espeakEVENT_WORD`` events carry the sample at which each word starts, so word onsets
are exact (no forced alignment). The audio is resampled to 16 kHz with
:func:`scipy.signal.resample_poly`.

Phonemes: eSpeak is initialised with phoneme events in IPA (``espeakINITIALIZE_PHONEME_EVENTS
| espeakINITIALIZE_PHONEME_IPA``; the audio is bit-identical without them). Each
``espeakEVENT_PHONEME`` carries the phoneme in IPA, the sample at which it starts and the text
position of the word it belongs to, which gives its word (eSpeak sometimes starts a word at the
previous word's final l, n, ng or r: that phoneme then starts at the next word's onset but keeps
its own word); empty phonemes mark pauses. A phoneme lasts until the next phoneme or pause
event; eSpeak gives a few phonemes no samples (the l of "wolf"): they are left out. Its class is ARPAbet (:data:`~braindecode_speech.data.labels.ARPABET`, 39 phonemes, no stress)
through :data:`IPA_TO_ARPABET`; see that table for the rules.

Reproducibility: eSpeak seeds its noise generator (aspiration, frication) from the clock, and
keeps internal state (e.g. the phase of its glottal source) from one utterance to the next,
which ``espeak_Terminate`` does not reset. Each call therefore loads a fresh instance of the
library, seeds its noise generator with a constant (``espeak_ng_SetRandSeed``) and unloads it
afterwards (about 10 ms in all): :func:`synthesize` is a pure function of its arguments. Calls
are serialised with a lock.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import functools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

__all__ = ["SAMPLE_RATE", "IPA_TO_ARPABET", "WITHOUT_CLASS", "Utterance", "TTSError",
           "synthesize", "available_voices", "check_voice", "arpabet"]

#: sample rate of the synthesised audio, Hz
SAMPLE_RATE = 16_000

# Constants of speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_INITIALIZE_PHONEME_EVENTS = 1
_INITIALIZE_PHONEME_IPA = 2
_PARAM_RATE = 1
_EE_OK = 0
_NOISE_SEED = 0

_WORD = re.compile(r"[A-Za-z']+")
# eSpeak speaks some frequent word pairs ("in the", "there was") as one dictionary entry, with
# a single word event; a zero-width space before each word keeps them apart (the audio is
# unchanged to within 0.1 % of its duration)
_WORD_START = re.compile(r" (?=[A-Za-z'])")
_LOCK = threading.Lock()


#: eSpeak's IPA phoneme (stress marks ˈ ˌ removed) -> ARPAbet class. The keys are the phonemes
#: that the English voices of the simulation (en-us, en, en-gb-x-rp, en-gb-scotland) emit on the
#: grammar's sentences, plus ʒ. Length marks are kept in the keys because the Scottish voice
#: uses them to tell vowels apart (eː "baker" vs e "empty", oː "goat" vs o "storm", aː "barn"
#: vs a "black"; a: with an ASCII colon is its BATH vowel, "after"). Rules for the phonemes
#: without an ARPAbet symbol of their own (TIMIT's 61 -> 39 folding where it has one):
#:
#: - reduced vowels: ə, ɐ -> AH (TIMIT ax -> ah); ᵻ -> IH (ix -> ih); ɚ, ɜ(ː) -> ER (axr -> er);
#: - syllabic l: əl -> L (el -> l);
#: - the flap ɾ -> T or D as its word is spelled (CMUdict's convention: "letter" L EH T ER),
#:   see :func:`arpabet`;
#: - accent variants to the nearest General American class: ɒ -> AA, a -> AE, e -> EH,
#:   ʌʉ -> AW, əʊ -> OW, ʉ(ː) -> UW (the Scottish vowel of both "book" and "blue"),
#:   ʍ -> W ("white"), r -> R;
#: - diphthongs with a centring or r-coloured second part, and vowel + r, spoken as one eSpeak
#:   phoneme, take the class of their first vowel (eə, ɛɹ -> EH; iə -> IY; ɪɹ -> IH;
#:   ʊə, ʊɹ -> UH; ʉɹ -> UW; aɪə, aɪɚ -> AY; ɑːɹ -> AA; ɔːɹ -> AO), except əɹ, ʌɹ -> ER (the NURSE
#:   vowel); no separate R is made up;
#: - the phonemes of :data:`WITHOUT_CLASS`, and any phoneme missing from this table, are
#:   dropped and listed in :attr:`Utterance.dropped`.
IPA_TO_ARPABET: dict[str, str] = {
    # consonants
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "ɡ": "G", "f": "F", "v": "V", "θ": "TH",
    "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH", "h": "HH", "tʃ": "CH", "dʒ": "JH",
    "m": "M", "n": "N", "ŋ": "NG", "l": "L", "əl": "L", "ɹ": "R", "r": "R", "w": "W",
    "ʍ": "W", "j": "Y",
    # vowels
    "ɑː": "AA", "ɒ": "AA", "aː": "AA", "æ": "AE", "a": "AE", "a:": "AE", "ʌ": "AH", "ə": "AH",
    "ɐ": "AH", "ɔ": "AO", "ɔː": "AO", "o": "AO", "ɛ": "EH", "e": "EH", "eə": "EH",
    "eː": "EY", "eɪ": "EY", "ɚ": "ER", "ɜ": "ER", "ɜː": "ER", "əɹ": "ER", "ʌɹ": "ER",
    "ɪ": "IH", "ᵻ": "IH", "i": "IY", "iː": "IY", "iə": "IY", "ʊ": "UH", "ʊə": "UH",
    "uː": "UW", "ʉ": "UW", "ʉː": "UW", "oʊ": "OW", "əʊ": "OW", "oː": "OW", "aɪ": "AY",
    "aɪə": "AY", "aʊ": "AW", "ʌʉ": "AW", "ɔɪ": "OY",
    # vowel + r (one eSpeak phoneme)
    "ɑːɹ": "AA", "ɔːɹ": "AO", "ɛɹ": "EH", "ɪɹ": "IH", "ʊɹ": "UH", "ʉɹ": "UW", "aɪɚ": "AY",
}
#: eSpeak phonemes (stress marks removed) known to have no ARPAbet class: ʲ, the palatal
#: off-glide that the Scottish voice appends to a final -y ("patiently")
WITHOUT_CLASS = frozenset({"ʲ"})
_FLAP = "ɾ"
_STRESS = str.maketrans("", "", "ˈˌ")


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
    phonemes : ARPAbet class of each phoneme (in :data:`~braindecode_speech.data.labels.ARPABET`), in order.
    ipa : each phoneme as eSpeak names it (IPA, with stress marks).
    phoneme_onsets, phoneme_durations : float64 ``[n_phonemes]``, s: start in ``audio``, and
        time until the next phoneme or pause.
    phoneme_words : int64 ``[n_phonemes]``, index in ``words`` of the word of each phoneme.
    dropped : the IPA phonemes (stress marks removed) left out for want of an ARPAbet class
        (see :data:`IPA_TO_ARPABET`), in order; their time is part of no phoneme.
    unspoken : the IPA phonemes left out because eSpeak gave them no samples (e.g. the l of
        "wolf"), in order.
    """

    audio: np.ndarray
    words: tuple[str, ...]
    onsets: np.ndarray
    phonemes: tuple[str, ...]
    ipa: tuple[str, ...]
    phoneme_onsets: np.ndarray
    phoneme_durations: np.ndarray
    phoneme_words: np.ndarray
    dropped: tuple[str, ...]
    unspoken: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Length of the audio, s."""
        return len(self.audio) / SAMPLE_RATE


@functools.cache
def _paths() -> tuple[str, Path]:
    """The library file and the data folder shipped by espeakng-loader."""
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), Path(espeakng_loader.get_data_path())
    except (ImportError, RuntimeError) as exc:
        raise TTSError(f"cannot find eSpeak NG (espeakng-loader): {exc}") from exc


class _Engine:
    """One loaded and initialised instance of libespeak-ng (see :func:`_fresh_engine`)."""

    def __init__(self) -> None:
        library, self.data_path = _paths()
        try:
            self.lib = ctypes.CDLL(library, mode=os.RTLD_LOCAL)
        except OSError as exc:
            raise TTSError(f"cannot load eSpeak NG from {library}: {exc}") from exc
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        self.native_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
            _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA)
        if self.native_rate <= 0:
            raise TTSError(f"espeak_Initialize failed (data path {self.data_path})")
        lib.espeak_ng_SetRandSeed(ctypes.c_long(_NOISE_SEED))
        self._chunks: list[np.ndarray] = []
        self._word_events: list[tuple[int, int]] = []
        self._phoneme_events: list[tuple[str, int, int]] = []
        # keep a reference: the C library calls it during synthesis
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self._word_events.append((event.text_position, event.sample))
            elif event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0")[0].decode()
                self._phoneme_events.append((name, event.text_position, event.sample))
            i += 1
        return 0  # continue synthesis

    def set_voice(self, voice: str) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise TTSError(f"eSpeak NG has no voice {voice!r}")

    def run(self, text: str, voice: str, rate: int
            ) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[str, int, int]]]:
        """Synthesise ``text``; return int16 audio at the native rate, (position, sample) of
        every word event and (IPA, position, sample) of every phoneme event."""
        self.set_voice(voice)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        data = text.encode()
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                       _ESPEAK_CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise TTSError(f"espeak_Synth failed with status {status} on {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, list(self._word_events), list(self._phoneme_events)

    def close(self) -> None:
        """Terminate eSpeak and unload the library (its static state goes with it)."""
        self.lib.espeak_Terminate()
        handle = self.lib._handle
        del self.lib
        (_ctypes.dlclose if hasattr(_ctypes, "dlclose") else _ctypes.FreeLibrary)(handle)


@contextlib.contextmanager
def _fresh_engine() -> Iterator[_Engine]:
    """A newly loaded eSpeak NG, unloaded on exit (one at a time in the process)."""
    with _LOCK:
        engine = _Engine()
        try:
            yield engine
        finally:
            engine.close()


@functools.cache
def available_voices() -> tuple[str, ...]:
    """Voice variants usable as ``<language>+<variant>`` (e.g. ``en-us+f3``)."""
    return tuple(sorted(p.name for p in (_paths()[1] / "voices" / "!v").iterdir()))


def check_voice(voice: str) -> None:
    """Raise :class:`TTSError` unless ``voice`` (``language[+variant]``) exists in eSpeak NG."""
    _check_variant(voice)
    with _fresh_engine() as engine:
        engine.set_voice(voice.partition("+")[0])


def _check_variant(voice: str) -> None:
    # eSpeak silently ignores an unknown variant, so it is checked here
    variant = voice.partition("+")[2]
    if variant and variant not in available_voices():
        raise TTSError(f"eSpeak NG has no voice variant {variant!r} (voice {voice!r}); "
                       "see braindecode_speech.simulation.tts.available_voices()")


def arpabet(ipa: str, word: str) -> str | None:
    """ARPAbet class of the eSpeak phoneme ``ipa`` spoken in ``word`` (see
    :data:`IPA_TO_ARPABET`); ``None`` when it has none. The flap ``ɾ`` is ``T`` when ``word``
    is spelled with a t, else ``D`` when with a d."""
    bare = ipa.translate(_STRESS)
    if bare == _FLAP:
        spelled = word.lower()
        return "T" if "t" in spelled else "D" if "d" in spelled else None
    return IPA_TO_ARPABET.get(bare)


def synthesize(text: str, voice: str = "en-us", rate: int = 175) -> Utterance:
    """Speak ``text`` with eSpeak NG.

    Parameters
    ----------
    text : ASCII English text; words are runs of letters and apostrophes.
    voice : eSpeak voice name, optionally with a variant, e.g. ``"en-gb-x-rp+f2"``.
    rate : speaking rate, words per minute (eSpeak accepts 80-450).

    Returns
    -------
    Utterance : 16 kHz audio, the exact onset of every word of ``text`` and its phonemes; the
        same arguments always give the same utterance.

    Raises
    ------
    TTSError : unknown voice or variant, or eSpeak's word events do not match the words of
        ``text`` one to one, or a phoneme event names no word of ``text``.
    """
    if not 80 <= rate <= 450:
        raise TTSError(f"speaking rate {rate} wpm is outside eSpeak's range 80-450")
    _check_variant(voice)
    spoken = _WORD_START.sub(" \u200b", text)
    tokens = [(m.start() + 1, m.group()) for m in _WORD.finditer(spoken)]  # 1-based positions
    with _fresh_engine() as engine:
        native, events, phoneme_events = engine.run(spoken, voice, rate)
        native_rate = engine.native_rate
    positions = [position for position, _ in events]
    if positions != [position for position, _ in tokens]:
        raise TTSError(
            f"eSpeak's word events do not match the words of {text!r}: "
            f"events at characters {positions}, words at {[p for p, _ in tokens]}")
    gcd = np.gcd(SAMPLE_RATE, native_rate)
    audio = resample_poly(native.astype(np.float64) / 32768.0, SAMPLE_RATE // gcd,
                          native_rate // gcd)
    onsets = np.array([sample for _, sample in events], dtype=np.float64) / native_rate
    words = tuple(word for _, word in tokens)
    phonemes = _phonemes(phoneme_events, {p: i for i, p in enumerate(positions)}, words,
                         len(native), native_rate, text)
    return Utterance(audio=np.clip(audio, -1, 1).astype(np.float32), words=words,
                     onsets=onsets, **phonemes)


def _phonemes(events: list[tuple[str, int, int]], word_at: dict[int, int],
              words: tuple[str, ...], n_samples: int, native_rate: int, text: str) -> dict:
    """The phoneme fields of :class:`Utterance` from eSpeak's (IPA, text position, sample)
    phoneme events; ``word_at`` maps a word's text position to its index in ``words``, the
    audio has ``n_samples`` at ``native_rate`` Hz."""
    ends = [sample for _, _, sample in events[1:]] + [n_samples]
    kept: dict[str, list] = {"phonemes": [], "ipa": [], "phoneme_onsets": [],
                             "phoneme_durations": [], "phoneme_words": []}
    dropped, unspoken = [], []
    for (ipa, position, sample), end in zip(events, ends):
        if not ipa:
            continue  # a pause
        if position not in word_at:
            raise TTSError(f"eSpeak's phoneme {ipa!r} at sample {sample} of {text!r} belongs "
                           f"to no word (character {position})")
        label = arpabet(ipa, words[word_at[position]])
        if label is None:
            dropped.append(ipa.translate(_STRESS))
            continue
        if end == sample:
            unspoken.append(ipa)
            continue
        for key, value in (("phonemes", label), ("ipa", ipa), ("phoneme_onsets", sample),
                           ("phoneme_durations", end - sample),
                           ("phoneme_words", word_at[position])):
            kept[key].append(value)
    return {"phonemes": tuple(kept["phonemes"]), "ipa": tuple(kept["ipa"]),
            "phoneme_onsets": np.array(kept["phoneme_onsets"], dtype=np.float64) / native_rate,
            "phoneme_durations": np.array(kept["phoneme_durations"],
                                          dtype=np.float64) / native_rate,
            "phoneme_words": np.array(kept["phoneme_words"], dtype=np.int64),
            "dropped": tuple(dropped), "unspoken": tuple(unspoken)}
