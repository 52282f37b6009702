"""Encoder features (`featurize --encoder`): equal-length clips `--batch` at a time through the model
(what audiotok does on a GPU) against fairseq's HuBERT recipe (`examples/hubert/simple_kmeans/
dump_hubert_feature.py`: one utterance per forward, what audiotok does on the CPU), on the same
decoded demo clips, the same model and feature extractor; on the CPU on one thread (as each
featurize task runs), on the GPU when there is one.

The model is HuBERT base's shape (12 layers, 768 hidden, 95 M parameters) randomly initialised:
nothing downloads here, and speed does not depend on the weights. Prints clips/s of both and
their ratio, and checks that the two give the same frames (to float tolerance).

Usage: python benchmarks/bench_encoder.py [--clips 16] [--layer 6] [--repeat 2] [--batch 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from audiotok_cli.audio.encoder import EncoderFrames
from audiotok_cli.audio.logmel import decode
from audiotok_cli.settings import AudioSettings
from bench_featurize import write_clips


def save_hubert_base(folder: Path) -> str:
    torch.manual_seed(0)
    HubertModel(HubertConfig()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return str(folder)


def one_per_forward(frames_of: EncoderFrames, clips: list[np.ndarray]) -> list[np.ndarray]:
    """fairseq's loop: each utterance alone through the extractor and the model."""
    out = []
    with torch.no_grad():
        for samples in clips:
            inputs = frames_of.extractor(samples, sampling_rate=16000, return_tensors="pt")
            inputs = inputs.input_values.to(frames_of.device)
            states = frames_of.model(inputs, output_hidden_states=True).hidden_states
            out.append(states[frames_of.layer][0].float().cpu().numpy())
    return out


def timed(run) -> tuple[float, list[np.ndarray]]:
    started = time.perf_counter()
    frames = run()
    return time.perf_counter() - started, frames


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2, help="Interleaved runs; medians are printed.")
    parser.add_argument("--batch", type=int, default=8, help="Equal-length clips a forward.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = save_hubert_base(Path(scratch) / "hubert-base-random")
        paths = write_clips(Path(scratch), args.clips)
        clips = [decode(path, 16000) for path in paths]
        frames_of = EncoderFrames(AudioSettings(encoder=folder, layer=args.layer))
        frames_of.batch = args.batch
        names = [str(path) for path in paths]
        ours, theirs = [], []
        for _ in range(args.repeat):
            seconds, batched = timed(lambda: frames_of.many(clips, names))
            ours.append(seconds)
            seconds, single = timed(lambda: one_per_forward(frames_of, clips))
            theirs.append(seconds)
        worst = max(float(np.abs(a - b).max()) for a, b in zip(batched, single, strict=True))
        ours_rate, theirs_rate = args.clips / np.median(ours), args.clips / np.median(theirs)
        where = "1 thread" if frames_of.device == "cpu" else frames_of.device
        print(f"{args.clips} ten-second clips, HuBERT base shape, layer {args.layer}, {where}")
        print(f"one utterance per forward (fairseq): {theirs_rate:6.2f} clips/s")
        print(
            f"{args.batch} equal-length clips a forward: {ours_rate:6.2f} clips/s "
            f"({ours_rate / theirs_rate:.2f}x); largest difference in a frame value {worst:.1e}"
        )


if __name__ == "__main__":
    main()
