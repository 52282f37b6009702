"""`vocab --quantizer pq:M|rvq:R`: several ids a step, one per codebook, stored as [clip, step,
codebook], embedded as the sum of the codebooks' embeddings, encoded the same way by predict."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertModel

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import SettingsError
from audiotok_cli.store import Pick, Store
from audiotok_cli.tokenizer.quantizers import (
    QUANTIZERS,
    FlatKMeans,
    nearest,
    parse_quantizer,
    quantizer_of,
    quantizer_tag,
)
from audiotok_cli.tokenizer.tokenizer import Tokenizer
from audiotok_cli.training.models.ids import CLS_ID, N_SPECIAL, PAD_ID, embed_steps, to_model_ids
from audiotok_cli.training.runs import load_run
from training_helpers import assert_predict_scores_the_store_tokens


def test_product_and_residual_codes_are_what_their_codebooks_say():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    books = rng.normal(size=(2, 16, 4)).astype(np.float32)
    codes = quantizer_of("pq:2", books).encode(vectors)
    assert codes.shape == (500, 2)
    assert np.array_equal(codes[:, 1], nearest(books[1], vectors[:, 4:]))  # each part its own codebook
    assert np.allclose(quantizer_of("pq:2", books).decode(codes)[:, :4], books[0][codes[:, 0]])

    residual_books = [rng.normal(size=(16, 8)).astype(np.float32) * scale for scale in (1.0, 0.5, 0.25)]
    stacked = np.stack(residual_books)
    errors = [
        ((vectors - quantizer.decode(quantizer.encode(vectors))) ** 2).sum()
        for quantizer in (quantizer_of(f"rvq:{n}", stacked[:n]) for n in (2, 3))
    ]
    first = vectors - residual_books[0][nearest(residual_books[0], vectors)]
    assert np.array_equal(
        quantizer_of("rvq:3", stacked).encode(vectors)[:, 1], nearest(residual_books[1], first)
    )
    assert errors[1] <= errors[0]  # a codebook more never reconstructs worse
    assert quantizer_tag("pq:8", 256) == "pq8x256" and quantizer_tag("kmeans", 64) == "k64"
    for bad in ("pq", "pq:1", "vq:4"):
        with pytest.raises(SettingsError, match="choose from kmeans, pq:M, rvq:R"):
            parse_quantizer(bad)


def test_codebook_ids_share_one_embedding_table_without_colliding():
    stored = torch.tensor([[[0, 0, 5], [7, 1, 0], [-1, -1, -1]]])
    ids = to_model_ids(stored, codebook_size=8)
    assert ids[0, 0].tolist() == [N_SPECIAL, N_SPECIAL + 8, N_SPECIAL + 16 + 5]
    assert ids[0, 1].tolist() == [N_SPECIAL + 7, N_SPECIAL + 9, N_SPECIAL + 16]
    assert ids[0, 2].tolist() == [PAD_ID] * 3  # padding stays padding in every codebook


def test_pq_vocab_tokens_train_and_predict_the_same_way(cli, tokenized):
    result = cli("vocab", "--k", "8", "--quantizer", "pq:4")
    assert result.exit_code == 0, result.output
    name = "logmel-pq4x8"
    assert f"vocab {name!r}: 8 centroids a codebook (pq:4)" in " ".join(result.stdout.split())
    store = Store.open(tokenized.store_path)
    vocab = store.vocab(Pick(name))
    assert vocab.centroids.shape == (4, 8, 16) and vocab.record.quantizer == "pq:4"
    assert cli("tokenize", "--vocab", name).exit_code == 0
    tokens = store.tokens(Pick(name))
    ids, lengths = tokens.read_shard(0)
    frames, _ = store.features().read_shard(0)
    assert ids.shape[2] == 4 and tokens.record.codebooks == 4
    for row in range(3):
        assert np.array_equal(
            ids[row, : lengths[row]],
            quantizer_of("pq:4", vocab.centroids).encode(frames[row, : lengths[row]]),
        )
    assert (ids[0, lengths[0] :] == -1).all()

    trained = cli("train", "--model", "simple", "--vocab", name, "--epochs", "2", "--embed-dim", "8")
    assert trained.exit_code == 0, trained.output
    run = load_run(tokenized.runs_dir / f"simple-{name}")
    assert run.record.model.n_tokens == 4 * 8 and run.record.inputs.quantizer == "pq:4"
    file = sorted((tokenized.audio_dir / "eval").rglob("*.flac"))[0]
    clip = assert_predict_scores_the_store_tokens(cli, run.directory, tokens, store, file, codebook_size=8)

    bert = ["train", "--model", "bert", "--vocab", name, "--epochs", "1", "--hidden-size", "16"]
    trained = cli(*bert, "--num-heads", "2", "--num-layers", "1", "--mixup", "0.3", "--token-mask", "0.2")
    assert trained.exit_code == 0, trained.output  # BERT on codebook sums, with token mixup and masks
    words = load_run(tokenized.runs_dir / f"bert-{name}").model.bert.embeddings.word_embeddings
    with torch.no_grad():  # a step's embedding is the sum of its codebooks' embeddings
        summed = embed_steps(words, clip)[0, 0]
        assert torch.allclose(summed, sum(words(clip[0, 0, c : c + 1])[0] for c in range(4)))
    inspected = cli("inspect", "--vocab", name, "--codebook", "1", "--json")
    assert inspected.exit_code == 0, inspected.output
    report = json.loads(inspected.stdout)
    lengths = tokens.all_lengths()
    train = store.split_rows(lengths, "train")
    everything, _ = tokens.read_shard(0)  # one shard holds the 48 clips
    used = np.concatenate([everything[row, : lengths[row], 1] for row in np.flatnonzero(train)])
    assert (
        report["name"] == f"{name} codebook 1" and report["usage"] == np.bincount(used, minlength=8).tolist()
    )
    exported = cli("export-tokens", "out.parquet", "--vocab", name)
    assert exported.exit_code == 0, exported.output
    first = pq.read_table("out.parquet").slice(0, 1).to_pylist()[0]
    row = store.row_of[first["clip"]]
    ids, lengths = tokens.read_shard(row // tokens.rows_per_shard)
    stored = ids[row % tokens.rows_per_shard, : lengths[row % tokens.rows_per_shard]]
    assert first["tokens"] == stored.tolist()  # [step][codebook], as stored
    assert first["input_ids"] == to_model_ids(torch.from_numpy(stored[None]), 8)[0].tolist()  # as models read
    _exported_bert_reads_summed_steps(cli, tokenized.runs_dir / f"bert-{name}", first["input_ids"])
    for args, message in (
        (
            ["vocab", "--k", "8", "--quantizer", "pq:5"],
            "its 64 dimensions do not divide; add --transform pca:D",
        ),
        (
            ["inspect", "--vocab", name, "--codebook", "4"],
            "--codebook 4: 'logmel-pq4x8' has codebooks 0 to 3",
        ),
        (["tokenize", "--vocab", name, "--merges", "10"], "--merges merges one id a step"),
    ):
        refused = cli(*args)
        assert refused.exit_code == 3 and message in refused.stderr, args


def _exported_bert_reads_summed_steps(cli, run_dir, input_ids: list[list[int]]) -> None:
    """`export` of a BERT on several ids a step: transformers' BertModel loads every weight and, fed
    [CLS] then each step's summed embeddings of export-tokens' `input_ids`, gives the run's logits."""
    exported = cli("export", str(run_dir), "exported")
    assert exported.exit_code == 0, exported.output
    encoder = BertModel.from_pretrained("exported", add_pooling_layer=False).eval()
    assert "sum of its ids' embeddings, after a lone [CLS]" in encoder.config.audiotok_token_ids
    head = load_file("exported/audiotok_head.safetensors")
    run = load_run(run_dir).model.eval()
    ids = torch.tensor([input_ids])
    words = encoder.embeddings.word_embeddings
    with torch.no_grad():
        embeds = torch.cat([words(torch.tensor([[CLS_ID]])), words(ids).sum(dim=2)], dim=1)
        cls = encoder(inputs_embeds=embeds).last_hidden_state[:, 0]
        logits = cls @ head["head.weight"].T + head["head.bias"]
        assert torch.allclose(logits, run(ids, torch.tensor([len(input_ids)])), atol=1e-5)


def test_a_new_quantizer_is_a_class_and_a_registry_line(monkeypatch):
    """The registry is the quantizers' one list: a class with train, encode and decode, added to
    QUANTIZERS, is parsed, trained and encoded by name (here: k-means on the frame's sign-folded
    magnitude, a made-up one), and the Tokenizer round-trips it through its arrays."""

    class Folded(FlatKMeans):
        def encode(self, vectors):
            return super().encode(np.abs(vectors))

    monkeypatch.setitem(QUANTIZERS, "folded", Folded)
    rng = np.random.default_rng(1)
    sample = rng.normal(size=(400, 6)).astype(np.float32)
    assert parse_quantizer("folded:2") == ("folded", 2)
    tokenizer = Tokenizer.fit(sample, FrameTransforms(), "folded:2", lambda points: points[:8].copy())
    assert isinstance(tokenizer.quantizer, Folded)
    again = Tokenizer.from_arrays("folded:2", tokenizer.transforms, tokenizer.to_arrays())
    assert np.array_equal(again.encode(sample), nearest(sample[:8], np.abs(sample)))
    with pytest.raises(SettingsError, match="unknown quantizer 'opq:2'"):
        parse_quantizer("opq:2")
