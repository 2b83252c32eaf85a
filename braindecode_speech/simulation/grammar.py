"""A small English grammar that writes the simulated stories.

Sentences are short past-tense narrative clauses built from templates over a hand-written
vocabulary (about 400 words written for this project). Each story has its own cast and props,
drawn more often than the rest of the vocabulary, so stories differ in content but share most
words, as real audiobooks do. Two kinds of sequences are produced, as in MEG-MASC:

- ``sentence``: a grammatical sentence;
- ``word_list``: the content words of the preceding sentences, shuffled (``condition=word_list``).

A few sentences come from a pool shared by all stories, so identical sentences recur across
stories (and keep the same ``sequence_id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Sequence", "StoryGrammar", "story_titles", "shared_sentences", "CONDITIONS",
           "SHARED_POOL_SIZE"]

CONDITIONS = ("sentence", "word_list")
#: number of sentences that every story may include
SHARED_POOL_SIZE = 10

NAMES = ("Anna", "Peter", "Maria", "Thomas", "Clara", "David", "Elena", "Martin", "Sophie",
         "Oscar", "Julia", "Victor", "Helen", "Samuel", "Nora", "Felix", "Ruth", "Daniel",
         "Laura", "Simon", "Emma", "Walter", "Alice", "George")
PEOPLE = ("fisherman", "teacher", "doctor", "farmer", "sailor", "child", "woman", "man",
          "neighbor", "stranger", "baker", "soldier", "painter", "king", "girl", "boy",
          "captain", "nurse", "driver", "student", "merchant", "priest", "miller", "shepherd",
          "carpenter", "widow", "guard", "writer")
ANIMALS = ("dog", "horse", "cat", "bird", "fox", "goat", "owl", "wolf", "rabbit", "mouse",
           "cow", "duck")
OBJECTS = ("basket", "lantern", "letter", "key", "rope", "boat", "coat", "book", "map", "box",
           "bell", "cup", "knife", "ring", "candle", "chair", "wagon", "bottle", "mirror", "hat",
           "blanket", "shovel", "bucket", "clock", "drum", "violin", "apple", "bread", "coin",
           "stone", "ladder", "umbrella", "envelope", "hammer", "kettle", "pillow", "window",
           "door", "table", "photograph", "newspaper", "ticket", "jacket", "flower", "feather",
           "sack", "pencil", "bicycle", "net", "scarf")
PLACES = ("harbor", "village", "forest", "river", "kitchen", "market", "garden", "bridge",
          "church", "tower", "station", "hill", "field", "shore", "valley", "library",
          "bakery", "cellar", "school", "road", "island", "castle", "farm", "office", "hospital",
          "mountain", "lake", "barn", "square", "cottage")
ADJECTIVES = ("old", "young", "small", "large", "heavy", "quiet", "bright", "dark", "cold",
              "warm", "wet", "dry", "empty", "tired", "happy", "angry", "strange", "careful",
              "gentle", "narrow", "wooden", "silver", "golden", "broken", "ancient", "green",
              "red", "blue", "white", "black", "brown", "tall", "soft", "loud", "lonely", "busy",
              "simple", "patient", "clever", "curious", "brave", "hungry", "proud", "nervous",
              "famous", "hidden", "shiny", "dusty", "crowded", "peaceful")
# (past tense, base form) of verbs taking an object
VERBS_OBJECT = (("carried", "carry"), ("found", "find"), ("opened", "open"),
                ("painted", "paint"), ("lost", "lose"), ("bought", "buy"), ("sold", "sell"),
                ("cleaned", "clean"), ("fixed", "fix"), ("dropped", "drop"), ("hid", "hide"),
                ("lifted", "lift"), ("wrapped", "wrap"), ("counted", "count"),
                ("repaired", "repair"), ("borrowed", "borrow"), ("filled", "fill"),
                ("broke", "break"), ("stole", "steal"), ("washed", "wash"),
                ("polished", "polish"), ("packed", "pack"), ("buried", "bury"),
                ("examined", "examine"), ("forgot", "forget"))
VERBS_PERSON = (("helped", "help"), ("called", "call"), ("met", "meet"),
                ("followed", "follow"), ("watched", "watch"), ("thanked", "thank"),
                ("warned", "warn"), ("greeted", "greet"), ("remembered", "remember"),
                ("visited", "visit"), ("trusted", "trust"), ("answered", "answer"),
                ("invited", "invite"), ("chased", "chase"))
VERBS_ALONE = ("slept", "waited", "laughed", "smiled", "listened", "sang", "cried", "shouted",
               "whispered", "danced", "rested", "worked", "trembled", "sighed", "nodded",
               "prayed", "coughed", "paused")
VERBS_MOTION = ("walked", "ran", "hurried", "returned", "went", "drove", "sailed", "climbed",
                "wandered", "rode", "marched", "crawled")
VERBS_GIVE = ("gave", "showed", "brought", "sent", "handed", "offered")
VERBS_SAY = ("said", "knew", "thought", "believed", "noticed", "feared", "remembered", "hoped")
ADVERBS = ("slowly", "quickly", "quietly", "carefully", "suddenly", "finally", "gently",
           "again", "together", "loudly", "softly", "happily", "silently", "nervously",
           "proudly", "patiently")
MOTION_PREPOSITIONS = ("to", "toward", "into", "across", "along", "through", "around", "past")
PLACE_PREPOSITIONS = ("in", "near", "behind", "beside", "outside", "inside", "above", "below")
OBJECT_PREPOSITIONS = ("under", "on", "beside", "behind", "near", "inside")
TIMES = (("in", "the", "morning"), ("at", "night"), ("after", "dinner"),
         ("before", "sunrise"), ("on", "Sunday"), ("during", "the", "winter"),
         ("in", "the", "evening"), ("the", "next", "day"), ("after", "the", "storm"),
         ("before", "the", "rain"), ("every", "summer"), ("that", "afternoon"),
         ("long", "ago"), ("at", "noon"))
CONNECTIVES = ("because", "while", "although", "so", "but", "and")
POSSESSIVES = ("his", "her", "their", "our", "my")
DETERMINERS = ("the", "a", "this", "that", "every", "one")

#: words carrying content (eligible for word lists)
CONTENT_WORDS = frozenset(
    {w.lower() for w in NAMES} | set(PEOPLE) | set(ANIMALS) | set(OBJECTS) | set(PLACES)
    | set(ADJECTIVES) | set(ADVERBS) | set(VERBS_ALONE) | set(VERBS_MOTION) | set(VERBS_GIVE)
    | {past for past, _ in VERBS_OBJECT + VERBS_PERSON}
)


@dataclass(frozen=True)
class Sequence:
    """One spoken sequence: a sentence or a word list.

    ``words`` keep their spoken case (names capitalised); ``text`` is what is read aloud.
    """

    words: tuple[str, ...]
    condition: str

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not self.words or not all(w.isalpha() for w in self.words):
            raise ValueError(f"a sequence needs alphabetic words, got {self.words!r}")

    @property
    def text(self) -> str:
        """The text given to the synthesiser (sentences capitalised, lists comma-separated)."""
        if self.condition == "word_list":
            return ", ".join(self.words) + "."
        first = self.words[0][0].upper() + self.words[0][1:]
        return " ".join((first, *self.words[1:])) + "."

    @property
    def sequence_id(self) -> str:
        """Stable identity of the sequence: a hash of its condition and lower-cased words."""
        key = self.condition + ":" + " ".join(w.lower() for w in self.words)
        prefix = "sent" if self.condition == "sentence" else "list"
        return f"{prefix}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def story_titles(n_stories: int, rng: np.random.Generator) -> list[str]:
    """``n_stories`` distinct titles such as ``the_silver_lantern``."""
    titles: list[str] = []
    while len(titles) < n_stories:
        title = f"the_{rng.choice(ADJECTIVES)}_{rng.choice(OBJECTS + PLACES)}"
        if title not in titles:
            titles.append(title)
    return titles


def shared_sentences(rng: np.random.Generator,
                     n: int = SHARED_POOL_SIZE) -> tuple[Sequence, ...]:
    """``n`` sentences that stories may include, so that sentences recur across stories."""
    grammar = StoryGrammar(rng)
    return tuple(grammar.sentence() for _ in range(n))


class StoryGrammar:
    """Endless source of sequences for one story.

    Parameters
    ----------
    rng : the story's random generator (determines everything).
    shared : sentences shared by all stories; one is inserted with probability
        ``repeat_rate`` instead of a new sentence (each at most once per story).
    word_list_rate : probability that the next sequence is a word list (made of the content
        words heard since the previous list, shuffled, 5 to 10 words).
    focus : probability that a noun comes from the story's own cast and props.
    """

    def __init__(self, rng: np.random.Generator, shared: tuple[Sequence, ...] = (),
                 word_list_rate: float = 0.1, repeat_rate: float = 0.08,
                 focus: float = 0.6) -> None:
        self.rng = rng
        self.shared = list(shared)
        self.word_list_rate = word_list_rate
        self.repeat_rate = repeat_rate
        self.focus = focus
        self.cast = {
            "names": self._subset(NAMES, 3), "people": self._subset(PEOPLE, 4),
            "animals": self._subset(ANIMALS, 2), "objects": self._subset(OBJECTS, 8),
            "places": self._subset(PLACES, 5),
        }
        self._heard: list[str] = []  # content words since the last word list
        self._seen: set[str] = set()

    def __iter__(self) -> Iterator[Sequence]:
        while True:
            yield self.next_sequence()

    def next_sequence(self) -> Sequence:
        """The next sentence or word list of the story (never the same sentence twice)."""
        if len(self._heard) >= 5 and self.rng.random() < self.word_list_rate:
            words = list(dict.fromkeys(self._heard))  # unique, in order of appearance
            self.rng.shuffle(words)
            self._heard = []
            return Sequence(tuple(words[:10]), "word_list")
        if self.shared and self.rng.random() < self.repeat_rate:
            sequence = self.shared.pop(int(self.rng.integers(len(self.shared))))
        else:
            sequence = self.sentence()
            while sequence.sequence_id in self._seen:
                sequence = self.sentence()
        self._seen.add(sequence.sequence_id)
        self._heard += [w for w in sequence.words if w.lower() in CONTENT_WORDS]
        return sequence

    def sentence(self) -> Sequence:
        """A new random sentence."""
        templates = (self._transitive, self._social, self._motion, self._intransitive,
                     self._giving, self._description, self._reported, self._complex,
                     self._existential, self._intention)
        weights = np.array([4, 3, 3, 2, 2, 2, 1.5, 2, 1, 1.5])
        words = templates[self.rng.choice(len(templates), p=weights / weights.sum())]()
        return Sequence(tuple(words), "sentence")

    # --- templates --------------------------------------------------------------------------
    def _transitive(self) -> list[str]:
        words = self._agent() + [self._pick(VERBS_OBJECT)[0]] + self._thing()
        if self.rng.random() < 0.4:
            words += [self._pick(OBJECT_PREPOSITIONS)] + self._place()
        return self._maybe_time(words)

    def _social(self) -> list[str]:
        words = self._agent() + [self._pick(VERBS_PERSON)[0]] + self._agent()
        if self.rng.random() < 0.4:
            words += [self._pick(PLACE_PREPOSITIONS)] + self._place()
        return self._maybe_time(words)

    def _motion(self) -> list[str]:
        words = self._agent() + [self._pick(VERBS_MOTION)]
        if self.rng.random() < 0.3:
            words.append(self._pick(ADVERBS))
        words += [self._pick(MOTION_PREPOSITIONS)] + self._place()
        return self._maybe_time(words)

    def _intransitive(self) -> list[str]:
        words = self._agent() + [self._pick(VERBS_ALONE)]
        if self.rng.random() < 0.5:
            words.append(self._pick(ADVERBS))
        if self.rng.random() < 0.5:
            words += [self._pick(PLACE_PREPOSITIONS)] + self._place()
        return words

    def _giving(self) -> list[str]:
        return self._agent() + [self._pick(VERBS_GIVE)] + self._agent() + self._thing()

    def _description(self) -> list[str]:
        words = self._noun_phrase(self._pick_noun("objects" if self.rng.random() < 0.5
                                                  else "places"), adjective=False)
        words += ["was", self._pick(ADJECTIVES)]
        if self.rng.random() < 0.5:
            words += ["and", self._pick(ADJECTIVES)]
        return words

    def _reported(self) -> list[str]:
        clause = (self._transitive if self.rng.random() < 0.5 else self._motion)()
        return self._agent() + [self._pick(VERBS_SAY), "that"] + clause

    def _complex(self) -> list[str]:
        first = (self._motion if self.rng.random() < 0.5 else self._transitive)()
        second = (self._intransitive if self.rng.random() < 0.5 else self._social)()
        return first + [self._pick(CONNECTIVES)] + second

    def _existential(self) -> list[str]:
        noun = self._pick_noun("objects" if self.rng.random() < 0.6 else "animals")
        article = "an" if self._article_vowel(noun) else "a"
        words = ["there", "was", article, noun, self._pick(PLACE_PREPOSITIONS)]
        return words + self._place()

    def _intention(self) -> list[str]:
        verb = self._pick(VERBS_OBJECT)[1]
        return self._agent() + ["wanted", "to", verb] + self._thing()

    # --- phrases ----------------------------------------------------------------------------
    def _agent(self) -> list[str]:
        draw = self.rng.random()
        if draw < 0.4:
            return [self._pick_noun("names")]
        category = "people" if draw < 0.85 else "animals"
        return self._noun_phrase(self._pick_noun(category))

    def _thing(self) -> list[str]:
        return self._noun_phrase(self._pick_noun("objects"))

    def _place(self) -> list[str]:
        return self._noun_phrase(self._pick_noun("places"), determiners=("the",))

    def _noun_phrase(self, noun: str, adjective: bool | None = None,
                     determiners: tuple[str, ...] = DETERMINERS + POSSESSIVES) -> list[str]:
        if adjective is None:
            adjective = self.rng.random() < 0.45
        head = [self._pick(ADJECTIVES), noun] if adjective else [noun]
        determiner = self._pick(determiners)
        if determiner == "a" and self._article_vowel(head[0]):
            determiner = "an"
        return [determiner] + head

    def _maybe_time(self, words: list[str]) -> list[str]:
        if self.rng.random() < 0.25:
            return words + list(self._pick(TIMES))
        return words

    def _pick_noun(self, category: str) -> str:
        pools = {"names": NAMES, "people": PEOPLE, "animals": ANIMALS, "objects": OBJECTS,
                 "places": PLACES}
        if self.rng.random() < self.focus:
            return self._pick(self.cast[category])
        return self._pick(pools[category])

    def _pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def _subset(self, options: tuple[str, ...], n: int) -> tuple[str, ...]:
        return tuple(options[i] for i in self.rng.choice(len(options), size=n, replace=False))

    @staticmethod
    def _article_vowel(word: str) -> bool:
        return word[0] in "aeio" or word.startswith("um")
