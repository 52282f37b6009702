"""The formats the field's audio sets come in: a Hugging Face `audiofolder` (metadata.csv or .jsonl
with `file_name` and a label column, at the root or in split folders) and a `datasets` export with
an `audio` column (Parquet as the hub stores them, `save_to_disk`'s Arrow), written by the real
`datasets` library, imported and run to `eval`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from datasets import Audio, ClassLabel, Dataset

from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store, split_code
from collections_kit import RATE, tone, write

CLASSES = ("bell", "kalimba", "ocarina")


def _store() -> Store:
    return Store.open(load_settings().store_path)


def _wav(label: int, take: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(label, group=take), RATE, format="WAV")
    return buffer.getvalue()


def _to_eval(cli, *split: str) -> dict:
    for command in (["split", *split], ["featurize", "--clip-seconds", "1"]):
        assert cli(*command).exit_code == 0, command
    trained = cli("train", "--model", "baseline", "--epochs", "2")
    assert trained.exit_code == 0, trained.output
    evaluated = cli("eval", "--model", "baseline", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    return json.loads(evaluated.stdout)


def test_an_audiofolder_with_split_folders_keeps_its_split_and_runs_to_eval(cli, tmp_path):
    root = tmp_path / "instruments"
    for split, takes in (("train", range(6)), ("test", range(6, 8))):
        rows = []
        for label, name in enumerate(CLASSES):
            for take in takes:
                write(root / split / name / f"take{take}.wav", tone(label, group=take))
                rows.append({"file_name": f"{name}/take{take}.wav", "instrument": name})
        with (root / split / "metadata.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["file_name", "instrument"])
            writer.writeheader()
            writer.writerows(rows)
    refused = cli("import", str(root))
    assert refused.exit_code == 5
    assert "has no label column 'label' (it has instrument); pass --label-column" in refused.stderr
    imported = cli("import", str(root), "--label-column", "instrument")
    assert imported.exit_code == 0, imported.output
    assert "24 clips added" in imported.stdout and "(audiofolder," in imported.stdout
    store = _store()
    assert list(store.classes.mids) == list(CLASSES)
    assert {"train", "test"} <= set(store.source_names)
    report = _to_eval(cli, "--test-source", "test", "--val-ratio", "0.2")
    assert report["splits"]["test"]["n_clips"] == 6  # the published test split, whole
    store = _store()
    test_clips = store.ytids()[store.splits() == split_code("test")]
    assert all(clip.startswith("instruments/test/") for clip in test_clips)


def test_a_datasets_parquet_with_audio_bytes_and_an_arrow_save_import_with_their_class_names(cli, tmp_path):
    """Written by the real `datasets` library (audio kept undecoded: its decoder needs FFmpeg)."""
    audio = [
        {"bytes": _wav(label, take), "path": f"{CLASSES[label]}-{take}.wav"}
        for label in range(3)
        for take in range(6)
    ]
    labels = [label for label in range(3) for _ in range(6)]
    dataset = Dataset.from_dict({"audio": audio, "label": labels})
    dataset = dataset.cast_column("label", ClassLabel(names=list(CLASSES))).cast_column(
        "audio", Audio(decode=False)
    )
    exported = tmp_path / "hub" / "data"
    exported.mkdir(parents=True)
    dataset.to_parquet(exported / "train-00000-of-00001.parquet")
    imported = cli("import", str(tmp_path / "hub"), "--name", "hub")
    assert imported.exit_code == 0, imported.output
    assert "18 clips added" in imported.stdout
    store = _store()
    assert list(store.classes.mids) == list(CLASSES)  # the ClassLabel's names, not its integers
    first = store.row_of["hub/train/train-00000-of-00001-000000.wav"]
    assert store.classes.mids[int(np.flatnonzero(store.labels()[first])[0])] == "bell"
    written = load_settings().audio_dir / "hub" / "train" / "train-00000-of-00001-000000.wav"
    assert written.read_bytes() == audio[0]["bytes"]  # the bytes as exported
    again = cli("import", str(tmp_path / "hub"), "--name", "hub")
    assert again.exit_code == 0 and "0 clips added, 18 already in the store" in again.stdout
    report = _to_eval(cli, "--val-ratio", "0.2", "--test-ratio", "0.3")
    assert 0.0 <= report["splits"]["test"]["accuracy"] <= 1.0

    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    arrow = cli("import", str(saved), "--name", "saved", "--store", str(tmp_path / "other.zarr"))
    assert arrow.exit_code == 0, arrow.output
    assert "18 clips added" in arrow.stdout


def test_a_dataset_dict_saved_to_disk_keeps_each_split_as_a_source(cli, tmp_path):
    """`save_to_disk` names every split's file `data-00000-of-00001.arrow` in a folder of its own:
    each row is imported once, under its split's source, whatever order its labels come in."""
    from datasets import DatasetDict

    def split(takes: range, order: list[int]) -> Dataset:
        audio = [
            {"bytes": _wav(label, take), "path": f"{CLASSES[label]}-{take}.wav"}
            for label in order
            for take in takes
        ]
        labels = [label for label in order for _ in takes]
        data = Dataset.from_dict({"audio": audio, "label": labels})
        return data.cast_column("label", ClassLabel(names=list(CLASSES))).cast_column(
            "audio", Audio(decode=False)
        )

    saved = tmp_path / "saved"
    DatasetDict({"train": split(range(6), [0, 1, 2]), "test": split(range(6, 8), [2, 0, 1])}).save_to_disk(
        str(saved)
    )
    imported = cli("import", str(saved), "--name", "dict")
    assert imported.exit_code == 0, imported.output
    assert "24 clips added" in imported.stdout
    store = _store()
    sources = dict(zip(*np.unique(store.sources(), return_counts=True), strict=True))
    assert {store.source_names[code]: int(count) for code, count in sources.items()} == {
        "train": 18,
        "test": 6,
    }
    test_clips = [
        clip
        for clip, code in zip(store.ytids(), store.sources(), strict=True)
        if store.source_names[code] == "test"
    ]
    first = store.row_of[sorted(test_clips)[0]]
    assert store.classes.mids[int(np.flatnonzero(store.labels()[first])[0])] == "ocarina"  # test's own rows


def _parquet(path, audio: list[dict], labels: list[int], names=CLASSES) -> None:
    data = Dataset.from_dict({"audio": audio, "label": labels})
    data = data.cast_column("label", ClassLabel(names=list(names))).cast_column("audio", Audio(decode=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_parquet(path)


def test_an_export_s_faults_are_one_line_naming_the_users_rows(cli, tmp_path):
    """The written-out files are audiotok's; what a line names is the user's own file, row and split."""
    no_audio = tmp_path / "no-audio" / "data" / "train-00000-of-00001.parquet"
    no_audio.parent.mkdir(parents=True)
    Dataset.from_dict({"sound": ["a"], "label": [0]}).to_parquet(no_audio)
    refused = cli("import", str(tmp_path / "no-audio"), "--name", "a")
    assert refused.exit_code == 5 and "has no audio column (it has sound, label)" in refused.stderr
    assert "--label-column" not in refused.stderr

    outside = tmp_path / "outside" / "data" / "test-00000-of-00001.parquet"
    audio = [{"bytes": _wav(0, take), "path": f"bell-{take}.wav"} for take in range(2)]
    _parquet(outside, audio, [0, 1])
    table = pq.read_table(outside)  # a label index past the ClassLabel's names, as a bad edit leaves it
    labels = table.column("label").to_pylist()
    labels[1] = 7
    pq.write_table(table.set_column(1, "label", pa.array(labels, pa.int64())), outside)
    bad = cli("import", str(tmp_path / "outside"), "--name", "b")
    assert bad.exit_code == 5
    assert (
        "test-00000-of-00001.parquet row 1 (split test, bell-1.wav): label 7 is outside its ClassLabel's 3"
        in (" ".join(bad.stderr.split()))
    )


def test_a_reexport_with_new_audio_of_the_same_size_is_imported_as_changed(cli, tmp_path):
    exported = tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"
    audio = [{"bytes": _wav(label, 0), "path": f"{name}.wav"} for label, name in enumerate(CLASSES)]
    _parquet(exported, audio, [0, 1, 2])
    assert cli("import", str(tmp_path / "hub"), "--name", "hub").exit_code == 0
    audio[1] = {"bytes": _wav(1, 5), "path": "kalimba.wav"}  # other samples, the very same byte size
    assert len(audio[1]["bytes"]) == len(_wav(1, 0))
    _parquet(exported, audio, [0, 1, 2])
    again = cli("import", str(tmp_path / "hub"), "--name", "hub", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["files_changed"] == ["train/train-00000-of-00001-000001.wav"]


def test_an_audiofolder_file_in_no_metadata_row_is_named(cli, tmp_path):
    root = tmp_path / "folder"
    for take in range(3):
        write(root / "train" / f"take{take}.wav", tone(0, group=take))
    (root / "train" / "metadata.csv").write_text("file_name,label\ntake0.wav,bell\ntake1.wav,bell\n")
    imported = cli("import", str(root))
    assert imported.exit_code == 0 and "2 clips added" in imported.stdout
    assert "1 audio files of" in imported.stderr and "are named by no metadata row (train/take2.wav)" in (
        " ".join(imported.stderr.split())
    )
