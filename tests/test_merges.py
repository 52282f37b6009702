"""`tokenize --merges N`: byte-pair merges of token sequences (Hugging Face `tokenizers`), learned
on the train split, lossless, shorter, applied the same way by predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiotok_cli.store import Pick, Store
from audiotok_cli.tokenizer.merges import FIRST_CHARACTER, Merges, train_merges
from audiotok_cli.training.runs import load_run
from training_helpers import assert_predict_scores_the_store_tokens


def _expanded(merges: Merges, ids: np.ndarray) -> list[int]:
    """Merged ids back to the centroid ids they stand for."""
    text = "".join(merges.tokenizer.id_to_token(int(i)) for i in ids)
    return [ord(c) - FIRST_CHARACTER for c in text]


def test_merges_learn_repeated_pairs_and_lose_nothing():
    rng = np.random.default_rng(0)
    motif = np.array([3, 7, 7, 1])  # a sound that lasts four frames, in every clip
    sequences = [
        np.concatenate([rng.integers(0, 16, 20), motif, rng.integers(0, 16, 20), motif]) for _ in range(200)
    ]
    merges = Merges(train_merges(sequences, 16, 40))
    assert 16 < merges.size <= 16 + 40
    merged = merges(sequences)
    assert all(len(m) < len(s) for m, s in zip(merged, sequences, strict=True))
    assert all(_expanded(merges, m) == s.tolist() for m, s in zip(merged, sequences, strict=True))
    motif_id = merges([motif])[0]
    assert len(motif_id) == 1  # the motif became one id
    singles = merges([np.array([i]) for i in range(16)])
    assert [one.tolist() for one in singles] == [[i] for i in range(16)]  # a lone id keeps its number
    again = Merges.from_array(merges.as_array().astype(np.float32))  # as a run's preprocessing keeps it
    assert [m.tolist() for m in again(sequences[:5])] == [m.tolist() for m in merged[:5]]


def test_tokenize_merges_the_store_and_predict_merges_a_file_the_same_way(cli, tokenized):
    result = cli("tokenize", "--merges", "30")
    assert result.exit_code == 0, result.output
    name = "logmel-k16-bpe30"
    said = " ".join(result.stdout.split())
    assert f"tokens {name!r}: 48 clips merged" in said and "ids on average" in said
    store = Store.open(tokenized.store_path)
    base, merged = store.tokens(Pick("logmel-k16")), store.tokens(Pick(name))
    merges = Merges(merged.record.merges_json)
    assert merged.record.merges == 30 and merged.record.n_clusters == merges.size > 16
    ids, lengths = base.read_shard(0)
    merged_ids, merged_lengths = merged.read_shard(0)
    assert (merged_lengths < lengths).all()
    for row in range(len(lengths)):  # lossless: every merged sequence spells its clip's tokens
        assert _expanded(merges, merged_ids[row, : merged_lengths[row]]) == ids[row, : lengths[row]].tolist()
    assert (merged_ids[0, merged_lengths[0] :] == -1).all()
    assert "0 clips merged" in cli("tokenize", "--merges", "30").stdout  # a rerun keeps them

    trained = cli("train", "--model", "simple", "--vocab", name, "--epochs", "1", "--embed-dim", "8")
    assert trained.exit_code == 0, trained.output
    run = load_run(tokenized.runs_dir / f"simple-{name}")
    assert run.record.model.n_tokens == merges.size
    file = sorted((tokenized.audio_dir / "eval").rglob("*.flac"))[0]
    assert_predict_scores_the_store_tokens(cli, run.directory, merged, store, file)  # merged the same way

    inspected = cli("inspect", "--vocab", name, "--json")  # merged ids as tokens: the shorter sequences
    assert inspected.exit_code == 0, inspected.output
    report = json.loads(inspected.stdout)
    train = store.split_rows(merged.all_lengths(), "train")
    assert report["splits"]["train"]["tokens_per_clip"] == pytest.approx(merged.all_lengths()[train].mean())
    assert len(report["usage"]) == merges.size and sum(report["usage"]) == merged.all_lengths()[train].sum()
    refused = cli("inspect", "--vocab", name, "--plot", "merged.png")
    assert refused.exit_code == 3 and "are merged: draw 'logmel-k16'" in refused.stderr


def test_verify_names_the_command_that_remakes_damaged_merged_tokens(cli, tokenized):
    assert cli("tokenize", "--merges", "30").exit_code == 0
    merged = tokenized.store_path / "tokens" / "logmel-k16-bpe30" / "data" / "c" / "0" / "0"
    before = Store.open(tokenized.store_path).tokens(Pick("logmel-k16-bpe30")).read_shard(0)
    merged.write_bytes(merged.read_bytes()[:40])
    found = cli("verify", "--repair")
    said = " ".join(found.stdout.split())
    assert found.exit_code == 0 and "tokens/logmel-k16-bpe30 shard 0" in said
    assert "`audiotok tokenize --vocab logmel-k16 --merges 30`" in said  # not a vocab named ...-bpe30
    assert cli("tokenize", "--vocab", "logmel-k16", "--merges", "30").exit_code == 0
    after = Store.open(tokenized.store_path).tokens(Pick("logmel-k16-bpe30")).read_shard(0)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
