"""`predict` on generated WAV, FLAC and MP3 files, with only the run folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiotok_cli.audioset.demo import DEMO_CLASSES, synthesize_clip
from audiotok_cli.class_lists import audioset_classes


def test_predict_names_the_generators_class_for_every_format_from_a_copied_run(cli, featurized, tmp_path):
    assert cli("split", "--val-ratio", "0.25").exit_code == 0
    trained = cli("train", "--model", "baseline", "--epochs", "15", "--batch-size", "8", "--lr", "3e-3")
    assert trained.exit_code == 0, trained.output
    report = json.loads(cli("eval", "--run", "baseline-logmel", "--json").stdout)
    best = report["splits"]["test"]["best_classes"][0]  # a class this small model has learned
    mid = audioset_classes().mids[audioset_classes().names.index(best)]
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


def _peak_mb_predicting(run, path) -> float:
    """Peak resident memory (MB) of a process that predicts `path` with `run` (VmHWM: getrusage's
    maxrss keeps the forking parent's peak across exec)."""
    import subprocess
    import sys

    script = (
        "import re, sys\n"
        "from audiotok_cli.cli.app import app\n"
        "try:\n"
        "    app(['predict', sys.argv[1], sys.argv[2], '--json'])\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) / 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(run), str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def test_a_long_file_streams_through_predict_in_flat_memory_with_the_in_memory_scores(
    cli, featurized, tmp_path
):
    """A file is read, resampled (soxr's stream: the very samples of resampling it whole) and scored a
    block at a time: the scores are those of the whole file decoded and cut in memory, and a
    10-minute file peaks within 1.1x the memory of a 1-minute one (it held the whole file before)."""
    import torch

    from audiotok_cli.audio.logmel import LogMel, decode
    from audiotok_cli.training.predict import _score
    from audiotok_cli.training.runs import load_run

    assert cli("train", "--model", "baseline", "--epochs", "1").exit_code == 0
    run_dir = featurized.runs_dir / "baseline-logmel"
    rng = np.random.default_rng(3)
    clip = synthesize_clip(rng, (next(iter(DEMO_CLASSES)),), 44100, 10.0, channels=2)
    minute, ten = tmp_path / "minute.wav", tmp_path / "ten.wav"
    sf.write(minute, np.tile(clip, (6, 1))[: 44100 * 60 - 777], 44100)  # odd length: a short last window
    sf.write(ten, np.tile(clip, (60, 1)), 44100)

    predicted = json.loads(cli("predict", str(run_dir), str(minute), "--json", "--top", "5").stdout)
    run = load_run(run_dir)
    run.model.eval()
    audio = run.record.inputs.audio
    samples = decode(minute, audio.sample_rate)  # the whole file at once, as predict read it before
    window = LogMel(audio).max_samples
    starts = [s for s in range(0, len(samples), window) if s == 0 or len(samples) - s >= audio.sample_rate]
    with torch.no_grad():
        scores = np.max([_score(run, LogMel(audio)(samples[s : s + window])) for s in starts], axis=0)
    (scored,) = predicted["files"]
    assert scored["windows"] == len(starts) == 6 and scored["seconds"] == round(
        len(samples) / audio.sample_rate, 2
    )
    for name, score in scored["top"]:
        assert score == pytest.approx(float(scores[run.classes.names.index(name)]), abs=1e-6), name

    small, large = _peak_mb_predicting(run_dir, minute), _peak_mb_predicting(run_dir, ten)
    assert large <= 1.1 * small, (small, large)
