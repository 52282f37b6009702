"""Byte-pair merges of token sequences (`tokenize --merges N`), with Hugging Face `tokenizers`: the
pairs of centroid ids that follow each other most often in the train split's sequences become new
ids, as text tokenizers merge characters into subwords. Sequences get shorter and the vocabulary
larger; a merged id can stand for a sound that lasts several frames.

Each centroid id is one character (from U+4E00 on, so k can reach 20,992) and a clip's sequence is
one word: the trainer sees no boundaries, and merges never cross clips. The trained tokenizer is
kept as its own JSON (in the merged tokens' record, and in a run's preprocessing), so `predict`
merges a new file's ids exactly as `tokenize` merged the store's.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from tokenizers import Tokenizer, models, trainers

FIRST_CHARACTER = 0x4E00


def _text(ids: np.ndarray) -> str:
    return "".join(map(chr, (np.asarray(ids, dtype=np.int64) + FIRST_CHARACTER).tolist()))


def train_merges(sequences: Iterable[np.ndarray], n_clusters: int, merges: int) -> str:
    """A BPE tokenizer (as JSON) over `n_clusters` centroid ids with up to `merges` merges, learned
    from `sequences` (the train split's). Fewer merges are learned when no pair repeats."""
    tokenizer = Tokenizer(models.BPE())
    alphabet = [chr(FIRST_CHARACTER + i) for i in range(n_clusters)]
    trainer = trainers.BpeTrainer(
        vocab_size=n_clusters + merges,
        initial_alphabet=alphabet,
        limit_alphabet=n_clusters,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
    )
    tokenizer.train_from_iterator((_text(ids) for ids in sequences), trainer)
    return tokenizer.to_str()


class Merges:
    """A trained tokenizer applied to centroid-id sequences."""

    def __init__(self, json_text: str) -> None:
        self.tokenizer = Tokenizer.from_str(json_text)
        self.size = self.tokenizer.get_vocab_size()

    def __call__(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        """Each sequence of centroid ids as its merged ids (ids 0 .. size-1), in a batch."""
        encoded = self.tokenizer.encode_batch([_text(ids) for ids in sequences])
        return [np.asarray(one.ids, dtype=np.int32) for one in encoded]

    def as_array(self) -> np.ndarray:
        """The tokenizer's JSON as bytes, for a run's preprocessing (safetensors holds arrays)."""
        return np.frombuffer(self.tokenizer.to_str().encode(), dtype=np.uint8).copy()

    @classmethod
    def from_array(cls, array: np.ndarray) -> Merges:
        return cls(bytes(np.asarray(array, dtype=np.uint8)).decode())
