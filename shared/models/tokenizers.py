"""Character and word tokenizers with a JSON round trip."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
KINDS = ("char", "word")
# A char tokenizer renders <unk> as one replacement character so decoded text keeps its length.
_CHAR_UNK = "\ufffd"


@dataclass(frozen=True)
class Tokenizer:
    """Map text to integer ids per character or per whitespace-separated word."""

    kind: str
    vocab: list[str]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.vocab) < 2 or self.vocab[PAD_ID] != PAD or self.vocab[UNK_ID] != UNK:
            raise ValueError("vocab must start with '<pad>', '<unk>'")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab entries must be unique")
        object.__setattr__(self, "_index", {tok: i for i, tok in enumerate(self.vocab)})

    @property
    def vocab_size(self) -> int:
        """Return the number of ids, specials included."""
        return len(self.vocab)

    def split(self, text: str) -> list[str]:
        """Return the tokens of text (characters, or whitespace-separated words)."""
        return list(text) if self.kind == "char" else text.split()

    def encode(self, text: str) -> list[int]:
        """Return the ids of text, mapping unknown tokens to <unk>."""
        index = self._index
        return [index.get(tok, UNK_ID) for tok in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Return the text of ids, skipping padding."""
        unk = _CHAR_UNK if self.kind == "char" else UNK
        size = len(self.vocab)
        tokens = [
            self.vocab[i] if 1 < i < size else unk for i in (int(x) for x in ids) if i != PAD_ID
        ]
        return "".join(tokens) if self.kind == "char" else " ".join(tokens)

    def to_json(self) -> dict:
        """Return a JSON-serialisable description of this tokenizer."""
        return {"kind": self.kind, "vocab": list(self.vocab)}

    @classmethod
    def from_json(cls, data: dict) -> Tokenizer:
        """Rebuild a tokenizer from the output of to_json."""
        return cls(kind=str(data["kind"]), vocab=[str(t) for t in data["vocab"]])

    @classmethod
    def fit(cls, kind: str, text: str, max_vocab: int) -> Tokenizer:
        """Build a tokenizer from the most frequent tokens of text (ties broken by token)."""
        if max_vocab < 2:
            raise ValueError("max_vocab must be at least 2 (for <pad> and <unk>)")
        tokens: Sequence[str] = list(text) if kind == "char" else text.split()
        counts = Counter(tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = [PAD, UNK] + [tok for tok, _ in ranked[: max_vocab - 2]]
        return cls(kind=kind, vocab=vocab)
