"""Imported by spawned featurize workers in tests/test_parallel.py: the task of shard 1 dies as a
killed process would, after writing its shard's data and before the lengths that mark it done."""

from __future__ import annotations

import os

from audiotok_cli.stages import featurize as stage
from audiotok_cli.store import PaddedSet

REAL_TASK = stage._featurize_task


def task_killed_in_shard_one(*args):
    shard = args[-1]
    if shard == 1:

        def data_then_death(self, index, data, lengths):
            self.data[self.shard_rows(index)] = data
            os._exit(9)

        PaddedSet.write_shard = data_then_death
    return REAL_TASK(*args)
