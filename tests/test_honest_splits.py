"""Honest splits: identical files (exact bytes, or with `--dedupe near` the same samples in another
container) land in one group and never straddle a split; single-label collections are split
stratified by class (scikit-learn's `StratifiedGroupKFold`), and a split missing a class is named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import soundfile as sf

from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store
from collections_kit import folders

CLASSES = tuple(f"class{index}" for index in range(10))


def _collection(tmp_path):
    """Ten classes of 12 takes, and copies: two byte-identical, one the same samples as FLAC."""
    root = folders(tmp_path / "animals", classes=CLASSES, per_class=12)
    for take in range(4):
        shutil.copy(root / "class0" / f"take{take}.wav", root / "class0" / f"copy{take}.wav")
    shutil.copy(root / "class3" / "take1.wav", root / "class3" / "again.wav")
    samples, rate = sf.read(root / "class5" / "take2.wav")
    sf.write(root / "class5" / "take2-as.flac", samples, rate)
    return root


def _groups_of(store: Store) -> dict[str, str]:
    return dict(zip(store.ytids().tolist(), store.groups().tolist(), strict=True))


def test_identical_files_share_a_group_and_never_straddle_a_split(cli, tmp_path):
    root = _collection(tmp_path)
    imported = cli("import", str(root))
    assert imported.exit_code == 0, imported.output
    assert "10 clips of the store have an identical copy (exact: 5 sets); each set is one group" in (
        imported.stdout
    )
    store = Store.open(load_settings({}).store_path)
    groups = _groups_of(store)
    for take in range(4):
        assert groups[f"animals/class0/take{take}.wav"] == groups[f"animals/class0/copy{take}.wav"] != ""
    assert groups["animals/class3/again.wav"] == groups["animals/class3/take1.wav"] != ""
    assert groups["animals/class5/take2-as.flac"] == ""  # other bytes: not an exact copy
    assert len({groups[f"animals/class0/take{take}.wav"] for take in range(4)}) == 4  # one group a set

    pairs = [(f"class0/take{t}.wav", f"class0/copy{t}.wav") for t in range(4)]
    pairs.append(("class3/take1.wav", "class3/again.wav"))
    for seed in range(6):  # whatever the draw, a copy goes where its original goes
        assert cli("split", "--seed", str(seed), "--val-ratio", "0.2").exit_code == 0
        store = Store.open(load_settings({}).store_path)
        split_of = dict(zip(store.ytids().tolist(), store.splits().tolist(), strict=True))
        for first, second in pairs:
            assert split_of[f"animals/{first}"] == split_of[f"animals/{second}"]

    near = cli("import", str(root), "--dedupe", "near")  # the FLAC holds the same samples: a copy too
    assert (
        near.exit_code == 0 and "12 clips of the store have an identical copy (near: 6 sets)" in near.stdout
    )
    groups = _groups_of(Store.open(load_settings({}).store_path))
    assert groups["animals/class5/take2-as.flac"] == groups["animals/class5/take2.wav"] != ""


def test_copies_with_groups_of_their_own_join_them(cli, tmp_path):
    root = tmp_path / "speakers"
    folders(root, classes=("yes", "no"), per_class=3)
    shutil.copy(root / "yes" / "take0.wav", root / "yes" / "take0-again.wav")
    rows = ["path,labels,group"] + [
        f"{label}/take{take}.wav,{label},{label}-speaker{take}"
        for label in ("yes", "no")
        for take in range(3)
    ]
    rows.append("yes/take0-again.wav,yes,other-speaker")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    assert cli("import", str(root), "--manifest", str(root / "manifest.csv")).exit_code == 0
    groups = _groups_of(Store.open(load_settings({}).store_path))
    assert groups["speakers/yes/take0.wav"] == groups["speakers/yes/take0-again.wav"]
    assert groups["speakers/yes/take0.wav"] == "other-speaker+yes-speaker0"
    assert groups["speakers/no/take1.wav"] == "no-speaker1"  # no copy: untouched


def test_single_label_splits_are_stratified_and_a_missing_class_is_named(cli, tmp_path):
    assert cli("import", str(folders(tmp_path / "ten", classes=CLASSES, per_class=12))).exit_code == 0
    result = cli("split", "--json")
    assert result.exit_code == 0
    split = json.loads(result.stdout)
    assert split["stratified"] and split["classes"] == {"train": 10, "val": 10, "test": 10}
    assert split["missing"] == {}
    store = Store.open(load_settings({}).store_path)
    labels, codes = store.labels().argmax(axis=1), store.splits()
    for code in (1, 2):  # val, test: every class, in proportion (12 a class: 1 or 2 of each)
        counts = np.bincount(labels[codes == code], minlength=10)
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1
    shown = cli("split")
    assert "stratified by class" in shown.stdout and "(10 classes)" in shown.stdout

    hashed = cli("split", "--no-stratify", "--val-ratio", "0.05", "--seed", "1")
    assert hashed.exit_code == 0
    assert "warning: val holds no clip of " in hashed.stderr and "of train's classes (class" in hashed.stderr
    assert "its mAP averages over the others" in hashed.stderr


def test_a_stratified_drawn_test_keeps_its_ratio_in_the_split_record(cli, tmp_path):
    assert cli("import", str(folders(tmp_path / "ten", classes=CLASSES, per_class=12))).exit_code == 0
    assert cli("split", "--test-ratio", "0.3").exit_code == 0
    record = Store.open(load_settings({}).store_path).split
    assert record.stratify and record.test_ratio == 0.3  # what `train --cv` puts back is this split


def test_a_class_held_only_in_test_is_named_in_one_warning(cli, tmp_path):
    root = tmp_path / "calls"
    rows = []
    for name, takes in (("crow", range(8)), ("gull", range(8)), ("owl", range(2))):
        for take in takes:
            path = folders(tmp_path / "made", classes=(name,), per_class=take + 1) / name / f"take{take}.wav"
            where = f"{'test' if name == 'owl' or take >= 6 else 'train'}/{name}-{take}.wav"
            (root / where).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / where)
            rows.append((where, name))
    manifest = root / "calls.csv"
    manifest.write_text("path,labels,source\n" + "".join(f"{p},{n},{p.split('/')[0]}\n" for p, n in rows))
    assert cli("import", str(root), "--manifest", str(manifest)).exit_code == 0
    result = cli("split")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "train holds no clip of classes that val or test hold (1: owl): no model can learn them" in said
