"""Holding prompts to CogVideoX's text limit (226 tokens for 1.0, 224 for 1.5): count, trim, and say so.

The real count comes from the model's T5 tokenizer, which only the generation container has. Here we use
a deliberately pessimistic estimate (it counts more tokens than T5 does for English text), so a prompt
that fits here also fits there; the container reports the exact count in each clip's provenance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_PIECE = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")
EOS_TOKENS = 1


def estimate_tokens(text: str) -> int:
    """Upper-bound estimate of T5 sentencepiece tokens: words cost one token per 4 letters (at least one),
    every digit and punctuation mark one, plus the end-of-sequence token."""
    total = EOS_TOKENS
    for piece in _PIECE.findall(text):
        total += max(1, math.ceil(len(piece) / 4)) if piece[0].isalpha() else 1
    return total


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    tokens: int
    trimmed: bool
    original_tokens: int


def fit_prompt(text: str, max_tokens: int) -> FittedPrompt:
    """Trim `text` at a word boundary (preferring a sentence end) until its estimate fits `max_tokens`."""
    text = " ".join(text.split())
    original = estimate_tokens(text)
    if original <= max_tokens:
        return FittedPrompt(text, original, False, original)
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:  # the longest word prefix that fits
        mid = (lo + hi + 1) // 2
        if estimate_tokens(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:  # one "word" alone is over the limit (text without spaces): cut by characters instead
        chars, chars_hi = 0, len(words[0])
        while chars < chars_hi:
            mid = (chars + chars_hi + 1) // 2
            if estimate_tokens(words[0][:mid]) <= max_tokens:
                chars = mid
            else:
                chars_hi = mid - 1
        cut = words[0][:chars]
        return FittedPrompt(cut, estimate_tokens(cut), True, original)
    cut = " ".join(words[:lo])
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end > len(cut) * 0.6:
        cut = cut[: sentence_end + 1]
    cut = cut.rstrip(" ,;:-")
    return FittedPrompt(cut, estimate_tokens(cut), True, original)
