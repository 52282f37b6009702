"""Failures that owe one line, not a traceback: a full disk (a real tmpfs, a real ENOSPC), damaged run
files and stores, bugs; and a training kill at the worst moment."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from safetensors.torch import load_file, save_file

import audiotok_cli.training.loop as loop
from audiotok_cli.settings import ModelSettings, TrainSettings, VocabSettings
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import PENDING, Store
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import CHECKPOINT, RECORD, WEIGHTS


def _small_disk(mount: Path, size: str, *commands: str) -> subprocess.CompletedProcess:
    """Run shell `commands` in a private mount namespace where `mount` is a tmpfs of `size`."""
    mount.mkdir(parents=True, exist_ok=True)
    script = " ; ".join([f"mount -t tmpfs -o size={size} tmpfs {mount} || exit 99", *commands])
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no private tmpfs here (user namespaces disabled?): {done.stderr.strip()}")
    return done


def _audiotok(*args: str) -> str:
    return " ".join([sys.executable, "-m", "audiotok_cli", *args])


def test_disk_full_during_featurize_is_one_line_and_keeps_the_store(featurized, tmp_path):
    small = tmp_path / "small"
    store = small / "store.zarr"
    without_features = tmp_path / "store.zarr"
    shutil.copytree(  # clips only: the features are what will not fit
        featurized.store_path, without_features, ignore=lambda folder, names: ["logmel"] * ("logmel" in names)
    )
    check = (
        "import json, pathlib; from audiotok_cli.store import Store; "
        f's = Store.open(pathlib.Path("{store}")); '
        'print(json.dumps([s.n_clips, s.names("features"), int((s.features().all_lengths() < 0).sum())]))'
    )
    done = _small_disk(
        small,
        "256k",
        f"cp -r {without_features} {store}",
        _audiotok("featurize", "--store", str(store), "--quiet") + "; echo rc=$?",
        f"{sys.executable} -c '{check}'",
    )
    assert "rc=10" in done.stdout, done.stderr
    line = _one_error_line(done)
    assert line.startswith(f"error: disk full writing shard 0 of file://{store}/features/logmel")
    assert "free space and run the command again: finished work is kept" in line
    n_clips, names, pending = json.loads(done.stdout.splitlines()[-1])
    assert (n_clips, names, pending) == (48, ["logmel"], 48)  # every row kept; nothing marked done


def test_disk_full_during_expand_keeps_the_clips_already_written(small_mirrors, tmp_path):
    small = tmp_path / "small"
    store = tmp_path / "store.zarr"
    done = _small_disk(
        small,
        "3m",  # a few of the ~0.5 MB clips fit
        _audiotok(
            "expand",
            "--mirror-dir",
            str(small_mirrors["parquet"].mirror_dir),
            "--audio-dir",
            str(small),
            "--store",
            str(store),
            "--quiet",
        )
        + "; echo rc=$?",
    )
    assert "rc=10" in done.stdout, done.stderr
    assert _one_error_line(done).startswith(f"error: disk full writing {small}/bal_train/")
    kept = Store.open(store)
    assert 0 < kept.n_clips < 48  # the clips whose audio fitted are recorded
    assert kept.expanded_files("bal_train") == []  # the file is not marked done: a rerun finishes it


def test_disk_full_during_train_names_the_run_file(featurized, tmp_path):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)
    small = tmp_path / "runs"
    done = _small_disk(
        small,
        "96k",
        _audiotok(
            "train", "--store", str(featurized.store_path), "--runs-dir", str(small), "--epochs", "1", "-q"
        )
        + "; echo rc=$?",
    )
    assert "rc=10" in done.stdout, done.stderr
    assert _one_error_line(done).startswith(f"error: disk full writing {small}/lstm-logmel-k16/")


@pytest.fixture
def run_dir(featurized):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)
    model, settings = ModelSettings(kind="simple", embed_dim=8), TrainSettings(epochs=2, batch_size=16)
    return loop.train(RunRequest(featurized.resolved_paths, model, settings, seed=0)).run_dir


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b"not safetensors at all"), "model.safetensors is damaged"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "model.safetensors is damaged"),
        (lambda p: save_file({"other": torch.zeros(2)}, p), "model.safetensors does not fit the run's model"),
    ],
    ids=["garbage", "truncated", "wrong-keys"],
)
def test_damaged_weights_are_one_line_naming_the_file(cli, run_dir, damage, message):
    damage(run_dir / WEIGHTS)
    result = cli("eval")  # the digest in the run's record finds it first
    assert result.exit_code == 5
    line = _one_error_line(result)
    assert "model.safetensors is not the file training wrote" in line and "train the run again" in line
    _forget_digests(run_dir)  # a run from before digests: reading the file finds it
    result = cli("eval")
    assert result.exit_code == 5
    line = _one_error_line(result)
    assert message in line and "train the run again with --overwrite" in line


def _forget_digests(run_dir) -> None:
    from safetensors import safe_open

    with safe_open(run_dir / CHECKPOINT, "pt") as checkpoint:
        record = json.loads(checkpoint.metadata()["record"])
    record.pop("digests")
    save_file(load_file(run_dir / CHECKPOINT), run_dir / CHECKPOINT, metadata={"record": json.dumps(record)})


def test_a_damaged_checkpoint_refuses_the_resume_in_one_line(cli, run_dir):
    (run_dir / CHECKPOINT).write_bytes(b"\x00" * 64)
    result = cli("train", "--model", "simple", "--epochs", "2", "--batch-size", "16", "--embed-dim", "8")
    assert result.exit_code == 5
    assert "last.safetensors is damaged" in _one_error_line(result)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "run.json is damaged (not JSON)"),
        ('{"format": 3}', "run.json is damaged (model: Field required"),
    ],
)
def test_a_damaged_run_json_is_one_line(cli, run_dir, text, message):
    (run_dir / CHECKPOINT).unlink()  # with the checkpoint gone, run.json is the record
    (run_dir / RECORD).write_text(text)
    result = cli("eval")
    assert result.exit_code == 5 and message in _one_error_line(result)


def test_a_damaged_store_is_one_line(cli, tmp_path):
    garbage = tmp_path / "garbage.zarr"
    garbage.mkdir()
    (garbage / "zarr.json").write_text("{{{")
    result = cli("info", "--store", str(garbage))
    assert result.exit_code == 5
    assert f"{garbage} is not a readable audiotok store" in _one_error_line(result)
    array = tmp_path / "array.zarr"
    zarr.create_array(array, shape=(3,), dtype="f4")
    result = cli("featurize", "--store", str(array))
    assert result.exit_code == 5 and "is not a readable audiotok store" in _one_error_line(result)


def test_a_bug_is_one_line_with_exit_1_and_debug_shows_the_traceback(cli, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("audiotok_cli.stages.info.describe", broken)
    result = cli("info")
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "unexpected ZeroDivisionError: a bug" in line and "--debug" in line
    for args in (["--debug", "info"], ["info", "--debug"]):
        shown = cli(*args)
        assert shown.exit_code == 1 and "Traceback" in shown.stderr and "ZeroDivisionError" in shown.stderr


def test_a_kill_between_checkpoint_and_run_json_never_trains_an_epoch_twice(featurized, monkeypatch):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)
    model, settings = ModelSettings(kind="simple", embed_dim=8), TrainSettings(epochs=3, batch_size=16)

    def run(name: str):
        return loop.train(
            RunRequest(
                featurized.resolved_paths, model, settings.model_copy(update={"run_name": name}), seed=0
            )
        )

    whole = run("whole")
    real_write, writes = loop.write_record, []

    def killed_after_checkpoint(directory, record):
        writes.append(1)
        if len(writes) == 2:  # epoch 2: last.safetensors holds it, run.json is not written yet
            raise KeyboardInterrupt
        real_write(directory, record)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "write_record", killed_after_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            run("cut")
    assert [
        e["epoch"] for e in json.loads((whole.run_dir.parent / "cut" / RECORD).read_text())["history"]
    ] == [1]

    epochs_trained = []
    real_epoch = loop._Fit._train_epoch

    def counting(self, epoch, monitor):
        epochs_trained.append(epoch)
        return real_epoch(self, epoch, monitor)

    monkeypatch.setattr(loop._Fit, "_train_epoch", counting)
    resumed = run("cut")
    assert epochs_trained == [3]  # epoch 2 was committed with the checkpoint: not trained again
    assert [e["val_mAP"] for e in resumed.history] == pytest.approx([e["val_mAP"] for e in whole.history])
    ours, theirs = load_file(resumed.run_dir / CHECKPOINT), load_file(whole.run_dir / CHECKPOINT)
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in theirs)
    assert json.loads((resumed.run_dir / RECORD).read_text())["complete"] is True
    logged = [json.loads(line) for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in logged if line["kind"] == "epoch"] == [1, 2, 3]
    assert Store.open(featurized.store_path).features().all_lengths().min() != PENDING


def test_a_group_whose_metadata_file_is_gone_is_named_with_its_repair(cli, featurized):
    (featurized.store_path / "features" / "logmel" / "lengths" / "zarr.json").unlink()
    info = cli("info")  # still describes the store, and says what is damaged
    assert info.exit_code == 0 and "bal_train" in info.stdout
    said = " ".join(info.stdout.split())
    assert "damaged features 'logmel': features/logmel/lengths in" in said
    assert "`audiotok featurize --name logmel --overwrite`" in said
    refused = cli("vocab", "--k", "8")
    assert refused.exit_code == 5 and "zarr.json is missing" in _one_error_line(refused)
    assert cli("featurize", "--name", "logmel", "--overwrite").exit_code == 0  # the repair it names
    assert cli("vocab", "--k", "8").exit_code == 0


def test_paths_of_the_wrong_kind_and_a_non_utf8_env_are_one_line(cli, featurized, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a store")
    for command in (["info"], ["split"], ["import", str(tmp_path)]):
        result = cli(*command, "--store", str(a_file))
        assert result.exit_code == 3, command
        assert f"{a_file} is a file, not an audiotok store" in _one_error_line(result)
    assert a_file.read_text() == "not a store"  # never replaced
    lock = Path(f"{featurized.store_path}.lock")
    lock.mkdir()
    result = cli("split")
    assert (
        result.exit_code == 3
        and f"{lock} is a folder where audiotok keeps the writer lock" in _one_error_line(result)
    )
    lock.rmdir()
    Path(".env").write_bytes(b"AUDIOTOK_SEED=\xff\xfe\n")
    result = cli("config")
    assert (
        result.exit_code == 3
        and ".env is not UTF-8 text (byte 0xff at 14); save it as UTF-8" in _one_error_line(result)
    )


def test_a_read_only_file_is_one_line_naming_it_and_eval_still_shows_its_scores(cli, featurized, monkeypatch):
    """Tests run as root, whom permissions do not stop: the writes fail as on a read-only mount."""
    import errno

    import audiotok_cli.results.evaluate as evaluate

    assert cli("train", "--model", "baseline", "--epochs", "1").exit_code == 0

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(evaluate, "write_json", read_only)
    result = cli("eval", "--run", "baseline-logmel")
    assert result.exit_code == 12
    assert "test (official eval)" in result.stdout and "mAP" in result.stdout  # the scores, shown
    line = result.stderr.strip().splitlines()[-1]  # below the scoring bars
    assert "the scores above were not saved: cannot write" in line
    assert "eval.json (Read-only file system)" in line
    monkeypatch.setattr("audiotok_cli.stages.split.split", lambda *args: read_only(featurized.store_path))
    result = cli("split")
    assert result.exit_code == 12
    assert f"cannot write {featurized.store_path} (Read-only file system)" in _one_error_line(result)


def test_a_run_file_changed_since_training_is_refused_naming_it(cli, run_dir, tmp_path):
    """classes.csv with its names shifted against the index column read as is: predict printed the
    wrong class names with exit 0. The run's record holds each file's digest."""
    record = json.loads((run_dir / RECORD).read_text())
    assert set(record["digests"]) == {"model.safetensors", "preprocessing.safetensors", "classes.csv"}
    assert cli("verify", "--runs").exit_code == 0

    classes = run_dir / "classes.csv"
    lines = classes.read_text().splitlines()
    names = [line.split(",", 2)[2] for line in lines[1:]]
    rotated = names[1:] + names[:1]
    shifted = [
        ",".join([*line.split(",", 2)[:2], name]) for line, name in zip(lines[1:], rotated, strict=True)
    ]
    classes.write_text("\n".join([lines[0], *shifted]) + "\n")
    audio = tmp_path / "tone.wav"
    import soundfile as sf

    sf.write(audio, np.sin(np.linspace(0, 2000, 32000)).astype(np.float32), 16000)
    for command in (["predict", run_dir.name, str(audio)], ["eval", "--run", run_dir.name]):
        result = cli(*command)
        assert result.exit_code == 5, command
        line = _one_error_line(result)
        assert f"{classes} is not the file training wrote" in line and "train the run again" in line
    found = cli("verify", "--runs")
    assert found.exit_code == 5
    assert f"run file {classes}" in " ".join(found.stdout.split())


def test_a_file_where_a_folder_belongs_and_a_utf16_env_are_one_line_each(cli):
    Path("afile").write_text("not a folder")
    for command in (
        ["--data-dir", "afile", "demo-data"],
        ["demo-data", "--mirror-dir", "afile"],
        ["runs", "--runs-dir", "afile"],
    ):
        result = cli(*command)
        assert result.exit_code == 3, command
        assert "afile is a file, not a folder; pass a folder" in _one_error_line(result)
    assert Path("afile").read_text() == "not a folder"
    Path(".env").write_bytes("AUDIOTOK_SEED=3\n".encode("utf-16"))
    result = cli("config")
    assert result.exit_code == 3
    assert "(byte 0xff at 0: a UTF-16 byte-order mark, as Windows editors save); save it as UTF-8" in (
        _one_error_line(result)
    )


def test_a_tokens_group_whose_lengths_metadata_is_gone_names_a_tokenize_that_runs(cli, tokenized):
    (tokenized.store_path / "tokens" / "logmel-k16" / "lengths" / "zarr.json").unlink()
    refused = cli("export-tokens", "out.parquet")
    assert refused.exit_code == 5
    line = _one_error_line(refused)
    assert (
        "tokens/logmel-k16/lengths" in line and "`audiotok tokenize --vocab logmel-k16 --overwrite`" in line
    )
    assert cli("tokenize", "--vocab", "logmel-k16", "--overwrite").exit_code == 0  # as the line says
    assert cli("export-tokens", "out.parquet").exit_code == 0
