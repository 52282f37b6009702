"""A tokenizer as one object, as Hugging Face's tokenizers and faiss's quantizers are: the per-clip
frame transforms, the frame map fitted on train frames (cmvn, pca:D), the quantizer with its
codebooks, and byte-pair merges where the tokens have them. `vocab` fits one, `tokenize` and
`predict` encode with it, and its arrays are what the store's vocabulary and a run's preprocessing
keep (`to_arrays` / `from_arrays`), so a file predicted is tokenized as the store's clips were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audiotok_cli.audio.transforms import FrameTransforms, LinearMap
from audiotok_cli.tokenizer.merges import Merges
from audiotok_cli.tokenizer.quantizers import Cluster, Quantizer, quantizer_of, train_quantizer

PAD_TOKEN = -1  # a step past a clip's end, in a padded block of ids


@dataclass(frozen=True)
class Tokenizer:
    quantizer: Quantizer
    transforms: FrameTransforms = field(default_factory=FrameTransforms)
    frame_map: LinearMap | None = None
    merges: Merges | None = None

    @classmethod
    def fit(cls, sample: np.ndarray, transforms: FrameTransforms, spec: str, cluster: Cluster) -> Tokenizer:
        """Fit on `sample`, train frames with the per-clip transforms already applied (as they are
        drawn clip by clip): the frame map first, then the quantizer `spec` over the mapped frames."""
        frame_map = transforms.fit(sample)
        mapped = frame_map(sample) if frame_map is not None else sample
        return cls(train_quantizer(spec, mapped, cluster), transforms, frame_map)

    def mapped(self, vectors: np.ndarray) -> np.ndarray:
        """Per-clip-transformed frames in the space the quantizer reads (the fitted map applied)."""
        return self.frame_map(vectors) if self.frame_map is not None else vectors

    def encode_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Per-clip-transformed frames `[n, dim]` as ids (`[n]`, or `[n, codebooks]`); no merges."""
        return self.quantizer.encode(self.mapped(vectors))

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """One clip's frames as its ids, every step of the recipe: transforms, map, codes, merges."""
        ids = self.encode_vectors(self.transforms(frames))
        return self.merges([ids])[0] if self.merges is not None else ids

    def encode_block(
        self, frames: np.ndarray, lengths: np.ndarray, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray]:
        """A padded block of clips' frames as a padded block of ids (PAD_TOKEN past each clip's
        steps, [clip, step(, codebook)]) and each clip's steps; no merges."""
        steps = self.transforms.lengths(lengths) if self.transforms else lengths  # pool:M: fewer steps
        books = self.quantizer.codebooks.shape[0] if self.quantizer.codebooks.ndim == 3 else None
        shape = (len(lengths), frames.shape[1]) + ((books,) if books else ())
        ids = np.full(shape, PAD_TOKEN, dtype=dtype)
        valid = np.arange(frames.shape[1]) < steps[:, None]
        if valid.any():
            ids[valid] = self.encode_vectors(self.transforms.valid_frames(frames, lengths))
        return ids, steps

    def squared_errors(self, mapped: np.ndarray) -> np.ndarray:
        """Each mapped frame's squared distance to what its ids stand for (float64)."""
        error = mapped - self.quantizer.decode(self.quantizer.encode(mapped))
        return (error.astype(np.float64) ** 2).sum(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its arrays, as the store's vocabulary and a run's preprocessing keep them."""
        arrays = {"centroids": self.quantizer.codebooks}
        if self.frame_map is not None:
            arrays |= self.frame_map.arrays()
        if self.merges is not None:
            arrays["merges"] = self.merges.as_array()
        return arrays

    @classmethod
    def from_arrays(cls, spec: str, transforms: FrameTransforms, arrays: dict[str, np.ndarray]) -> Tokenizer:
        """The tokenizer whose `to_arrays` these are (`spec`: its quantizer, as recorded)."""
        merges = Merges.from_array(arrays["merges"]) if "merges" in arrays else None
        return cls(quantizer_of(spec, arrays["centroids"]), transforms, LinearMap.from_arrays(arrays), merges)
