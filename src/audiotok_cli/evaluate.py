"""`eval`: score a trained run on the val split and the official eval set (test), beside the
label-prior baseline, and write the report as JSON next to the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiotok_cli.atomic import write_json
from audiotok_cli.errors import MismatchError
from audiotok_cli.metrics import classification_metrics, mean_average_precision, prior_scores
from audiotok_cli.runs import REPORT, load_run, pick_device, predict, run_dir
from audiotok_cli.settings import Settings
from audiotok_cli.store import Store
from audiotok_cli.train import split_rows


@dataclass
class EvalReport:
    run_dir: Path
    report_path: Path
    splits: dict[str, dict]  # split -> metrics, with "prior_mAP"


def evaluate(settings: Settings, run: str | None = None) -> EvalReport:
    directory = run_dir(settings, run)
    model, record = load_run(directory)
    store = Store.open(settings.store_path)
    tokens = store.padded("tokens", record["tokens"], fix="run `audiotok tokenize`")
    if tokens.attrs["vocab_fingerprint"] != record["vocab_fingerprint"]:
        raise MismatchError(
            f"run {directory} was trained on other tokens than {record['tokens']!r} now holds; "
            "train it again with --overwrite"
        )
    if record["split_settings"] != store.split_settings:
        raise MismatchError(
            f"run {directory} was trained on split {record['split_settings']}, the store now holds "
            f"{store.split_settings}: its val clips may be training clips; train again with --overwrite"
        )
    device = pick_device(settings.train.device)
    model.to(device)
    lengths = tokens.all_lengths()
    train_prior = store.label_prior(split_rows(store, lengths, "train"))
    results = {}
    for split in ("val", "test"):
        rows = split_rows(store, lengths, split)
        if not rows.any():
            continue
        labels, scores = predict(model, store, tokens, rows, settings.train.batch_size, device)
        metrics = classification_metrics(labels, scores)
        metrics["prior_mAP"] = mean_average_precision(labels, prior_scores(train_prior, len(labels)))
        results[split] = metrics
    report = {
        "run": str(directory),
        "model": record["model"],
        "best_epoch": record["best_epoch"],
        "splits": results,
    }
    write_json(directory / REPORT, report)
    return EvalReport(directory, directory / REPORT, results)
