"""Leaked copies: sets of identical clips (the same bytes, or under `import --dedupe near` the same
samples) that a split puts in more than one of train, val and test.

`import` keeps copies in one group, so a split drawn by group never separates them; a published
split (a hub upload's `train/` and `test/` folders, a fold, named groups) may. A test clip whose copy
was trained on is scored on what the model memorised: on a leaky published split a token model
scored 0.978 on the leaked clips and 0.700 on the rest. `split` counts them, and every figure made on
such a split is given twice, over all test clips and over the leak-free ones (those without a copy
in train or val).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Leaks:
    """Where a split separates copies."""

    sets: int  # sets of copies with members in more than one of train, val and test
    test: np.ndarray  # mask over clips: test clips with a copy in train or val
    val: np.ndarray  # mask over clips: val clips with a copy in train


def find_leaks(digests: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Leaks:
    """The leaks of a split given as masks over clips, and each clip's content digest ("" unknown:
    nobody's copy, as AudioSet's clips are)."""
    where = np.select([train, val, test], [0, 1, 2], default=-1)
    known = (digests != "") & (where >= 0)
    leaked_test, leaked_val = np.zeros(len(where), dtype=bool), np.zeros(len(where), dtype=bool)
    if not known.any():
        return Leaks(0, leaked_test, leaked_val)
    rows = np.flatnonzero(known)
    _, copy_set = np.unique(digests[rows].astype(str), return_inverse=True)
    holds = np.zeros((copy_set.max() + 1, 3), dtype=bool)  # per set of copies: train, val, test hold one
    holds[copy_set, where[rows]] = True
    leaked_test[rows] = test[rows] & (holds[:, 0] | holds[:, 1])[copy_set]
    leaked_val[rows] = val[rows] & holds[copy_set, 0]
    return Leaks(int((holds.sum(axis=1) > 1).sum()), leaked_test, leaked_val)
