"""`predict` on generated WAV, FLAC and MP3 files, with only the run folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiotok_cli.audioset.classes import class_index
from audiotok_cli.audioset.demo import DEMO_CLASSES, synthesize_clip


def test_predict_names_the_generators_class_for_every_format_from_a_copied_run(cli, featurized, tmp_path):
    assert cli("split", "--val-ratio", "0.25").exit_code == 0
    trained = cli("train", "--model", "baseline", "--epochs", "15", "--batch-size", "8", "--lr", "3e-3")
    assert trained.exit_code == 0, trained.output
    report = json.loads(cli("eval", "--run", "baseline-logmel", "--json").stdout)
    best = report["splits"]["test"]["best_classes"][0]  # a class this small model has learned
    mid = class_index().mids[class_index().names.index(best)]
    assert mid in DEMO_CLASSES

    rng = np.random.default_rng(5)
    clip = synthesize_clip(rng, (mid,), 44100, 25.0, channels=2)  # longer than one window
    files = []
    for suffix, subtype in (("wav", "PCM_16"), ("flac", "PCM_24"), ("mp3", None)):
        path = tmp_path / f"sound.{suffix}"
        sf.write(path, clip, 44100, subtype=subtype)
        files.append(str(path))
    (tmp_path / "broken.wav").write_bytes(b"RIFF, but no audio")
    files += [str(tmp_path / "broken.wav"), str(tmp_path / "missing.ogg")]

    run = tmp_path / "elsewhere" / "shared-run"
    shutil.copytree(featurized.runs_dir / "baseline-logmel", run)
    shutil.rmtree(featurized.store_path)
    result = cli("predict", str(run), *files, "--top", "3", "--json")
    assert result.exit_code == 4  # two files could not be scored (one is not there); the three others were
    predictions = json.loads(result.stdout)
    assert predictions["pooling"] == "max over 10 s windows"  # the run's clip_seconds
    for scored in predictions["files"]:
        assert scored["top"][0][0] == best, scored
        assert scored["windows"] == 3 and scored["seconds"] == 25.0  # two whole windows + the last 5 s
        assert len(scored["top"]) == 3 and scored["top"][0][1] >= scored["top"][1][1]
    assert sorted(predictions["failed"]) == sorted(files[3:])
    assert "Format not recognised" in predictions["failed"][files[3]]
    assert "does not exist" in predictions["failed"][files[4]]
    shown = cli("predict", str(run), files[0])
    assert shown.exit_code == 0 and f"(25 s, 3 windows): {best} " in shown.stdout
    sf.write(tmp_path / "short.wav", clip[: 44100 * 2], 44100)
    short = cli("predict", str(run), str(tmp_path / "short.wav"))
    assert short.exit_code == 0 and "(2 s, 1 window): " in short.stdout


def test_an_unknown_run_is_refused_with_the_runs_there(cli, tokenized, tmp_path):
    assert cli("train", "--model", "simple", "--epochs", "1").exit_code == 0
    for command in (["predict", "lstm", str(tmp_path / "x.wav")], ["export", "lstm", str(tmp_path / "hf")]):
        result = cli(*command)
        assert result.exit_code == 4
        assert "no run 'lstm' in" in result.stderr and "(it holds: simple-logmel-k16)" in result.stderr
        assert "--run" not in result.stderr


def test_debug_logging_is_audiotoks_own_not_every_librarys(cli, tokenized, tmp_path):
    """--log-level DEBUG on one predict used to print hundreds of numba and numcodecs lines."""
    import os
    import subprocess
    import sys

    assert cli("train", "--model", "simple", "--epochs", "1").exit_code == 0
    file = sorted((tokenized.audio_dir / "eval").rglob("*.flac"))[0]
    command = [
        sys.executable,
        "-m",
        "audiotok_cli",
        "--log-level",
        "DEBUG",
        "predict",
        "simple-logmel-k16",
        str(file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "debug:" not in done.stderr  # numba alone printed hundreds of "debug: stack []" lines
    assert "(4 s, 1 window)" in done.stdout


def test_a_set_of_runs_predicts_the_mean_of_its_runs_probabilities(cli, tokenized, tmp_path):
    assert (
        cli("train", "--model", "simple", "--epochs", "2", "--seeds", "2", "--run-name", "set").exit_code == 0
    )
    sound = tmp_path / "sound.wav"
    sf.write(
        sound, synthesize_clip(np.random.default_rng(3), (next(iter(DEMO_CLASSES)),), 22050, 4.0, 1), 22050
    )
    each = [
        json.loads(cli("predict", f"set-seed{seed}", str(sound), "--top", "527", "--json").stdout)
        for seed in (0, 1)
    ]
    together = cli("predict", "set", str(sound), "--top", "527", "--json")
    assert together.exit_code == 0, together.output
    result = json.loads(together.stdout)
    assert result["run"] == "set (2 runs)" and result["pooling"].endswith(
        "then the mean over the set's 2 runs"
    )
    scores = [dict(run["files"][0]["top"]) for run in each]
    for name, probability in result["files"][0]["top"]:
        assert probability == pytest.approx((scores[0][name] + scores[1][name]) / 2, abs=1e-6)
