"""The meaning guard of the semantic cache: two prompts an encoder rates as paraphrases
must also agree on what embeddings blur.

Measured on benchmarks/cache/ (pairs written for it): the static encoder rates "Is it
safe to ...?" and "Is it not safe to ...?" 0.99 alike, "Convert 5 km to miles" and
"Convert 5 miles to km" 1.0 (it does not see word order), "capital of France" and
"capital of Germany" 0.91, above most true paraphrases; MiniLM does little better. No
similarity threshold separates them, so a candidate above the threshold is served only if
the two prompts have
- the same numbers, in the same order (digits, and number words read as digits);
- as many negations (not, no, never, without, n't, ...);
- the same content words in the same order, after lower-casing, light stemming and
  dropping function words and the phrasing of a request ("please", "can you tell me",
  "what's the way to", ...): another entity, unit, product, opposite or word order is
  another question.
So the semantic cache catches the same question phrased around the same words (case,
punctuation, politeness, question form, plurals, contractions), not synonyms: precision
first, and the hit rate on each kind of paraphrase is in benchmarks/cache/README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+")
_CONTRACTIONS = (
    (re.compile(r"\bcan't\b|\bcannot\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'(?:s|d|ll|re|ve|m)\b"), ""),
)
NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "non"}
)
NUMBER_WORDS = {
    word: str(value)
    for value, words in enumerate(
        [
            "zero",
            "one first once",
            "two second twice",
            "three third",
            "four fourth",
            "five fifth",
            "six sixth",
            "seven seventh",
            "eight eighth",
            "nine ninth",
            "ten tenth",
            "eleven",
            "twelve dozen",
        ]
    )
    for word in words.split()
} | {"twenty": "20", "thirty": "30", "fifty": "50", "hundred": "100", "thousand": "1000"}
# Function words and the phrasing of a request: differences here do not change the question.
_FILLER_WORDS = """
    a an the this that these those it its there here i me my mine you your yours we our us
    he she his her they them their is are was were be been being am do does did done doing
    have has had can could would will shall may might what which who whom whose how when
    where why to of in on at for with by about into onto from as and or but if so than then
    too very just also really exactly actually please kindly tell know explain help want like
    need way ways possible any some let get st nd rd th thank thanks hi hello hey ok okay
    anyone someone something question quick quickly again
"""
FILLER = frozenset(_FILLER_WORDS.split())


@dataclass(frozen=True, slots=True)
class Gist:
    """What two prompts must share to be served one answer."""

    numbers: tuple[str, ...]
    negations: int
    words: tuple[str, ...]  # content words, stemmed, in order, first occurrences


def gist(text: str) -> Gist:
    lowered = text.lower().replace("\u2019", "'")
    for pattern, replacement in _CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    numbers: list[str] = []
    words: list[str] = []
    negations = 0
    for token in _TOKEN.findall(lowered):
        if token[0].isdigit():
            numbers.append(token.replace(",", ""))
        elif token in NUMBER_WORDS:
            numbers.append(NUMBER_WORDS[token])
        elif token in NEGATIONS:
            negations += 1
        elif token not in FILLER:
            stem = _stem(token)
            if stem not in words:
                words.append(stem)
    return Gist(tuple(numbers), negations, tuple(words))


def same_question(a: str, b: str) -> bool:
    return gist(a) == gist(b)


def _stem(word: str) -> str:
    """Plural and -ing/-ed endings off (a few rules, not a full stemmer: enough for the
    same word in another form)."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # shipping -> ship
            break
    return word
