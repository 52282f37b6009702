"""`audiotok verify`: every shard, clip column and vocabulary read, what is damaged named with its
repair; `--repair` marks exactly the damaged shards for their stage to redo, bit for bit; `--mirror`
checks mirror files against the hashes fetch verified. Real stores, real damage on disk."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from audiotok_cli.audioset.manifest import load_manifest, save_manifest
from audiotok_cli.store import Store
from store_helpers import printed_repairs, run_printed


def _flip(path, offset: int = 200, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _arrays(store_path) -> dict[str, np.ndarray]:
    store = Store.open(store_path, mode="r")
    features, tokens = store.features("logmel"), store.padded("tokens", "logmel-k16")
    return {
        "frames": features.data[:],
        "frame_lengths": features.all_lengths(),
        "tokens": tokens.data[:],
        "token_lengths": tokens.all_lengths(),
    }


@pytest.fixture
def shards_env(small_shards, monkeypatch):
    """The CLI with the store's own shard size (8 clips), so its stages redo shards of that size."""
    monkeypatch.setenv("AUDIOTOK_FEATURES__CLIPS_PER_SHARD", "8")
    monkeypatch.setenv("AUDIOTOK_FEATURES__CLIPS_PER_CHUNK", "4")
    monkeypatch.setenv("AUDIOTOK_PATHS__MIRROR_DIR", str(small_shards.mirror_dir))
    return small_shards


def test_verify_names_each_damaged_shard_and_repair_makes_the_store_bitwise_whole(cli, shards_env):
    store_path = shards_env.store_path
    pristine = _arrays(store_path)
    before = cli("info")
    assert "never verified: `audiotok verify`" in before.stdout
    clean = cli("verify")
    assert clean.exit_code == 0 and "nothing damaged (read 12 shards" in clean.stdout

    features, tokens = store_path / "features" / "logmel" / "data" / "c", store_path / "tokens" / "logmel-k16"
    _flip(features / "1" / "0" / "0")  # a flipped run of bytes inside a shard
    (features / "4" / "0" / "0").unlink()  # a shard file gone while its clips are marked done
    token_shard = tokens / "data" / "c" / "2" / "0"
    token_shard.write_bytes(token_shard.read_bytes()[:40])  # a shard cut short

    found = cli("verify")
    assert found.exit_code == 5
    said = " ".join(found.stdout.split())
    assert "3 damaged" in said
    for where in ("features/logmel shard 1 (rows 8-15)", "features/logmel shard 4 (rows 32-39)"):
        assert where in said
    assert "tokens/logmel-k16 shard 2 (rows 16-23)" in said
    assert "its data file is missing" in said and "checksum" in said
    fixes = printed_repairs(found.stdout)
    assert fixes == [
        "audiotok verify --repair; audiotok featurize --name logmel",
        "audiotok verify --repair; audiotok tokenize --vocab logmel-k16",
    ]
    assert "3 damaged: first features/logmel shard 1" in found.stderr

    run_printed(cli, fixes[0])  # marks all three pending, then redoes exactly the two feature shards
    info = " ".join(cli("info").stdout.split())
    assert "3 damaged; 3 marked for their stage to redo" in info
    lengths = Store.open(store_path).padded("tokens", "logmel-k16").all_lengths()
    assert (lengths[16:24] < 0).all() and (lengths[:16] >= 0).all()
    run_printed(cli, fixes[1])
    healed = _arrays(store_path)
    for name, array in pristine.items():
        assert np.array_equal(healed[name], array), name  # bit for bit as before the damage
    assert cli("verify").exit_code == 0
    assert "last verify" in cli("info").stdout and "nothing damaged" in cli("info").stdout


def test_verify_names_a_damaged_clip_column_and_vocabulary(cli, shards_env, tmp_path):
    store_path = shards_env.store_path
    centroids_before = Store.open(store_path).vocab().centroids
    shutil.copytree(store_path / "clips" / "labels", tmp_path / "labels")
    _flip(store_path / "clips" / "labels" / "c" / "0" / "0", offset=20, count=8)
    centroids = store_path / "vocab" / "logmel-k16" / "centroids" / "c" / "0" / "0"
    centroids.write_bytes(centroids.read_bytes()[:10])
    found = cli("verify", "--repair")
    assert found.exit_code == 5, found.output  # nothing a stage can redo piecewise: still damaged
    said = " ".join(found.stdout.split())
    assert "clips/labels" in said and "import or expand the audio again into a new --store" in said
    assert "vocab/logmel-k16" in said
    assert printed_repairs(found.stdout) == ["audiotok --seed 0 vocab --features logmel --k 16 --overwrite"]

    shutil.rmtree(store_path / "clips" / "labels")  # as if imported again: the clip table whole
    shutil.copytree(tmp_path / "labels", store_path / "clips" / "labels")
    run_printed(cli, printed_repairs(found.stdout)[0])
    assert np.array_equal(Store.open(store_path).vocab().centroids, centroids_before)  # the same, bit for bit
    assert cli("verify").exit_code == 0  # its tokens match it again


def test_verify_mirror_checks_fetched_files_and_repair_makes_fetch_download_them_again(
    cli, shards_env, tmp_path
):
    mirror = tmp_path / "mirror"
    shutil.copytree(shards_env.mirror_dir, mirror)
    files = sorted(path for path in (mirror / "data").rglob("*") if path.is_file())
    unrecorded = cli("verify", "--mirror", "--mirror-dir", str(mirror))  # no file fetch verified
    assert unrecorded.exit_code == 0 and "hashed 0 mirror files" in " ".join(unrecorded.stdout.split())
    assert "holds no file `fetch` verified: nothing to hash" in " ".join(unrecorded.stderr.split())
    manifest = load_manifest(mirror)
    for path in files:  # as fetch records a verified LFS file
        stat = path.stat()
        entry = {"hash": hashlib.sha256(path.read_bytes()).hexdigest(), "size": stat.st_size}
        manifest["files"][str(path.relative_to(mirror))] = entry | {"mtime_ns": stat.st_mtime_ns}
    save_manifest(mirror, manifest)
    assert cli("verify", "--mirror", "--mirror-dir", str(mirror)).exit_code == 0

    damaged = files[0]
    _flip(damaged, offset=1000, count=4)  # same size, other content: only a hash finds it
    relative = str(damaged.relative_to(mirror))
    found = cli("verify", "--mirror", "--mirror-dir", str(mirror))
    assert found.exit_code == 5
    said = " ".join(found.stdout.split())
    assert f"mirror {relative}" in said and "no longer matches the hash fetch verified" in said
    fetch = f"audiotok fetch --mirror-dir {mirror} --source {damaged.parent.name}"
    assert printed_repairs(found.stdout) == [
        f"audiotok verify --mirror --mirror-dir {mirror} --repair; {fetch}"
    ]
    assert relative in json.loads((mirror / ".audiotok-fetch.json").read_text())["files"]
    assert cli("verify", "--mirror", "--repair", "--mirror-dir", str(mirror)).exit_code == 0
    assert relative not in load_manifest(mirror)["files"]  # fetch hashes it again, never trusts it
