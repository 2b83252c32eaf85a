"""eSpeak NG synthesis: 16 kHz audio, word onsets that line up with the speech, and phonemes
(ARPAbet) inside their words."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from braindecode_speech.data.labels import ARPABET
from braindecode_speech.simulation.config import DEFAULT_VOICES
from braindecode_speech.simulation.stimuli import _word_ends
from braindecode_speech.simulation.tts import (
    IPA_TO_ARPABET,
    SAMPLE_RATE,
    WITHOUT_CLASS,
    TTSError,
    arpabet,
    check_voice,
    synthesize,
)

# measured on the stimuli of the tiny and demo studies (1021 and 8283 phonemes, all default
# voices): a phoneme never starts before its word's onset nor after the next word's (eSpeak
# puts some words' onset on the previous word's final l, n, ng or r), and at most 27 ms (tiny;
# demo: 11 ms) after its word's end, which _word_ends puts at the last loud 10 ms frame (a
# final l, n, r or d can be quieter)
AFTER_WORD_END = 0.03  # s


def _rms(audio: np.ndarray, start: float, stop: float) -> float:
    segment = audio[max(0, int(start * SAMPLE_RATE)):int(stop * SAMPLE_RATE)]
    return float(np.sqrt(np.mean(segment.astype(np.float64) ** 2)))


def test_every_word_gets_an_onset_even_in_merged_pairs():
    # eSpeak speaks "there was" and "in the" as single dictionary entries
    text = "There was a rabbit in the garden, and Anna waited on the bridge."
    utterance = synthesize(text, "en-us", 175)
    assert utterance.words == ("There", "was", "a", "rabbit", "in", "the", "garden", "and",
                               "Anna", "waited", "on", "the", "bridge")
    assert len(utterance.onsets) == len(utterance.words)
    assert np.all(np.diff(utterance.onsets) > 0)
    assert 0 <= utterance.onsets[0] and utterance.onsets[-1] < utterance.duration
    assert utterance.audio.dtype == np.float32 and np.abs(utterance.audio).max() <= 1


def test_word_onsets_line_up_with_the_audio():
    # a word list: pauses between words, so each onset separates silence from speech
    utterance = synthesize("basket, harbor, lantern, violin, feather.", "en-gb-x-rp+f2", 150)
    audio, onsets = utterance.audio, utterance.onsets
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160).astype(np.float64)
    floor = np.percentile(np.sqrt(np.mean(frames ** 2, axis=1)), 5) + 1e-6
    for onset in onsets:
        after = _rms(audio, onset, onset + 0.3)
        assert after > 20 * floor, (onset, after, floor)
    for onset in onsets[1:]:  # the pause before each listed word is much quieter
        assert _rms(audio, onset - 0.08, onset - 0.01) < 0.2 * _rms(audio, onset, onset + 0.3)


def test_rate_voice_and_determinism():
    text = "The old fisherman carried a heavy basket to the harbor."
    slow, fast = synthesize(text, "en-us", 130), synthesize(text, "en-us", 220)
    assert fast.duration < 0.8 * slow.duration
    assert fast.onsets[-1] < slow.onsets[-1]
    again = synthesize(text, "en-us", 130)
    np.testing.assert_array_equal(slow.audio, again.audio)
    np.testing.assert_array_equal(slow.onsets, again.onsets)
    other_voice = synthesize(text, "en-us+f3", 130)
    assert len(other_voice.audio) != len(slow.audio) or not np.array_equal(
        other_voice.audio, slow.audio)


def test_word_ends_stop_at_the_last_loud_frame():
    utterance = synthesize("basket, harbor, lantern.", "en-us", 150)
    ends = _word_ends(utterance.audio, utterance.onsets)
    assert np.all(ends > utterance.onsets + 0.1)
    assert np.all(ends[:-1] < utterance.onsets[1:])  # the comma pause is excluded
    for end, onset in zip(ends[:-1], utterance.onsets[1:]):
        assert _rms(utterance.audio, end + 0.01, onset - 0.01) < 0.1 * _rms(
            utterance.audio, end - 0.1, end)


def test_synthesis_is_identical_in_another_process():
    """eSpeak seeds its noise from the clock and carries state between utterances; the
    binding resets both, so a fresh process speaks the same samples."""
    code = ("import hashlib; from braindecode_speech.simulation.tts import synthesize; "
            "print(hashlib.sha256(synthesize('The brave sailor whispered softly.', "
            "'en-gb-x-rp+f2', 174).audio.tobytes()).hexdigest())")
    synthesize("Something else first, to change the state.", "en-us+m3", 200)
    here = hashlib.sha256(synthesize("The brave sailor whispered softly.", "en-gb-x-rp+f2",
                                     174).audio.tobytes()).hexdigest()
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here == there


@pytest.mark.parametrize("voice", ["en-us+nobody", "xx-nowhere"])
def test_unknown_voice_is_an_error(voice):
    with pytest.raises(TTSError, match="no voice"):
        check_voice(voice)
    with pytest.raises(TTSError, match="no voice"):
        synthesize("hello there.", voice)


def test_rate_outside_espeak_range_is_an_error():
    with pytest.raises(TTSError, match="80-450"):
        synthesize("hello there.", "en-us", 20)


@pytest.mark.parametrize("voice", DEFAULT_VOICES)
@pytest.mark.parametrize("text", [
    "There was a rabbit in the garden, and Anna waited on the bridge.",
    "careful, mountain, wolf, letter, patiently, square.",
])
def test_phonemes_fall_inside_their_words(voice, text):
    utterance = synthesize(text, voice, 175)
    onsets, durations = utterance.phoneme_onsets, utterance.phoneme_durations
    words = utterance.phoneme_words
    assert len(utterance.phonemes) == len(utterance.ipa) == len(onsets) == len(words) > 2 * len(
        utterance.words)
    assert set(utterance.phonemes) <= set(ARPABET)
    assert np.all(np.diff(onsets) > 0) and np.all(durations > 0)
    assert onsets[0] >= 0 and onsets[-1] + durations[-1] <= utterance.duration + 1e-9
    assert np.all(np.diff(words) >= 0) and set(words) == set(range(len(utterance.words)))
    starts = utterance.onsets
    stops = np.append(starts[1:], utterance.duration)
    assert np.all(onsets >= starts[words]) and np.all(onsets <= stops[words])
    ends = _word_ends(utterance.audio, starts)
    assert np.all(onsets <= ends[words] + AFTER_WORD_END)
    assert set(utterance.dropped) <= WITHOUT_CLASS


def test_phonemes_of_a_known_sentence_and_determinism():
    text = "The judge thought the letter was a ladder."
    utterance = synthesize(text, "en-us", 175)
    assert " ".join(utterance.phonemes) == (
        "DH AH JH AH JH TH AO T DH AH L EH T ER W AH Z AH L AE D ER")
    assert utterance.ipa[12] == "ɾ"  # the flap of "letter", spelled with a t
    assert list(utterance.phoneme_words[:8]) == [0, 0, 1, 1, 1, 2, 2, 2]
    again = synthesize(text, "en-us", 175)
    assert again.phonemes == utterance.phonemes and again.ipa == utterance.ipa
    np.testing.assert_array_equal(again.phoneme_onsets, utterance.phoneme_onsets)
    np.testing.assert_array_equal(again.phoneme_durations, utterance.phoneme_durations)
    np.testing.assert_array_equal(again.phoneme_words, utterance.phoneme_words)


def test_phonemes_without_a_class_or_samples_are_counted():
    # the Scottish voice ends "patiently" with a palatal off-glide; eSpeak gives the l of
    # "wolf" no samples
    scottish = synthesize("The widow went patiently across the mountain.", "en-gb-scotland+m4")
    assert scottish.dropped == ("ʲ",)
    wolf = synthesize("The wolf ran.", "en-us")
    assert wolf.phonemes == ("DH", "AH", "W", "UH", "F", "R", "AE", "N")
    assert wolf.unspoken == ("l",)


def test_ipa_to_arpabet_rules():
    assert set(IPA_TO_ARPABET.values()) <= set(ARPABET) and len(ARPABET) == 39
    assert arpabet("ˈɑːɹ", "barn") == "AA" and arpabet("ˌaʊ", "our") == "AW"
    assert arpabet("ᵻ", "before") == "IH" and arpabet("ɐ", "a") == "AH"
    assert arpabet("əl", "bottle") == "L" and arpabet("ɚ", "baker") == "ER"
    assert arpabet("eː", "baker") == "EY" and arpabet("e", "empty") == "EH"
    assert arpabet("ɾ", "letter") == "T" and arpabet("ɾ", "ladder") == "D"
    assert arpabet("ʲ", "patiently") is None and arpabet("ɬ", "llan") is None
