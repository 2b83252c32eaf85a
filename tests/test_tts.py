"""eSpeak NG synthesis: 16 kHz audio and word onsets that line up with the speech."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from braindecode_speech.simulation.stimuli import _word_ends
from braindecode_speech.simulation.tts import SAMPLE_RATE, TTSError, check_voice, synthesize


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
