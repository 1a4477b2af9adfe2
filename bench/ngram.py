"""A character n-gram language model with Witten-Bell interpolation: the text model's baseline."""

from __future__ import annotations

import math
from collections import Counter, defaultdict


class CharNgram:
    """P(c | previous n-1 chars), interpolated down to a uniform distribution over the charset."""

    def __init__(self, n: int, text: str) -> None:
        self.n = n
        self.vocab = [*sorted(set(text)), "\x00unk"]
        self.counts: list[dict[str, Counter[str]]] = []
        for order in range(n):  # order = context length
            table: dict[str, Counter[str]] = defaultdict(Counter)
            for i in range(order, len(text)):
                table[text[i - order : i]][text[i]] += 1
            self.counts.append(table)

    def prob(self, history: str, char: str) -> float:
        """Return the interpolated probability of ``char`` after ``history``."""
        p = 1.0 / len(self.vocab)
        for order in range(self.n):
            if order > len(history):
                break
            ctx = history[len(history) - order :] if order else ""
            seen = self.counts[order].get(ctx)
            if not seen:
                continue
            total, types = sum(seen.values()), len(seen)
            p = (seen.get(char, 0) + types * p) / (total + types)
        return p

    def bits_per_char(self, text: str, warmup: str = "") -> float:
        """Return the mean negative log2 probability of each character of ``text``."""
        full = warmup[-(self.n - 1) :] + text if self.n > 1 else text
        offset = len(full) - len(text)
        total = 0.0
        for i in range(offset, len(full)):
            total -= math.log2(self.prob(full[max(0, i - self.n + 1) : i], full[i]))
        return total / max(len(text), 1)
