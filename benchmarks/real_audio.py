"""Every model on a real labelled collection, through the command line a user types: `import` ->
`split` -> `featurize` -> `vocab` -> `tokenize` -> `train` + `eval` per model -> `runs`.

The figures that matter come from real recordings scored on a test split that holds out what a
model must generalise over (speakers, recordings, pitch), never from the synthetic demo. Each
command's wall time is printed, then the `runs` table.

Usage:
  python benchmarks/real_audio.py ROOT [--manifest FILE.csv] [--split "--test-fold 1"] [--work DIR]
                                  [--clip-seconds 5] [--k 64] [--epochs 12] [--models simple,lstm,...]
  python benchmarks/real_audio.py --philharmonia AUDIO_DIR [--every 3] ...
      Philharmonia orchestral samples (skratchdot/philharmonia-samples `audio/`): a manifest is
      written with each note's instrument as its label and its octave as its group; with
      --split "--test-group octave4", no octave-4 note is trained on (val: other whole octaves).
  python benchmarks/real_audio.py --fsdd RECORDINGS_DIR --split "--test-group theo,yweweler" ...
      The free spoken digit dataset (Jakobovski/free-spoken-digit-dataset `recordings/`,
      `{digit}_{speaker}_{take}.wav`): the digit is the label, the speaker the group and a fold,
      so --test-group holds out unseen speakers, val is drawn by speaker, and --cv leaves one
      speaker out per fold.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> `audiotok train` options; the CNN sized to train in minutes on 2 cores, as in `make demo`
MODELS = {
    "simple": ["--model", "simple"],
    "lstm": ["--model", "lstm"],
    "bert": ["--model", "bert", "--hidden-size", "64", "--num-heads", "2"],
    "baseline": ["--model", "baseline"],
    "cnn": ["--model", "cnn", "--cnn-channels", "16,32,64", "--lr", "3e-3"],
    "bert-frames": ["--model", "bert", "--input", "frames", "--hidden-size", "64", "--num-heads", "2"],
}  # fmt: skip
# orchestral instruments with a few hundred notes each (banjo, guitar, mandolin, percussion: too few)
PHILHARMONIA = ("bass clarinet", "bassoon", "cello", "clarinet", "contrabassoon", "cor anglais",
                "double bass", "flute", "french horn", "oboe", "saxophone", "trombone")  # fmt: skip
NOTE = re.compile(r"^[a-z-]+_[A-G]s?(?P<octave>\d)_")


def philharmonia_manifest(audio_dir: Path, every: int, path: Path) -> Path:
    """Instrument as label, octave as group, every `every`-th note of each instrument (by name)."""
    rows = []
    for instrument in PHILHARMONIA:
        notes = sorted((audio_dir / instrument).glob("*.mp3"))
        for note in notes[::every]:
            match = NOTE.match(note.name)
            if match:
                rows.append((f"{instrument}/{note.name}", instrument, f"octave{match['octave']}"))
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "labels", "group"), *rows])
    return path


def fsdd_manifest(recordings: Path, path: Path) -> Path:
    """Digit as label, speaker as group, and each speaker a fold of its own (leave-one-speaker-out
    cross-validation with --cv)."""
    files = sorted(recordings.glob("*.wav"))
    speakers = sorted({wav.name.split("_")[1] for wav in files})
    rows = [
        (wav.name, f"digit{wav.name.split('_')[0]}", speaker, speakers.index(speaker) + 1)
        for wav in files
        for speaker in [wav.name.split("_")[1]]
    ]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "labels", "group", "fold"), *rows])
    return path


def audiotok(env: dict[str, str], *args: str) -> float:
    """Run one command as a user would; stop the benchmark if it fails. Returns its seconds."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "audiotok_cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"  {seconds:7.1f} s  audiotok {' '.join(args)}" + (f"\n             {last}" if last else ""))
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}): {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, nargs="?", help="The collection's root folder.")
    parser.add_argument("--philharmonia", type=Path, help="Philharmonia's audio/ folder (writes a manifest).")
    parser.add_argument(
        "--fsdd", type=Path, help="The spoken digits' recordings/ folder (writes a manifest)."
    )
    parser.add_argument(
        "--every", type=int, default=3, help="Philharmonia: every N-th note of each instrument."
    )
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--name", help="Collection name (default: the folder's).")
    parser.add_argument("--split", default="", help='Options of `audiotok split`, e.g. "--test-fold 1".')
    parser.add_argument("--work", type=Path, help="Data directory (default: a temporary one).")
    parser.add_argument("--clip-seconds", default="5")
    parser.add_argument(
        "--featurize", default="", help='More options of `audiotok featurize`, e.g. "--n-mels 40".'
    )
    parser.add_argument(
        "--train", default="", help='More options of every `audiotok train`, e.g. "--lr 3e-4".'
    )
    parser.add_argument("--k", default="64")
    parser.add_argument("--epochs", default="12")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cv", action="store_true", help="Cross-validate each model over the folds.")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="audiotok-real-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AUDIOTOK_DATA_DIR": str(work)}
    root, manifest = args.root, args.manifest
    if args.philharmonia:
        root, manifest = (
            args.philharmonia,
            philharmonia_manifest(args.philharmonia, args.every, work / "notes.csv"),
        )
    if args.fsdd:
        root, manifest = args.fsdd, fsdd_manifest(args.fsdd, work / "digits.csv")
    if root is None:
        parser.error("give ROOT, --philharmonia or --fsdd")
    print(f"data directory: {work}")
    name = ["--name", args.name] if args.name else []
    audiotok(env, "import", str(root), *name, *(["--manifest", str(manifest)] if manifest else []))
    audiotok(env, "split", *args.split.split())
    audiotok(env, "featurize", "--clip-seconds", args.clip_seconds, *args.featurize.split())
    audiotok(env, "vocab", "--k", args.k)
    audiotok(env, "tokenize", "--k", args.k)
    for model in args.models.split(","):
        options = [*MODELS[model], "--run-name", model, "--epochs", args.epochs, *args.train.split()]
        tokens = "--input" not in options and model not in ("baseline", "cnn")
        audiotok(env, "train", *options, *(["--k", args.k] if tokens else []), *(["--cv"] if args.cv else []))
        if not args.cv:
            audiotok(env, "eval", "--run", model)
    print(
        subprocess.run(
            [sys.executable, "-m", "audiotok_cli", "runs"], env=env, capture_output=True, text=True
        ).stdout
    )


if __name__ == "__main__":
    main()
