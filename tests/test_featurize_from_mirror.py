"""featurize straight from the fetched mirror files: `expand --no-audio` records clips only, and
frames read from Parquet row groups or tar members equal those from expanded files, to the bit;
a clip whose expanded file is gone falls back to its mirror file."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audiotok_cli.audio.logmel import audio_path
from audiotok_cli.audioset import mirror as mirror_module
from audiotok_cli.audioset.mirror import iter_audio
from audiotok_cli.errors import DataError
from audiotok_cli.settings import load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.store import PENDING, Store


def _settings(mirror, name: str):
    return load_settings({"paths": {"mirror_dir": mirror.mirror_dir}, "features": {"name": name}})


def _featurize(settings, **options):
    return featurize(
        settings.store_path, settings.audio_dir, settings.audio, settings.features,
        mirror_dir=settings.mirror_dir, **options,
    )  # fmt: skip


@pytest.mark.parametrize("layout", ["parquet", "tar"])
def test_featurize_from_the_mirror_equals_featurize_from_expanded_files(small_mirrors, layout):
    expanded = _settings(small_mirrors[layout], "from-files")
    expand(expanded.resolved_paths)
    assert _featurize(expanded).clips_done == 48

    settings = _settings(small_mirrors[layout], "from-mirror")
    result = _featurize(settings, from_mirror=True)
    assert result.clips_done == 48 and not result.failures
    store = Store.open(settings.store_path)
    ours, theirs = store.features("from-mirror"), store.features("from-files")
    assert np.array_equal(ours.all_lengths(), theirs.all_lengths()) and (ours.all_lengths() > 0).all()
    assert np.array_equal(ours.data[:], theirs.data[:])


def test_expand_without_audio_records_clips_and_featurize_reads_the_mirror(small_mirrors, cli):
    mirror = small_mirrors["parquet"].mirror_dir
    result = cli("expand", "--no-audio", "--mirror-dir", str(mirror))
    assert result.exit_code == 0, result.output
    settings = load_settings({"paths": {"mirror_dir": mirror}})
    assert not settings.audio_dir.exists() or not any(settings.audio_dir.rglob("*.flac"))
    store = Store.open(settings.store_path)
    assert store.n_clips == 48 and set(store.mirror_files(slice(0, 48))) == {
        "bal_train/" + p.name for p in (mirror / "data" / "bal_train").glob("*.parquet")
    } | {"eval/" + p.name for p in (mirror / "data" / "eval").glob("*.parquet")}

    featurized = cli("featurize", "--mirror-dir", str(mirror))  # no expanded files: the mirror is read
    assert featurized.exit_code == 0, featurized.output
    assert (Store.open(settings.store_path).features().all_lengths() > 0).all()


def test_a_clip_without_its_expanded_file_is_read_from_the_mirror(small_mirrors, tmp_path):
    mirror = small_mirrors["parquet"]
    settings = _settings(mirror, "logmel")
    expand(settings.resolved_paths)
    store = Store.open(settings.store_path)
    gone = [audio_path(settings.audio_dir, "bal_train", ytid) for ytid in store.ytids(slice(0, 5))]
    for path in gone:
        path.unlink()
    assert _featurize(settings).clips_done == 48  # the 5 came from the mirror

    copy = tmp_path / "no-mirror"  # with neither, the clip fails alone and says how to fix it
    shutil.copytree(settings.data_dir, copy, ignore=shutil.ignore_patterns("mirror"))
    alone = load_settings({"data_dir": copy, "paths": {"mirror_dir": copy / "absent"}})
    rerun = featurize(
        alone.store_path, alone.audio_dir, alone.audio,
        alone.features.model_copy(update={"name": "again"}), mirror_dir=alone.mirror_dir,
    )  # fmt: skip
    assert rerun.clips_done == 43 and len(rerun.failures) == 5
    assert all("is missing" in why for why in rerun.failures.values())
    lengths = Store.open(alone.store_path).features("again").all_lengths()
    assert (lengths[:5] == PENDING).all()


def test_mirror_reads_yield_exactly_the_wanted_clips_a_batch_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(mirror_module, "PARQUET_BATCH_ROWS", 3)  # batches inside row groups of 5
    ytids = [f"clip{index:07d}" for index in range(40)]
    table = pa.table(
        {
            "video_id": ytids,
            "audio": [{"bytes": ytid.encode() * 3, "path": f"{ytid}.flac"} for ytid in ytids],
            "labels": [["/m/09x0r"]] * 40,
        }
    )
    path = tmp_path / "data" / "bal_train" / "00.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, row_group_size=5)
    wanted = {ytids[i] for i in (0, 4, 5, 13, 14, 27, 39)} | {"notthere000"}
    found = dict(iter_audio(path, "parquet", wanted))
    assert found == {ytid: ytid.encode() * 3 for ytid in wanted - {"notthere000"}}

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"00\.parquet is truncated or corrupt"):
        dict(iter_audio(path, "parquet", wanted))


def test_clips_of_a_pruned_mirror_file_fail_alone_and_name_it(small_mirrors, tmp_path):
    copy = tmp_path / "mirror"
    shutil.copytree(small_mirrors["parquet"].mirror_dir, copy)
    settings = load_settings({"data_dir": tmp_path, "paths": {"mirror_dir": copy}})
    expand(settings.resolved_paths, audio=False)
    pruned = sorted((copy / "data" / "bal_train").glob("*.parquet"))[0]
    lost = set(Store.open(settings.store_path).ytids(slice(0, 48))) & set(
        pq.read_table(pruned, columns=["video_id"]).column(0).to_pylist()
    )
    pruned.unlink()
    result = _featurize(settings)
    assert set(result.failures) == lost and result.clips_done == 48 - len(lost) > 0
    assert all(f"mirror file bal_train/{pruned.name} is gone" in why for why in result.failures.values())


def test_a_clip_listed_twice_in_a_mirror_file_is_read_from_its_first_copy(small_mirrors, tmp_path):
    copy = tmp_path / "mirror"
    shutil.copytree(small_mirrors["parquet"].mirror_dir, copy)
    path = sorted((copy / "data" / "bal_train").glob("*.parquet"))[0]
    table = pq.read_table(path)
    again = table.slice(0, 1).set_column(1, "audio", pa.array([{"bytes": b"junk", "path": "x.flac"}]))
    pq.write_table(pa.concat_tables([table, again.cast(table.schema)]), path)  # the first clip, twice
    settings = load_settings({"data_dir": tmp_path, "paths": {"mirror_dir": copy}})
    expand(settings.resolved_paths, audio=False)
    result = _featurize(settings)
    assert result.clips_done == 48 and not result.failures  # the junk second copy was never decoded
