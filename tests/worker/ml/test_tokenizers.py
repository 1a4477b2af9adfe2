"""Tokenizer behaviour: round trips, <unk>, JSON, deterministic fitting."""

from __future__ import annotations

import json

import pytest

from shared.models.tokenizers import PAD_ID, UNK_ID, Tokenizer


def test_char_round_trip_and_unknown() -> None:
    tok = Tokenizer.fit("char", "hello world", max_vocab=100)
    assert tok.vocab[:2] == ["<pad>", "<unk>"]
    assert tok.decode(tok.encode("hello world")) == "hello world"
    ids = tok.encode("hez")
    assert ids[-1] == UNK_ID and UNK_ID not in ids[:-1]
    assert tok.decode([PAD_ID, *tok.encode("he"), PAD_ID]) == "he"


def test_word_round_trip_and_unknown() -> None:
    tok = Tokenizer.fit("word", "the cat  sat\non the mat", max_vocab=100)
    assert tok.decode(tok.encode("the   cat\tsat")) == "the cat sat"
    assert tok.encode("the dog") == [tok.vocab.index("the"), UNK_ID]
    assert tok.decode(tok.encode("the dog")) == "the <unk>"


def test_fit_keeps_most_frequent_with_deterministic_ties() -> None:
    tok = Tokenizer.fit("char", "bbbaaccd", max_vocab=5)
    # b (3), then a and c tie at 2 and are ordered by the character itself; d is dropped.
    assert tok.vocab == ["<pad>", "<unk>", "b", "a", "c"]
    assert tok.vocab_size == 5
    assert Tokenizer.fit("char", "bbbaaccd", max_vocab=5) == tok


def test_json_round_trip() -> None:
    tok = Tokenizer.fit("word", "a b b c", max_vocab=10)
    again = Tokenizer.from_json(json.loads(json.dumps(tok.to_json())))
    assert again == tok
    assert again.encode("b c a z") == tok.encode("b c a z")


@pytest.mark.parametrize(
    "kind,vocab", [("bpe", ["<pad>", "<unk>"]), ("char", ["<unk>", "<pad>"]), ("char", ["<pad>"])]
)
def test_invalid_tokenizers_are_rejected(kind: str, vocab: list[str]) -> None:
    with pytest.raises(ValueError):
        Tokenizer(kind=kind, vocab=vocab)
