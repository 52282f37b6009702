"""torchrun / DDP: every rank reads an equal share of the plan, both ranks of a real 2-process gloo
run end with the same weights, equal to what the run saved, and a killed torchrun run resumes; masked
unit prediction keeps its ranks in step too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiotok_cli.training.data import _share
from training_helpers import assert_same_tensors

HERE = Path(__file__).parent


def test_each_rank_reads_an_equal_contiguous_share_of_the_plan():
    items = [(4, np.array([3, 0, 7])), (1, np.array([5, 2])), (6, np.array([1, 4, 0, 2, 6]))]  # 10 rows
    shares = [_share(items, rank, 3) for rank in range(3)]
    flat = [[(shard, int(row)) for shard, rows in share for row in rows] for share in shares]
    assert [len(rows) for rows in flat] == [4, 4, 4]  # ceil(10 / 3) each: the same number of steps
    plan = [(shard, int(row)) for shard, rows in items for row in rows]
    assert flat[0] + flat[1] + flat[2][:2] == plan  # in plan order, every row once...
    assert flat[2][2:] == plan[:2]  # ...the last share padded with the plan's first rows
    assert [[shard for shard, _ in share] for share in shares] == [[4, 1], [1, 6], [6, 4]]  # one read a shard


def _torchrun(data_dir: Path, run: str, out: Path, die_in_epoch: int = 0) -> subprocess.CompletedProcess:
    out.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(HERE / "ddp_train.py"), str(data_dir), run, str(out), str(die_in_epoch),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _ddp_alive_at_destroy(out: Path) -> list[int]:
    """Per rank, the DDP wrappers alive when the process group was destroyed: freeing one later
    frees the group under the GIL, which can deadlock with gloo's worker thread (a CI run hung)."""
    return [int((out / f"rank{rank}.alive").read_text()) for rank in (0, 1)]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo over localhost, as CI runs it")
def test_two_gloo_ranks_agree_save_once_and_resume_under_torchrun(tokenized, tmp_path):
    data_dir = tokenized.data_dir
    whole = _torchrun(data_dir, "ddp", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tokenized.runs_dir / "ddp"
    ranks = [tmp_path / "whole" / f"rank{rank}.safetensors" for rank in (0, 1)]
    assert_same_tensors(ranks[0], ranks[1])  # DDP kept the ranks in step
    assert _ddp_alive_at_destroy(tmp_path / "whole") == [0, 0]
    assert_same_tensors(run_dir / "last.safetensors", ranks[0], prefix="model.")  # no `module.` prefix
    lines = (run_dir / "metrics.jsonl").read_text().count('"kind": "epoch"')
    assert lines == 3  # rank 0 alone wrote the run

    killed = _torchrun(data_dir, "ddp-cut", tmp_path / "cut", die_in_epoch=2)
    assert killed.returncode != 0 and "killed before epoch 2" in killed.stderr
    assert _ddp_alive_at_destroy(tmp_path / "cut") == [0, 0]  # an error's traceback let go of it too
    cut = json.loads((tokenized.runs_dir / "ddp-cut" / "run.json").read_text())["history"]
    resumed = _torchrun(data_dir, "ddp-cut", tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((tokenized.runs_dir / "ddp-cut" / "run.json").read_text())["history"]
    assert len(cut) == 1 and history[0] == cut[0]  # epoch 1 was kept, not trained again
    assert_same_tensors(tokenized.runs_dir / "ddp-cut" / "last.safetensors", run_dir / "last.safetensors")


@pytest.mark.skipif(sys.platform != "linux", reason="gloo over localhost, as CI runs it")
def test_masked_unit_prediction_keeps_two_gloo_ranks_in_step_under_torchrun(tokenized, tmp_path):
    done = _torchrun(tokenized.data_dir, "units-ddp", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tokenized.runs_dir / "units-ddp"
    assert_same_tensors(tmp_path / "rank0.safetensors", tmp_path / "rank1.safetensors")
    assert _ddp_alive_at_destroy(tmp_path) == [0, 0]
    assert_same_tensors(run_dir / "last.safetensors", tmp_path / "rank0.safetensors", prefix="model.")
    assert (run_dir / "metrics.jsonl").read_text().count('"kind": "epoch"') == 2  # rank 0 alone wrote it
