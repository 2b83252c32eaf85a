"""The stimuli of the simulated study: stories written by :mod:`.grammar`, spoken by
eSpeak NG (:mod:`.tts`) and cut into wav files, as in MEG-MASC.

Each wav file has its own narrator: a voice and a speaking rate drawn per file, the voice
never that of the previous file of the story (so that a story's voice cannot stand in for its
identity, and neighbouring files always differ when there are several voices). A file's
sequences are synthesised one by one and concatenated with short silences; a wav file is closed
once it exceeds ``chunk_duration`` and the story once its speech exceeds ``story_duration``. Word onsets
come from eSpeak's word events, word ends from the audio (the last 10 ms frame above 5 % of the
utterance's loud-frame level before the next word). Phonemes (ARPAbet) come from eSpeak's phoneme
events (:mod:`.tts`): each lasts until the next phoneme or pause.

Files (paths relative to the BIDS root): ``stimuli/audio/<story>_<k>.wav`` (16 kHz, 16 bit),
``stimuli/text/<story>.txt`` (one sequence per line, as spoken), ``stimuli/words.tsv``,
``stimuli/phonemes.tsv`` and ``stimuli/sounds.tsv`` (the tables of :class:`Stimuli`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from .grammar import StoryGrammar, shared_sentences, story_titles
from .tts import SAMPLE_RATE, WITHOUT_CLASS, Utterance, synthesize

__all__ = ["Stimuli", "render_stimuli", "AUDIO_DIR"]

logger = logging.getLogger(__name__)

AUDIO_DIR = Path("stimuli") / "audio"
_LEAD_SILENCE = 0.25  # s of silence opening each wav file
_TRAIL_SILENCE = 0.5  # s closing it


@dataclass
class Stimuli:
    """What the subjects hear.

    Attributes
    ----------
    sounds : one row per wav file: ``story``, ``sound`` (path relative to the BIDS root),
        ``sound_index`` (position in the story), ``duration`` (s), ``voice``, ``speech_rate``
        (words per minute).
    words : one row per spoken word: ``story``, ``sound``, ``voice``, ``sound_offset`` (onset
        in the wav, s), ``duration`` (s), ``word`` (as written, no punctuation), ``word_index`` (0-based
        position in its sequence), ``sequence_id``, ``condition`` (``sentence`` |
        ``word_list``), ``sequence_index`` (position of the sequence in its story).
    phonemes : one row per spoken phoneme: ``story``, ``sound``, ``voice``, ``sound_offset``
        (onset in the wav, s), ``duration`` (s, until the next phoneme or pause),
        ``phoneme`` (ARPAbet, no stress), ``ipa`` (eSpeak's phoneme), ``word_index`` (of its
        word), ``sequence_id``, ``condition``, ``sequence_index``.
    transcripts : story -> the text of its sequences, in order.
    dropped : IPA phoneme -> how many were left out for want of an ARPAbet class.
    unspoken : how many phonemes were left out because eSpeak gave them no samples.
    """

    sounds: pd.DataFrame
    words: pd.DataFrame
    phonemes: pd.DataFrame
    transcripts: dict[str, list[str]]
    dropped: dict[str, int]
    unspoken: int

    @property
    def stories(self) -> list[str]:
        return list(dict.fromkeys(self.sounds["story"]))

    def write_tables(self, root: Path) -> None:
        """Write ``stimuli/words.tsv``, ``phonemes.tsv``, ``sounds.tsv`` and the
        transcripts."""
        (root / "stimuli" / "text").mkdir(parents=True, exist_ok=True)
        self.words.to_csv(root / "stimuli" / "words.tsv", sep="\t", index=False,
                          float_format="%.6f")
        self.phonemes.to_csv(root / "stimuli" / "phonemes.tsv", sep="\t", index=False,
                             float_format="%.6f")
        self.sounds.to_csv(root / "stimuli" / "sounds.tsv", sep="\t", index=False,
                           float_format="%.6f")
        for story, lines in self.transcripts.items():
            (root / "stimuli" / "text" / f"{story}.txt").write_text("\n".join(lines) + "\n")


def render_stimuli(root: Path, seed: int, n_stories: int, story_duration: float,
                   chunk_duration: float, voices: tuple[str, ...],
                   speech_rate: tuple[int, int], sentence_gap: tuple[float, float],
                   word_list_rate: float, repeat_rate: float) -> Stimuli:
    """Write the wav files of ``n_stories`` stories under ``root`` and return their tables.

    Parameters
    ----------
    root : BIDS root; wav files go to ``root / AUDIO_DIR``.
    seed : determines texts, narrators, rates and silences.
    story_duration, chunk_duration : target speech per story and per wav file, s.
    voices, speech_rate : eSpeak voices to draw each wav file's narrator from; (min, max)
        words per minute.
    sentence_gap : (min, max) silence between sequences, s.
    word_list_rate, repeat_rate : see :class:`.grammar.StoryGrammar`.
    """
    (root / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 10])
    titles = story_titles(n_stories, rng)
    shared = shared_sentences(np.random.default_rng([seed, 11]))
    sounds, words, phonemes, transcripts = [], [], [], {}
    dropped: Counter[str] = Counter()
    unspoken = 0
    for index, story in enumerate(titles):
        story_rng = np.random.default_rng([seed, 12, index])
        grammar = StoryGrammar(story_rng, shared, word_list_rate, repeat_rate)
        narrators = _narrators(np.random.default_rng([seed, 13, index]), voices, speech_rate)
        story_sounds, story_words, story_phonemes, lines, story_dropped, story_unspoken = \
            _render_story(
                root, story, grammar, narrators, story_duration, chunk_duration, sentence_gap,
                story_rng)
        sounds += story_sounds
        words += story_words
        phonemes += story_phonemes
        transcripts[story] = lines
        dropped += story_dropped
        unspoken += story_unspoken
        logger.info("story %s: %d wav files, %d words, %d phonemes (left out: %d without an "
                    "ARPAbet class, %d without samples), voices %s", story, len(story_sounds),
                    len(story_words), len(story_phonemes), sum(story_dropped.values()),
                    story_unspoken, sorted({s["voice"] for s in story_sounds}))
    unknown = {ipa: n for ipa, n in dropped.items() if ipa not in WITHOUT_CLASS}
    if unknown:
        logger.warning("phonemes missing from tts.IPA_TO_ARPABET were left out of the "
                       "stimuli: %s", unknown)
    return Stimuli(pd.DataFrame(sounds), pd.DataFrame(words), pd.DataFrame(phonemes),
                   transcripts, dict(sorted(dropped.items())), unspoken)


def _narrators(rng: np.random.Generator, voices: tuple[str, ...],
               speech_rate: tuple[int, int]) -> Iterator[tuple[str, int]]:
    """Endless (voice, words per minute) of a story's successive wav files: the voice drawn
    uniformly among those other than the previous file's (any voice if there is only one)."""
    previous = None
    while True:
        choices = [v for v in voices if v != previous] or list(voices)
        previous = choices[int(rng.integers(len(choices)))]
        yield previous, int(rng.integers(speech_rate[0], speech_rate[1] + 1))


def _render_story(root: Path, story: str, grammar: StoryGrammar,
                  narrators: Iterator[tuple[str, int]], story_duration: float,
                  chunk_duration: float, gap: tuple[float, float],
                  rng: np.random.Generator
                  ) -> tuple[list[dict], list[dict], list[dict], list[str], Counter[str], int]:
    sounds, words, phonemes, lines = [], [], [], []
    dropped: Counter[str] = Counter()
    unspoken = 0
    speech = 0.0
    sequence_index = 0
    while speech < story_duration:
        sound = (AUDIO_DIR / f"{story}_{len(sounds)}.wav").as_posix()
        voice, rate = next(narrators)
        pieces = [np.zeros(int(_LEAD_SILENCE * SAMPLE_RATE), np.float32)]
        position = len(pieces[0])  # samples
        while position / SAMPLE_RATE < chunk_duration and speech < story_duration:
            sequence = grammar.next_sequence()
            utterance = synthesize(sequence.text, voice, rate)
            ends = _word_ends(utterance.audio, utterance.onsets)
            start = position / SAMPLE_RATE
            common = dict(sequence_id=sequence.sequence_id, condition=sequence.condition,
                          sequence_index=sequence_index)
            for word_index, (word, onset, end) in enumerate(
                    zip(utterance.words, utterance.onsets, ends)):
                words.append(dict(
                    story=story, sound=sound, voice=voice, sound_offset=start + onset,
                    duration=end - onset, word=word, word_index=word_index, **common))
            phonemes += _phoneme_rows(utterance, story, sound, voice, start, common)
            dropped.update(utterance.dropped)
            unspoken += len(utterance.unspoken)
            lines.append(sequence.text)
            sequence_index += 1
            silence = np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), np.float32)
            pieces += [utterance.audio, silence]
            position += len(utterance.audio) + len(silence)
            speech += utterance.duration
        pieces[-1] = np.zeros(int(_TRAIL_SILENCE * SAMPLE_RATE), np.float32)
        audio = np.concatenate(pieces)
        soundfile.write(root / sound, audio, SAMPLE_RATE, subtype="PCM_16")
        sounds.append(dict(story=story, sound=sound, sound_index=len(sounds),
                           duration=len(audio) / SAMPLE_RATE, voice=voice, speech_rate=rate))
    return sounds, words, phonemes, lines, dropped, unspoken


def _phoneme_rows(utterance: Utterance, story: str, sound: str, voice: str, start: float,
                  common: dict) -> list[dict]:
    """Rows of the phonemes table for ``utterance``, which starts ``start`` s into ``sound``."""
    return [dict(story=story, sound=sound, voice=voice, sound_offset=start + onset,
                 duration=duration, phoneme=label, ipa=ipa, word_index=int(word), **common)
            for label, ipa, onset, duration, word in zip(
                utterance.phonemes, utterance.ipa, utterance.phoneme_onsets,
                utterance.phoneme_durations, utterance.phoneme_words)]


def _word_ends(audio: np.ndarray, onsets: np.ndarray, frame: float = 0.01,
               floor: float = 0.05) -> np.ndarray:
    """End of each word (s): the end of the last ``frame``-long window, before the next
    word's onset, whose RMS exceeds ``floor`` times the 95th percentile of frame RMS."""
    size = int(frame * SAMPLE_RATE)
    n_frames = len(audio) // size
    rms = np.sqrt(np.mean(audio[:n_frames * size].reshape(n_frames, size) ** 2, axis=1))
    threshold = floor * np.percentile(rms, 95)
    limits = np.append(onsets[1:], len(audio) / SAMPLE_RATE)
    ends = np.empty(len(onsets))
    for i, (onset, limit) in enumerate(zip(onsets, limits)):
        first, last = int(onset * SAMPLE_RATE) // size, int(limit * SAMPLE_RATE) // size
        loud = np.flatnonzero(rms[first:last] > threshold)
        ends[i] = min(limit, (first + loud[-1] + 1) * size / SAMPLE_RATE) if len(loud) else limit
    return ends
