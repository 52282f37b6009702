"""One writer at a time: a second writer is refused naming the holder, nothing is lost, and the
lock of a killed process is taken over. Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiotok_cli.errors import BusyError
from audiotok_cli.lock import WriterLock, holder_of
from audiotok_cli.store import PENDING, Store
from audiotok_cli.training.runs import read_record


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "audiotok_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lock(target: Path, process: subprocess.Popen) -> None:
    """Until `process` holds the writer lock on `target` (it records itself once it does)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        holder = holder_of(target)
        if holder is not None and holder.pid == process.pid:
            return
        if process.poll() is not None:
            pytest.fail(f"the writer ended before it was caught holding the lock: {process.communicate()}")
        time.sleep(0.02)
    pytest.fail("the writer never took the lock")


def _pending_features(store_path: Path, name: str) -> int:
    return int((Store.open(store_path).features(name).all_lengths() == PENDING).sum())


def test_a_second_writer_is_refused_naming_the_holder_and_nothing_is_lost(featurized, cli):
    store_path = featurized.store_path
    first = _start("featurize", "--name", "second", "--quiet")
    try:
        _wait_for_lock(store_path, first)
        os.kill(first.pid, signal.SIGSTOP)  # hold it mid-work, lock taken
        refused = cli("expand", "--mirror-dir", str(featurized.mirror_dir))
        assert refused.exit_code == 9
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"is being written by pid {first.pid}" in lines[0] and "`featurize`" in lines[0]
        assert "wait for it to finish" in lines[0]
        info = cli("info", "--json")  # readers are never blocked, and see the writer
        assert info.exit_code == 0
        assert json.loads(info.stdout)["store"]["writer"]["pid"] == first.pid
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    store = Store.open(store_path)
    assert store.n_clips == 48
    assert (store.features("second").all_lengths() > 0).all()
    assert holder_of(store_path) is None and not Path(f"{store_path}.lock").exists()  # released, deleted
    assert cli("expand", "--mirror-dir", str(featurized.mirror_dir)).exit_code == 0


def test_the_lock_of_a_killed_writer_is_taken_over_with_a_warning(featurized, cli):
    store_path = featurized.store_path
    victim = _start("featurize", "--name", "second", "--quiet")
    _wait_for_lock(store_path, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert holder_of(store_path).pid == victim.pid  # its record is left behind ...
    assert not holder_of(store_path).running()
    assert json.loads(cli("info", "--json").stdout)["store"]["writer"] is None  # ... and known dead

    after = cli("featurize", "--name", "second")
    assert after.exit_code == 0, after.output
    assert f"taking over {store_path}.lock from pid {victim.pid}" in " ".join(after.stderr.split())
    assert "which is no longer running" in after.stderr
    assert _pending_features(store_path, "second") == 0
    assert Store.open(store_path).features("second").all_lengths().min() > 0


def test_a_lock_recorded_by_another_host_is_refused_with_the_file_to_delete(tmp_path):
    target = tmp_path / "store.zarr"
    lock = tmp_path / "store.zarr.lock"
    lock.write_text('{"pid": 1, "host": "elsewhere", "command": "featurize", "started": "2026-01-01"}')
    refusal = pytest.raises(BusyError, match=f"locked by pid 1 on elsewhere.*delete {lock}")
    with refusal, WriterLock(target, "expand"):
        pass
    lock.write_text("")
    with WriterLock(target, "expand"):
        assert holder_of(target).command == "expand"
    assert holder_of(target) is None


def test_one_process_cannot_hold_the_same_lock_twice(tmp_path):
    held = WriterLock(tmp_path / "run", "train")
    refusal = pytest.raises(BusyError, match=f"pid {os.getpid()}")
    with held, refusal, WriterLock(tmp_path / "run", "train"):
        pass


def test_no_lock_file_is_left_beside_a_run_or_the_store_after_success_or_an_interrupt(
    tokenized, cli, monkeypatch
):
    import audiotok_cli.training.loop as loop

    quick = ["train", "--model", "simple", "--epochs", "2", "--embed-dim", "8"]
    assert cli(*quick).exit_code == 0
    monkeypatch.setattr(
        loop, "mean_average_precision", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    assert cli(*quick, "--run-name", "cut").exit_code == 130
    left = sorted(path.name for path in tokenized.data_dir.rglob("*.lock"))
    assert left == [] and (tokenized.runs_dir / "cut").is_dir()


def test_a_writer_that_waited_on_a_deleted_lock_file_locks_the_new_one(tmp_path, monkeypatch):
    """The holder deletes the file as it lets go: a writer that had opened the old file must not
    count the lock it then gets on it (two writers would hold "the" lock at once)."""
    target = tmp_path / "run"
    stale = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT)  # opened, then deleted by its holder
    os.unlink(f"{target}.lock")
    real_open, opened = os.open, []

    def open_stale_first(path, *args, **kwargs):
        opened.append(path)
        return os.dup(stale) if len(opened) == 1 else real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_stale_first)
    with WriterLock(target, "train"):
        monkeypatch.setattr(os, "open", real_open)
        assert len(opened) == 2 and holder_of(target).command == "train"  # the file at the path
        with pytest.raises(BusyError), WriterLock(target, "train"):
            pass
    os.close(stale)


def test_sigterm_is_handled_as_ctrl_c_one_line_work_kept_exit_143(tokenized):
    """What SLURM sends at a walltime and Kubernetes before a kill: the run stops as on Ctrl-C,
    its finished epochs kept for the rerun to resume from."""
    run = tokenized.runs_dir / "long"
    trainer = _start("train", "--model", "simple", "--epochs", "500", "--run-name", "long", "--quiet")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "last.safetensors").exists():
        assert trainer.poll() is None, trainer.communicate()
        time.sleep(0.05)  # until an epoch is finished: work to keep
    trainer.send_signal(signal.SIGTERM)
    _, stderr = trainer.communicate(timeout=60)
    assert trainer.returncode == 143, stderr
    assert stderr.strip() == "terminated (SIGTERM): finished work is kept; run the command again to resume"

    record = read_record(run)
    assert not record.complete and len(record.history) >= 1  # a rerun resumes after these epochs
    assert not (tokenized.runs_dir / "long.lock").exists()


def test_a_signal_during_a_store_read_still_ends_in_one_line(tmp_path):
    """A signal that lands as zarr starts a read leaves that read's coroutine never awaited; Python
    warned of it at exit under the red line (seen once in CI). A command stands in for the read."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        "import asyncio\n"
        "from audiotok_cli.cli.app import Terminated, app, command\n"
        "@command('interrupted-mid-read')\n"
        "def interrupted_mid_read():\n"
        "    pending = asyncio.sleep(0)  # made, never awaited: as zarr's read when the signal came\n"
        "    raise Terminated\n"
        "app(['interrupted-mid-read'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    line = "terminated (SIGTERM): finished work is kept; run the command again to resume"
    assert done.stderr.strip() == line


def test_ctrl_c_landing_in_a_weakref_callback_is_not_swallowed(tmp_path):
    """Round 4: Ctrl-C during `report` landed in a library's weakref callback; Python printed it as
    "Exception ignored" with a traceback and the command went on to exit 0. A real SIGINT, raised
    where Python cannot pass it on."""
    script = tmp_path / "swallowed.py"
    script.write_text(
        "import os, signal, time, weakref\n"
        "from audiotok_cli.cli.app import app, command\n"
        "class Thing: pass\n"
        "@command('swallowed')\n"
        "def swallowed():\n"
        "    def callback(ref):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(1)  # the handler runs here, inside the callback\n"
        "    thing = Thing()\n"
        "    ref = weakref.ref(thing, callback)\n"
        "    del thing\n"
        "    print('finished')\n"
        "app(['swallowed'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "interrupted: finished work is kept; run the command again to resume"


def test_inputs_a_run_reads_cannot_be_replaced_under_it(tokenized, cli):
    """vocab + tokenize --overwrite during a train switched the run to new token ids mid-training
    while it kept the old centroids. Now the overwrite is refused naming the run; a reader that
    died no longer counts."""
    from audiotok_cli.lock import readers_of

    store_path = tokenized.store_path
    trainer = _start("train", "--model", "simple", "--epochs", "500", "--run-name", "long", "--quiet")
    try:
        deadline = time.monotonic() + 120
        while not readers_of(store_path, "tokens/logmel-k16"):
            assert time.monotonic() < deadline and trainer.poll() is None, trainer.communicate()
            time.sleep(0.05)
        for command in (["tokenize", "--overwrite"], ["vocab", "--k", "16", "--overwrite"]):
            refused = cli(*command)
            assert refused.exit_code == 9, command
            line = " ".join(refused.stderr.split())
            assert f"is being read by pid {trainer.pid}" in line and "`train`" in line, line
            assert "wait for it to finish" in line
        assert readers_of(store_path, "features/logmel") == []  # a token run does not hold its frames
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
    assert readers_of(store_path, "tokens/logmel-k16") == []  # died: its lease went with it
    assert cli("tokenize", "--overwrite").exit_code == 0
