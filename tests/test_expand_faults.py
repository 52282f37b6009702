"""Faults a multi-day expand meets, injected for real into real mirror files: each is recorded,
the rest of the work goes on, nothing already written is lost, and the exit code says so."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audio_helpers import flac_bytes
from audiotok_cli.audio.logmel import audio_path
from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.audioset.demo import write_demo_mirror
from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store

SPEECH, MUSIC = "/m/09x0r", "/m/04rlf"


def _tone(seed: int, seconds: float = 1.0) -> bytes:
    rng = np.random.default_rng(seed)
    return flac_bytes((0.1 * rng.standard_normal(int(48000 * seconds))).astype(np.float32), 48000)


def _parquet(path: Path, rows: list[tuple[str, bytes | None, list[str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = [None if payload is None else {"bytes": payload, "path": f"{y}.flac"} for y, payload, _ in rows]
    table = pa.table(
        {
            "video_id": [ytid for ytid, _, _ in rows],
            "audio": pa.array(audio, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "labels": pa.array([labels for _, _, labels in rows], type=pa.list_(pa.string())),
        }
    )
    pq.write_table(table, path)


def _store() -> Store:
    return Store.open(load_settings().store_path)


def test_rows_without_audio_bytes_are_recorded_and_skipped(cli):
    mirror = load_settings().mirror_dir
    null_struct = ("nullstruct1", None, [SPEECH])
    _parquet(mirror / "data" / "bal_train" / "00.parquet", [("good0000001", _tone(1), [SPEECH]), null_struct])
    table = pq.read_table(mirror / "data" / "bal_train" / "00.parquet").to_pylist()
    table.append({"video_id": "nullbytes01", "audio": {"bytes": None, "path": "x.flac"}, "labels": [MUSIC]})
    pq.write_table(pa.Table.from_pylist(table), mirror / "data" / "bal_train" / "00.parquet")
    _parquet(mirror / "data" / "bal_train" / "01.parquet", [("good0000002", _tone(2), [MUSIC])])

    result = cli("expand")
    assert result.exit_code == 0, result.output
    assert "2 clips added" in result.stdout and "2 entries without usable audio skipped" in result.stdout
    store = _store()
    assert list(store.ytids()) == ["good0000001", "good0000002"]  # the later file was reached
    skipped = store.clips_record.skipped
    assert skipped == {
        "nullstruct1": "row 1 of 00.parquet has no audio bytes",
        "nullbytes01": "row 2 of 00.parquet has no audio bytes",
    }
    assert "skipped nullbytes01: row 2 of 00.parquet has no audio bytes" in " ".join(result.stderr.split())


def test_one_unreadable_file_is_recorded_and_every_other_file_and_source_goes_on(cli):
    mirror = load_settings().mirror_dir
    write_demo_mirror(mirror, clips=32, seconds=1.0, seed=3, clips_per_file=8)
    broken = mirror / "data" / "bal_train" / "01.parquet"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated mid-download

    result = cli("expand")
    assert result.exit_code == 5
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "1 mirror files could not be read and were left for the next run" in errors[0]
    assert "01.parquet is truncated or corrupt" in errors[0]
    store = _store()
    by_source = {source: int((store.sources() == i).sum()) for i, source in enumerate(SOURCES)}
    assert by_source == {"bal_train": 16, "unbal_train": 0, "eval": 8}  # 3 good bal_train files, eval
    assert store.expanded_files("bal_train") == ["00.parquet", "02.parquet"]
    assert list(store.clips_record.bad_files) == ["bal_train/01.parquet"]
    info = cli("info")
    assert info.exit_code == 0 and "damaged mirror file" in info.stdout and "01.parquet" in info.stdout

    write_demo_mirror(mirror, clips=32, seconds=1.0, seed=3, clips_per_file=8, overwrite=True)
    again = cli("expand")  # the file fetched again: only it is read, and the record is cleared
    assert again.exit_code == 0 and "1 file expanded, 2 skipped" in again.stdout
    assert _store().n_clips == 32 and _store().clips_record.bad_files == {}


def test_a_segment_csv_with_an_unterminated_quote_names_file_and_line(cli, small_mirrors, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(small_mirrors["tar"].mirror_dir, mirror)
    csv_path = mirror / "data" / "balanced_train_segments.csv"
    lines = csv_path.read_text().splitlines()
    lines[5] = lines[5].rstrip('"')  # the quote around the labels never closes
    csv_path.write_text("\n".join(lines) + "\n")
    result = cli("expand", "--mirror-dir", str(mirror), "--source", "bal_train")
    assert result.exit_code == 5
    assert f"{csv_path}:6: malformed row" in result.stderr and "fetch the file again" in result.stderr


def test_clips_without_labels_are_kept_out_of_every_split_unless_asked(cli):
    mirror = load_settings().mirror_dir
    rows = [(f"lab{i:08d}", _tone(i), [SPEECH]) for i in range(10)] + [("nolabels001", _tone(99), [])]
    _parquet(mirror / "data" / "bal_train" / "00.parquet", rows)
    _parquet(mirror / "data" / "eval" / "00.parquet", [("evalnolabel", _tone(98), [])])
    expanded = cli("expand")
    assert "1 unlabeled" in expanded.stdout
    split = cli("split", "--json")
    assert json.loads(split.stdout)["unlabeled_left_out"] == 2
    store = _store()
    codes = dict(zip(store.ytids(), store.splits(), strict=True))
    assert codes["nolabels001"] == 0 and codes["evalnolabel"] == 0  # unassigned: neither train nor test
    assert all(codes[f"lab{i:08d}"] in (1, 2) for i in range(10))
    kept = cli("split", "--keep-unlabeled")
    assert kept.exit_code == 0 and "0 clips without labels left out" in kept.stdout
    codes = dict(zip(_store().ytids(), _store().splits(), strict=True))
    assert codes["nolabels001"] in (1, 2) and codes["evalnolabel"] == 3


def test_a_clip_in_two_sources_keeps_its_first_copy_and_records_the_second(cli):
    mirror = load_settings().mirror_dir
    _parquet(mirror / "data" / "bal_train" / "00.parquet", [("twice000001", _tone(1), [SPEECH])])
    _parquet(
        mirror / "data" / "eval" / "00.parquet",
        [("twice000001", _tone(2), [MUSIC]), ("evalonly001", _tone(3), [MUSIC])],
    )
    result = cli("expand")
    assert result.exit_code == 0
    store = _store()
    assert list(store.ytids()) == ["twice000001", "evalonly001"]
    assert SOURCES[store.sources()[0]] == "bal_train"  # never also a test clip: that would leak
    assert "also in bal_train, whose copy is kept" in store.clips_record.skipped["twice000001"]
    settings = load_settings()
    assert not audio_path(settings.audio_dir, "eval", "twice000001").exists()  # no orphan audio


def test_tar_link_members_are_counted_and_never_followed(cli):
    mirror = load_settings().mirror_dir
    data = mirror / "data"
    data.mkdir(parents=True)
    (data / "balanced_train_segments.csv").write_text(
        "# a\n# b\n# c\n"
        + "".join(f'{y}, 0.000, 10.000, "{SPEECH}"\n' for y in ("real0000001", "link0000001"))
    )
    with tarfile.open(data / "bal_train00.tar", "w") as archive:
        payload = _tone(1)
        member = tarfile.TarInfo("audio/bal_train/real0000001.flac")
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
        link = tarfile.TarInfo("audio/bal_train/link0000001.flac")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    result = cli("expand")
    assert result.exit_code == 0 and "1 clip added" in result.stdout
    assert "1 entries without usable audio skipped" in result.stdout
    reason = _store().clips_record.skipped["link0000001"]
    assert reason == "audio/bal_train/link0000001.flac in bal_train00.tar is a symlink, not audio"


def test_expand_repair_extracts_failed_clips_again_and_featurize_then_succeeds(cli, small_mirrors):
    mirror = str(small_mirrors["parquet"].mirror_dir)
    assert cli("expand", "--mirror-dir", mirror).exit_code == 0
    settings = load_settings()
    store = _store()
    victim = store.ytids()[3]
    path = audio_path(settings.audio_dir, SOURCES[store.sources()[3]], victim)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # a torn copy on disk

    failed = cli("featurize")
    assert failed.exit_code == 5 and "1 clips could not be featurized" in failed.stderr
    assert "expand --repair" in failed.stderr
    repaired = cli("expand", "--mirror-dir", mirror, "--repair")
    assert repaired.exit_code == 0 and "extracted the audio of 1 failed clips again" in repaired.stdout
    assert path.read_bytes() == good
    again = cli("featurize")
    assert again.exit_code == 0 and "1 clip featurized, 47 already done" in again.stdout
    assert _store().features().record.failures == {}
