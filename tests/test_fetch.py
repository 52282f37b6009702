"""`fetch` and `prune` against a local server speaking the hub's HTTP API (real HTTP, real client)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from audiotok_cli.audioset.demo import write_demo_mirror
from audiotok_cli.audioset.mirror import LEGACY_REVISION
from audiotok_cli.settings import load_settings
from hub_server import FakeHub


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Small demo mirrors in both layouts, several files per source."""
    roots = {}
    for layout in ("parquet", "tar"):
        root = tmp_path_factory.mktemp(f"served-{layout}")
        write_demo_mirror(root, layout=layout, clips=24, seconds=2.0, seed=3, clips_per_file=4)
        roots[layout] = root
    return roots


@pytest.fixture
def hub(served, monkeypatch, request):
    layout = getattr(request, "param", "parquet")
    with FakeHub(served[layout], page_size=4) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _mirror():
    return load_settings().mirror_dir


@pytest.mark.parametrize("hub", ["parquet", "tar"], indirect=True)
def test_full_fetch_equals_the_served_files_byte_for_byte(cli, hub):
    revision = "main" if (hub.root / "data" / "bal_train").is_dir() else LEGACY_REVISION
    result = cli("fetch", "--source", "bal_train", "--source", "eval", "--revision", revision)
    assert result.exit_code == 0, result.output
    served = hub.files()
    assert f"fetched {len(served)} files" in result.stdout
    for path in served:
        assert (_mirror() / path).read_bytes() == (hub.root / path).read_bytes(), path
    assert sum(1 for _, p, _ in hub.requests if "/tree/" in p) > 1  # the listing was paginated
    assert any(p.startswith("/cdn/") for _, p, _ in hub.requests)  # data came through the redirect

    before = len(hub.requests)
    again = cli("fetch", "--source", "bal_train", "--source", "eval", "--revision", revision)
    assert (
        again.exit_code == 0 and f"fetched 0 files (0.000 GB), skipped {len(served)} complete" in again.stdout
    )
    assert all(p.startswith("/api/") for _, p, _ in hub.requests[before:])  # only the listing, no downloads


def test_shards_take_only_those_files(cli, hub):
    result = cli("fetch", "--source", "bal_train", "--shards", "1-2")
    assert result.exit_code == 0, result.output
    data = sorted(p.relative_to(_mirror()).as_posix() for p in (_mirror() / "data").rglob("*") if p.is_file())
    assert data == ["data/bal_train/01.parquet", "data/bal_train/02.parquet"]
    assert (_mirror() / "ontology.json").exists()


def test_dropped_connection_then_rerun_resumes_without_refetching_finished_files(cli, hub, monkeypatch):
    monkeypatch.setattr(
        "huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 64 * 1024
    )  # small files, real chunks
    target = "data/bal_train/02.parquet"
    size = (hub.root / target).stat().st_size
    hub.drop[target] = (size // 2, 6)  # more cuts than the client's own retries
    first = cli("fetch", "--source", "bal_train", "--workers", "2")
    assert first.exit_code == 8
    assert f"downloading {target} failed" in first.stderr and "run fetch again to resume" in first.stderr
    assert not (_mirror() / target).exists()  # nothing that looks complete but is not
    finished = {p: len(hub.downloads(p)) for p in hub.files() if p != target and (_mirror() / p).exists()}

    second = cli("fetch", "--source", "bal_train")
    assert second.exit_code == 0, second.output
    assert (_mirror() / target).read_bytes() == (hub.root / target).read_bytes()
    resumed_from = int(hub.downloads(target)[-1].removeprefix("bytes=").split("-")[0])
    assert size // 2 - 64 * 1024 <= resumed_from <= size // 2  # whole chunks kept from the first run
    for path, count in finished.items():
        assert len(hub.downloads(path)) == count, f"{path} was downloaded again"


def test_a_corrupted_byte_is_caught_by_sha256_and_retried_once(cli, hub):
    target = "data/eval/00.parquet"
    hub.corrupt[target] = 1
    result = cli("fetch", "--source", "eval")
    assert result.exit_code == 0, result.output
    assert (_mirror() / target).read_bytes() == (hub.root / target).read_bytes()
    assert len(hub.downloads(target)) == 2


def test_a_file_corrupt_twice_is_deleted_and_reported(cli, hub):
    target = "data/eval/01.parquet"
    hub.corrupt[target] = 2
    result = cli("fetch", "--source", "eval")
    assert result.exit_code == 5
    assert f"failed sha256 verification twice and were deleted: {target}" in result.stderr
    assert not (_mirror() / target).exists()
    assert (_mirror() / "data/eval/00.parquet").exists()


def test_refuses_what_does_not_fit(cli, hub, monkeypatch):
    capped = cli("fetch", "--source", "bal_train", "--max-gb", "0.000001")
    assert capped.exit_code == 3 and "over --max-gb 1e-06" in capped.stderr
    monkeypatch.setattr("audiotok_cli.audioset.fetch.free_bytes", lambda folder: 1000)
    full = cli("fetch", "--source", "bal_train")
    assert full.exit_code == 3 and "GB free; free space or fetch fewer --shards" in full.stderr
    assert not (_mirror() / "data").exists()


def test_dry_run_lists_sizes_and_downloads_nothing(cli, hub):
    result = cli("fetch", "--source", "eval", "--dry-run")
    assert result.exit_code == 0
    assert "would fetch 3 files" in result.stdout and "GB free" in result.stdout  # 2 data + ontology.json
    assert not any(p.startswith("/cdn/") for _, p, _ in hub.requests)
    plan = json.loads(cli("fetch", "--source", "eval", "--dry-run", "--json").stdout)["plan"]
    assert sorted(entry["path"] for entry in plan["todo"])[-1] == "ontology.json"
    assert plan["missing_bytes"] == sum(entry["size"] for entry in plan["todo"])


def test_unreachable_hub_is_one_line_with_exit_8(cli, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = cli("fetch", "--source", "eval")
    assert result.exit_code == 8
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        len(lines) == 1
        and "cannot reach the hub at http://127.0.0.1:9" in lines[0]
        and "HF_ENDPOINT" in lines[0]
    )


def test_prune_deletes_only_files_whose_clips_are_all_featurized(cli, hub):
    assert cli("fetch", "--source", "bal_train", "--shards", "0-2").exit_code == 0
    assert cli("expand", "--source", "bal_train").exit_code == 0
    assert cli("featurize").exit_code == 0
    assert cli("fetch", "--source", "bal_train", "--shards", "3").exit_code == 0  # not expanded yet
    result = cli("prune", "--source", "bal_train")
    assert result.exit_code == 0, result.output
    assert "pruned 3 mirror files" in result.stdout and "kept 1" in result.stdout
    remaining = sorted(p.name for p in (_mirror() / "data" / "bal_train").iterdir())
    assert remaining == ["03.parquet"]
    refetch = cli("fetch", "--source", "bal_train", "--shards", "0", "--dry-run")
    assert "would fetch 1 file" in refetch.stdout  # pruned files are no longer counted as complete


def test_ctrl_c_mid_download_leaves_no_complete_looking_file_and_a_rerun_finishes(cli, hub, tmp_path):
    hub.held = threading.Event()  # every body stops after its first chunk: the download cannot finish
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    small_chunks = "import huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 2**16; "
    command = [sys.executable, "-c", small_chunks + "from audiotok_cli.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "fetch", "--source", "eval"], env=env, stderr=subprocess.PIPE, text=True
    )
    partials = _mirror() / ".audiotok-partial"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in partials.rglob("*.part") if p.is_file()):
        assert time.monotonic() < deadline and process.poll() is None, "no download started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    seen = []
    while "stopping every download" not in "".join(seen):  # the child has taken in the Ctrl-C ...
        line = process.stderr.readline()
        assert line, f"the child ended without stopping its downloads: {''.join(seen)}"
        seen.append(line)
    hub.held.set()  # ... so the next chunk it reads makes it stop
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr
    for path in hub.files():
        local = _mirror() / path
        assert not local.exists() or local.read_bytes() == (hub.root / path).read_bytes(), path
    assert any(p.stat().st_size > 0 for p in partials.rglob("*.part"))

    hub.held = None
    result = cli("fetch", "--source", "eval")
    assert result.exit_code == 0, result.output
    for path in [p for p in hub.files() if p.startswith("data/eval/") or p == "ontology.json"]:
        assert (_mirror() / path).read_bytes() == (hub.root / path).read_bytes(), path
    assert not any(partials.rglob("*.part"))


def test_a_hub_that_stops_answering_is_asked_three_times_then_refused_in_one_line(cli, hub):
    hub.stall = 5.0
    started = time.monotonic()
    result = cli("fetch", "--source", "eval", "--timeout", "1")
    assert result.exit_code == 8
    assert time.monotonic() - started < 15  # never waits forever
    assert [p for m, p, _ in hub.requests if "/api/" in p].count(hub.requests[0][1]) == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach the hub" in errors[0] and "Timeout" in errors[0]
    assert "asking again (2)" in result.stderr


@pytest.mark.parametrize("damage", ["zeroed bytes", "an empty file"])
def test_prune_keeps_files_whose_clips_features_do_not_read_back(cli, hub, damage):
    """A mirror file can be the only source of its clips: deleted while their frames are damaged,
    nothing could make them again. An empty shard file read as zeros, and prune deleted the mirror
    file and the clips' audio."""
    assert cli("fetch", "--source", "bal_train", "--shards", "0-1").exit_code == 0
    assert cli("expand", "--source", "bal_train").exit_code == 0
    assert cli("featurize").exit_code == 0
    settings = load_settings()
    shard = settings.store_path / "features" / "logmel" / "data" / "c" / "0" / "0" / "0"
    damaged = bytearray(shard.read_bytes())
    damaged[300:340] = bytes(40)
    shard.write_bytes(bytes(damaged) if damage == "zeroed bytes" else b"")
    audio = sorted(path for path in settings.audio_dir.rglob("*") if path.is_file())
    result = cli("prune", "--source", "bal_train", "--with-audio")
    assert result.exit_code == 5
    assert "pruned 0 mirror files" in result.stdout
    assert "its clips' features do not read back" in " ".join(result.stdout.split())
    assert "`audiotok verify --repair`, then `audiotok featurize`, then prune again" in result.stderr
    kept = sorted(p.name for p in (_mirror() / "data" / "bal_train").iterdir())
    assert kept == ["00.parquet", "01.parquet"]
    assert audio and audio == sorted(path for path in settings.audio_dir.rglob("*") if path.is_file())
