"""No array without a checksum, an empty file is damage, a read-only store can be scrubbed, the root
record is checked against its arrays, and every repair named runs as printed. Real stores, real
damage on disk (truncation to 0 bytes, single flipped bits), a real read-only mount where the
machine allows one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from audiotok_cli.store import Pick, Store
from store_helpers import printed_repairs, run_printed


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]
    assert lines and "Traceback" not in result.stderr, result.output
    return lines[-1]


def _chunk(store_path, array: str):
    return next(path for path in sorted((store_path / array / "c").rglob("*")) if path.is_file())


def _flip_one_bit(path) -> None:
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    path.write_bytes(bytes(payload))


READERS = {  # an array, and commands that read it
    "clips/split": [["train", "--model", "baseline", "--epochs", "1"], ["info"]],
    "clips/ytid": [["export-tokens", "out.parquet"]],
    "clips/labels": [["train", "--model", "baseline", "--epochs", "1"], ["split", "--val-ratio", "0.2"]],
    "clips/source": [["info"], ["split", "--val-ratio", "0.2"]],
    "vocab/logmel-k16/centroids": [["tokenize", "--vocab", "logmel-k16", "--overwrite"], ["inspect"]],
    "features/logmel/lengths": [["info"], ["vocab", "--k", "8"], ["tokenize", "--overwrite"]],
    "features/logmel/data": [["vocab", "--k", "8"], ["train", "--model", "baseline", "--epochs", "1"]],
    "tokens/logmel-k16/data": [
        ["export-tokens", "out.parquet"],
        ["train", "--model", "simple", "--epochs", "1"],
    ],
    "tokens/logmel-k16/lengths": [["info"], ["export-tokens", "out.parquet"]],
}


@pytest.mark.parametrize("damage", ["one flipped bit", "an empty file"])
@pytest.mark.parametrize("array", list(READERS))
def test_damage_in_any_array_is_refused_by_every_reader_and_named_by_verify(cli, tokenized, array, damage):
    """Clip columns and centroids were written without a checksum (one bit moved every test clip
    into train); an empty shard file read as zeros with its clips marked done."""
    assert Store.open(tokenized.store_path).unchecked_arrays() == []
    path = _chunk(tokenized.store_path, array)
    if damage == "an empty file":
        path.write_bytes(b"")
    else:
        _flip_one_bit(path)
    group = array.rsplit("/", 1)[0]
    for command in READERS[array]:
        result = cli(*command)
        if command == ["info"] and result.exit_code == 0:  # it describes the rest, the damage below
            said = " ".join(result.stdout.split())
            assert group in said and "is damaged" in said
            continue
        assert result.exit_code == 5, (command, result.output)
        line = _one_line(result)
        assert group in line and "is damaged" in line, (command, line)
    found = cli("verify")
    assert found.exit_code == 5, found.output
    assert group in " ".join(found.stdout.split())


def _write_unchecked(store_path, array: str) -> np.ndarray:
    """Rewrite an array as audiotok 0.2 wrote it: Zstd without a checksum."""
    old = zarr.open_array(store_path / array, mode="r")
    data, attributes = old[:], old.attrs.asdict()
    zarr.create_array(
        store_path / array,
        shape=old.shape,
        dtype=old.dtype,
        chunks=old.chunks,
        fill_value=old.fill_value,
        compressors=ZstdCodec(),
        attributes=attributes,
        overwrite=True,
    )[:] = data
    return data


def test_arrays_an_older_audiotok_wrote_without_checksums_are_named_and_rewritten_with_them(cli, tokenized):
    store_path = tokenized.store_path
    before = {array: _write_unchecked(store_path, array) for array in ("clips/split", "clips/ytid")}
    before["vocab/logmel-k16/centroids"] = _write_unchecked(store_path, "vocab/logmel-k16/centroids")
    found = cli("verify")
    assert found.exit_code == 0, found.output  # nothing damaged: they still read
    said = " ".join(found.stdout.split())
    assert "3 arrays carry no checksum" in said and "clips/split, clips/ytid" in said
    assert "`audiotok verify --rewrite-unchecked`" in said

    rewritten = cli("verify", "--rewrite-unchecked")
    assert rewritten.exit_code == 0, rewritten.output
    assert "rewrote 3 arrays with a checksum on every chunk" in " ".join(rewritten.stdout.split())
    store = Store.open(store_path)
    assert store.unchecked_arrays() == []
    assert np.array_equal(store.splits(), before["clips/split"])
    assert list(store.ytids()) == list(before["clips/ytid"])
    assert np.array_equal(store.vocab(Pick("logmel-k16")).centroids, before["vocab/logmel-k16/centroids"])
    assert not list(store_path.glob("*/*.unchecked")) and not list(store_path.glob("*/*.checked"))
    assert cli("tokenize").exit_code == 0  # the vocabulary's tokens still match it

    _flip_one_bit(_chunk(store_path, "clips/split"))  # now caught
    assert cli("train", "--model", "baseline", "--epochs", "1").exit_code == 5


def test_a_rewrite_killed_between_its_renames_is_finished_by_the_next_writer(cli, tokenized):
    store_path = tokenized.store_path
    splits = _write_unchecked(store_path, "clips/split")
    clips = store_path / "clips"
    shutil.copytree(clips / "split", clips / "split.checked")  # the copy, as if written whole
    _write_unchecked(store_path, "clips/split.checked")
    (clips / "split").rename(clips / "split.unchecked")  # killed right after the first rename
    assert cli("split", "--val-ratio", "0.1").exit_code == 0  # a writer: finishes the swap first
    assert (clips / "split").exists() and not (clips / "split.unchecked").exists()
    assert np.array_equal(Store.open(store_path).splits(), splits)


def test_a_root_record_counting_more_clips_than_its_columns_hold_is_refused_and_set_back(cli, tokenized):
    root = tokenized.store_path / "zarr.json"
    metadata = json.loads(root.read_text())
    metadata["attributes"]["audiotok"]["n_clips"] = 500
    root.write_text(json.dumps(metadata))
    for command in (["info"], ["train", "--model", "baseline", "--epochs", "1"]):
        result = cli(*command)
        assert result.exit_code == 5
        assert "its record counts 500 clips, its clip columns hold 48 rows" in _one_line(result)
    found = cli("verify")
    assert found.exit_code == 5 and "root record (n_clips)" in found.stdout
    assert printed_repairs(found.stdout) == ["audiotok verify --repair"]
    run_printed(cli, "audiotok verify --repair")
    info = cli("info")
    assert info.exit_code == 0 and "48 clips" in info.stdout


def test_a_root_record_counting_fewer_clips_than_its_groups_hold_is_refused_and_set_back(cli, tokenized):
    root = tokenized.store_path / "zarr.json"
    metadata = json.loads(root.read_text())
    metadata["attributes"]["audiotok"]["n_clips"] = 28
    root.write_text(json.dumps(metadata))
    for command in (["info"], ["train", "--model", "baseline", "--epochs", "1"]):
        result = cli(*command)
        assert result.exit_code == 5
        assert (
            "is damaged: its record counts 28 clips, features 'logmel' holds 48 rows; set it back: "
            "`audiotok verify --repair`"
        ) in _one_line(result)
    run_printed(cli, "audiotok verify --repair")
    info = cli("info")
    assert info.exit_code == 0 and "48 clips" in info.stdout and "-20" not in info.stdout


def test_a_group_record_that_disagrees_with_its_arrays_is_named_with_the_command_that_remakes_it(
    cli, tokenized
):
    node = tokenized.store_path / "features" / "logmel" / "zarr.json"
    metadata = json.loads(node.read_text())
    metadata["attributes"]["audiotok"]["max_frames"] += 5
    node.write_text(json.dumps(metadata))
    found = cli("verify")
    assert found.exit_code == 5
    said = " ".join(found.stdout.split())
    assert "features/logmel" in said and "its record says frames of shape" in said
    assert printed_repairs(found.stdout) == ["audiotok featurize --name logmel --overwrite"]
    run_printed(cli, "audiotok featurize --name logmel --overwrite")
    assert cli("verify").exit_code == 0


def test_verify_reads_a_store_whose_lock_cannot_be_written_and_says_it_recorded_nothing(
    cli, tokenized, monkeypatch
):
    """As on a read-only mount or a snapshot (tests run as root, whom permissions do not stop)."""
    import errno

    from audiotok_cli import lock

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(lock.WriterLock, "_locked_file", read_only)
    _flip_one_bit(_chunk(tokenized.store_path, "tokens/logmel-k16/data"))
    found = cli("verify")
    assert found.exit_code == 5
    said = " ".join(found.stdout.split())
    assert "tokens/logmel-k16 shard 0" in said
    assert "the store is read-only: read without its writer lock, and this verify is not recorded" in said
    repair = cli("verify", "--repair")
    assert repair.exit_code == 12 and "Read-only file system" in _one_line(repair)


def _can_mount() -> bool:
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(shutil.which("unshare") is None or not _can_mount(), reason="no mount namespaces here")
def test_verify_scrubs_a_store_on_a_real_read_only_mount(tokenized, tmp_path):
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tokenized.store_path, snapshot / "audiotok.zarr")
    _flip_one_bit(_chunk(snapshot / "audiotok.zarr", "features/logmel/data"))
    verify = f"{sys.executable} -m audiotok_cli verify --store {snapshot / 'audiotok.zarr'}"
    script = f"mount --bind -o ro {snapshot} {snapshot} && {verify}"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert result.returncode == 5, result.stderr
    said = " ".join(result.stdout.split())
    assert "features/logmel shard 0" in said and "the store is read-only" in said
    assert not (snapshot / "audiotok.zarr.lock").exists()


def test_a_missing_tokens_input_names_a_tokenize_command_that_runs(cli, featurized):
    for transform in ("clip-mean", "deltas"):
        assert cli("vocab", "--k", "8", "--transform", transform).exit_code == 0
    result = cli("inspect", "--k", "8")
    assert result.exit_code == 4
    line = _one_line(result)
    assert (
        "`audiotok tokenize --vocab logmel-clip-mean-k8` or `audiotok tokenize --vocab logmel-deltas-k8`"
        in line
    )
    assert cli("tokenize", "--vocab", "logmel-deltas-k8").exit_code == 0
    assert cli("inspect", "--k", "8").exit_code == 0


def test_a_read_only_store_whose_lock_could_be_made_fails_in_one_line_not_twice(cli, tokenized, monkeypatch):
    """The lock beside a store may be writable while the store is not: only taking the lock falls
    back to a read-only verify; a write that fails inside the verify is its own one-line error."""
    import errno

    def read_only(self, verified):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path / "zarr.json"))

    monkeypatch.setattr(Store, "save_verify", read_only)
    result = cli("verify")
    assert result.exit_code == 12
    assert "Read-only file system" in _one_line(result) and "generator" not in result.stderr
