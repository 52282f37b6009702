from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest

from audiotok_cli.audio.logmel import audio_path
from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.audioset.mirror import iter_clips, read_segments
from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.errors import DataError
from audiotok_cli.settings import load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.store import Store


def test_segment_csv_with_comments_spaces_and_quoted_labels(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "eval_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=2, num_segs=2, num_unique_labels=3, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_,/m/0bt9lr"\n'
        '-0SdAVK79lg, 30.000, 40.000, "/m/0155w"\n'
    )
    segments = read_segments(tmp_path, "eval")
    assert segments == {
        "--4gqARaEJE": ("/m/068hy", "/m/07q6cd_", "/m/0bt9lr"),
        "-0SdAVK79lg": ("/m/0155w",),
    }


@pytest.mark.parametrize("layout", ["parquet", "tar"])
def test_expand_writes_every_clip_and_its_labels(small_mirrors, layout, tmp_path):
    demo = small_mirrors[layout]
    settings = load_settings({"paths": {"mirror_dir": demo.mirror_dir}})
    results = expand(settings.resolved_paths, ["bal_train", "eval"]).sources
    assert [r.clips_added for r in results] == [
        len(demo.labels["bal_train"]),
        len(demo.labels["eval"]),
    ]
    store = Store.open(settings.store_path)
    index = audioset_classes()
    for row, ytid in enumerate(store.ytids()):
        source = SOURCES[store.sources()[row]]
        expected, _ = index.multi_hot(list(demo.labels[source][ytid]))
        assert np.array_equal(store.labels(slice(row, row + 1))[0], expected)
        assert audio_path(settings.audio_dir, source, ytid).stat().st_size > 1000
    assert store.n_clips == demo.n_clips


def test_expand_rerun_skips_finished_files_and_keeps_rows(small_mirrors):
    settings = load_settings({"paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir}})
    expand(settings.resolved_paths, ["bal_train"])
    before = Store.open(settings.store_path).ytids()
    again = expand(settings.resolved_paths, ["bal_train"]).sources[0]
    assert again.files_done == 0 and again.files_skipped >= 1 and again.clips_added == 0
    assert list(Store.open(settings.store_path).ytids()) == list(before)


def test_truncated_tar_names_the_file_and_keeps_clips_already_written(small_mirrors, tmp_path, cli):
    mirror = tmp_path / "mirror"
    shutil.copytree(small_mirrors["tar"].mirror_dir, mirror)
    shard = mirror / "data" / "bal_train00.tar"
    with tarfile.open(shard) as archive:
        members = archive.getmembers()
    cut = members[5].offset_data + members[5].size // 2  # half-way through the sixth clip
    shard.write_bytes(shard.read_bytes()[:cut])
    result = cli("expand", "--source", "bal_train", "--mirror-dir", str(mirror))
    assert result.exit_code == 5
    assert "bal_train00.tar is truncated or corrupt" in result.stderr
    assert "audiotok fetch" in result.stderr
    store = Store.open(load_settings().store_path)
    assert store.n_clips == 5  # the five whole clips before the cut were kept
    assert "bal_train00.tar" not in store.expanded_files("bal_train")


def test_a_youtube_id_that_could_escape_the_audio_dir_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "00.parquet"
    pq.write_table(
        pa.table(
            {
                "video_id": ["../../etc/x"],
                "audio": [{"bytes": b"fLaC", "path": "x.flac"}],
                "labels": [["/m/09x0r"]],
            }
        ),
        path,
    )
    with pytest.raises(DataError, match=r"invalid YouTube ID '\.\./\.\./etc/x'"):
        list(iter_clips(path, "bal_train", "parquet", {}))
