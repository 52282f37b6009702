"""`audiotok inspect`: cluster use, perplexity and the label information of a vocabulary's tokens,
checked against an independent count of the store's own tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from audiotok_cli.store import Pick, Store


def _train_pairs(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """Every train token once per label of its clip: (token, class) pairs, counted the slow way."""
    tokens = store.tokens()
    lengths = tokens.all_lengths()
    rows = np.flatnonzero(store.split_rows(lengths, "train"))
    labels = store.labels()
    ids = tokens.data[:]
    pairs = [
        (token, c) for row in rows for c in np.flatnonzero(labels[row]) for token in ids[row, : lengths[row]]
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_inspect_counts_use_and_label_information_as_an_independent_count_does(cli, tokenized, tmp_path):
    result = cli("inspect", "--json", "--plot", str(tmp_path / "codebook.png"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    store = Store.open(tokenized.store_path)
    token_ids, classes = _train_pairs(store)
    lengths = store.tokens().all_lengths()
    train = store.split_rows(lengths, "train")
    ids = store.tokens().data[:]
    usage = sum(np.bincount(ids[row, : lengths[row]], minlength=16) for row in np.flatnonzero(train))
    assert report["usage"] == usage.tolist() and report["dead"] == int((usage == 0).sum())
    use = report["splits"]["train"]
    assert use["tokens"] == usage.sum() and use["clips"] == int(train.sum())
    p = usage[usage > 0] / usage.sum()
    assert use["perplexity"] == pytest.approx(2 ** -(p * np.log2(p)).sum()) and use["perplexity"] <= 16
    assert use["label_information_bits"] == pytest.approx(mutual_info_score(token_ids, classes) / np.log(2))
    assert 0 < use["label_information_share"] < 1 and "val" in report["splits"]
    assert (tmp_path / "codebook.png").read_bytes()[:4] == b"\x89PNG"

    shown = cli("inspect")
    assert shown.exit_code == 0 and "vocab 'logmel-k16': k=16" in shown.stdout and "perpl." in shown.stdout
    warned = " ".join(shown.stderr.split())  # the demo's val: a handful of clips
    assert f"val holds {report['splits']['val']['clips']} clips of" in warned and "too few" in warned


def test_inspect_reports_every_codebook_and_the_joint_code_of_pq_tokens_at_80_columns(
    cli, tokenized, monkeypatch
):
    assert cli("vocab", "--k", "8", "--quantizer", "pq:4").exit_code == 0
    assert cli("tokenize", "--vocab", "logmel-pq4x8").exit_code == 0
    report = json.loads(cli("inspect", "--vocab", "logmel-pq4x8", "--json").stdout)
    assert list(report["codes"]) == ["codebook 0", "codebook 1", "codebook 2", "codebook 3", "joint"]
    store = Store.open(tokenized.store_path)
    tokens = store.tokens(Pick("logmel-pq4x8"))
    lengths = tokens.all_lengths()
    rows = np.flatnonzero(store.split_rows(lengths, "train"))
    ids, labels = tokens.data[:], store.labels()
    steps = [
        (tuple(step), c)
        for row in rows
        for c in np.flatnonzero(labels[row])
        for step in ids[row, : lengths[row]]
    ]
    codes = {code: index for index, code in enumerate(dict.fromkeys(step for step, _ in steps))}
    joint = report["codes"]["joint"]["train"]
    independent = mutual_info_score([codes[s] for s, _ in steps], [c for _, c in steps]) / np.log(2)
    assert joint["label_information_bits"] == pytest.approx(independent)
    assert joint["perplexity"] > max(
        report["codes"][f"codebook {b}"]["train"]["perplexity"] for b in range(4)
    )
    for book in range(4):  # each codebook as an independent count of its own ids
        own = [(step[book], c) for step, c in steps]
        expected = mutual_info_score([t for t, _ in own], [c for _, c in own]) / np.log(2)
        assert report["codes"][f"codebook {book}"]["train"]["label_information_bits"] == pytest.approx(
            expected
        )
    monkeypatch.setenv("COLUMNS", "80")
    shown = cli("inspect", "--vocab", "logmel-pq4x8")
    assert shown.exit_code == 0 and [line for line in shown.stdout.splitlines() if len(line) > 80] == []
    assert any(line.split()[:2] == ["train", "joint"] for line in shown.stdout.splitlines())
    for split in ("train", "val"):  # the joint code's cells are thin here: no figure, said why
        use = report["codes"]["joint"][split]
        classes = int((labels[store.split_rows(lengths, split)].sum(axis=0) > 0).sum())
        expected = use["tokens"] < 10 * use["perplexity"] * classes or use["clips"] < 10 * classes
        assert use["thin"] == expected
    assert report["codes"]["joint"]["train"]["thin"]
    joint_train = next(line for line in shown.stdout.splitlines() if line.split()[:2] == ["train", "joint"])
    assert joint_train.split()[-2:] == ["n/a", "n/a"]
    assert "n/a (too few clips): too few tokens a" in shown.stdout
