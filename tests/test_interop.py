"""Interop: a trained BERT loads in `transformers` as it is; tokens export to Parquet that reads
back equal to the store."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import BertModel

from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.store import SPLITS, Store
from audiotok_cli.training.models.ids import to_model_ids
from audiotok_cli.training.runs import load_run
from collections_kit import folders


@pytest.mark.parametrize("input_kind", ["tokens", "frames"])
def test_an_exported_bert_loads_in_transformers_with_every_weight(cli, tokenized, tmp_path, input_kind):
    trained = cli(
        "train", "--model", "bert", "--input", input_kind, "--epochs", "1", "--hidden-size", "32",
        "--num-heads", "2", "--num-layers", "1",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    run_name = "bert-logmel-k16" if input_kind == "tokens" else "bert-logmel"
    exported = cli("export", run_name, str(tmp_path / "hf"))
    assert exported.exit_code == 0, exported.output
    # the encoder was trained without BERT's pooler ([CLS] feeds audiotok's own head), so none is loaded
    encoder, info = BertModel.from_pretrained(
        tmp_path / "hf", add_pooling_layer=False, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert encoder.config.id2label[0] == "Speech" and len(encoder.config.id2label) == 527
    assert "centroid c is c+4" in encoder.config.audiotok_token_ids
    run = load_run(tokenized.runs_dir / run_name).model.eval()
    ids = (
        to_model_ids(torch.randint(0, 16, (2, 30)))
        if input_kind == "tokens"
        else torch.ones(2, 30, dtype=int)
    )
    with torch.no_grad():
        assert torch.allclose(
            encoder.eval()(input_ids=ids).last_hidden_state, run.bert(input_ids=ids).last_hidden_state
        )
    assert (tmp_path / "hf" / "audiotok_head.safetensors").exists() and (
        tmp_path / "hf" / "classes.csv"
    ).exists()
    again = cli("export", run_name, str(tmp_path / "hf"))
    assert again.exit_code == 7 and "--overwrite" in again.stderr
    quiet = cli("export", run_name, str(tmp_path / "hf"), "--overwrite", "-q")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_only_bert_runs_export(cli, tokenized, tmp_path):
    assert cli("train", "--model", "simple", "--epochs", "1").exit_code == 0
    refused = cli("export", "simple-logmel-k16", str(tmp_path / "hf"))
    assert refused.exit_code == 3 and "only bert runs export to transformers" in refused.stderr


def test_exported_tokens_read_back_equal_to_the_store(cli, tokenized, tmp_path):
    result = cli("export-tokens", str(tmp_path / "tokens.parquet"))
    assert result.exit_code == 0 and "wrote 48 clips of tokens 'logmel-k16'" in result.stdout
    table = pq.read_table(tmp_path / "tokens.parquet").to_pylist()
    store = Store.open(tokenized.store_path)
    tokens = store.tokens()
    ids, lengths = tokens.data[:], tokens.all_lengths()
    mids = audioset_classes().mids
    assert [row["clip"] for row in table] == list(store.ytids())
    for row, record in enumerate(table):
        assert (
            record["source"] == SOURCES[store.sources()[row]]
            and record["split"] == SPLITS[store.splits()[row]]
        )
        assert record["tokens"] == ids[row, : lengths[row]].tolist()
        assert record["input_ids"] == [1] + [c + 4 for c in record["tokens"]]  # what the models read
        assert record["labels"] == np.flatnonzero(store.labels(slice(row, row + 1))[0]).tolist()
        assert "label" not in record  # AudioSet clips have several
    scheme = pq.read_schema(tmp_path / "tokens.parquet").metadata[b"audiotok.token_ids"].decode()
    assert "[CLS]=1" in scheme and "centroid c is c+4" in scheme
    assert cli("export-tokens", str(tmp_path / "tokens.parquet")).exit_code == 7

    from datasets import load_dataset  # what a text-model toolchain would read it with

    loaded = load_dataset(
        "parquet", data_files=str(tmp_path / "tokens.parquet"), cache_dir=str(tmp_path / "hf")
    )
    assert loaded["train"].to_list() == table
    named = loaded["train"].features["labels"].feature
    assert named.names == list(mids) and all(named.int2str(c) == mids[c] for c in table[0]["labels"])


def test_a_collections_exported_tokens_load_in_datasets_with_its_class_names(cli, tmp_path):
    from datasets import ClassLabel, load_dataset

    root = folders(tmp_path / "instruments")
    for command in (
        ["import", str(root)], ["split", "--val-ratio", "0.3", "--test-ratio", "0.3"],
        ["featurize", "--clip-seconds", "1"], ["vocab", "--k", "8"], ["tokenize"],
        ["export-tokens", str(tmp_path / "tokens.parquet")],
    ):  # fmt: skip
        assert cli(*command).exit_code == 0, command
    loaded = load_dataset(
        "parquet", data_files=str(tmp_path / "tokens.parquet"), cache_dir=str(tmp_path / "hf")
    )
    train = loaded["train"]
    assert train.features["label"] == ClassLabel(names=["bell", "kalimba", "ocarina"])
    for row in train:
        assert row["labels"] == [row["label"]]
        assert row["clip"].split("/")[1] == train.features["label"].int2str(row["label"])  # its folder


def test_tokens_export_as_a_datasets_dataset_dict_with_the_splits_as_its_splits(cli, tokenized, tmp_path):
    from datasets import load_from_disk

    assert cli("export-tokens", str(tmp_path / "tokens.parquet")).exit_code == 0
    table = pq.read_table(tmp_path / "tokens.parquet").to_pylist()
    result = cli("export-tokens", str(tmp_path / "dataset"), "--format", "datasets")
    assert result.exit_code == 0 and "wrote 48 clips of tokens 'logmel-k16'" in result.stdout
    loaded = load_from_disk(str(tmp_path / "dataset"))
    hub = {"train": "train", "val": "validation", "test": "test", "unassigned": "unassigned"}
    expected = {hub[split] for split in {row["split"] for row in table}}
    assert set(loaded) == expected and {"train", "validation", "test"} <= expected
    for name, split in hub.items():
        if split in loaded:  # each split's rows, in the store's order, as the Parquet table holds them
            assert loaded[split].to_list() == [row for row in table if row["split"] == name]
    assert loaded["train"].features["labels"].feature.names == list(audioset_classes().mids)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no leftovers
    again = cli("export-tokens", str(tmp_path / "dataset"), "--format", "datasets")
    assert again.exit_code == 7 and "already exists; pass --overwrite" in again.stderr
    wrong = cli("export-tokens", str(tmp_path / "x"), "--format", "csv")
    assert wrong.exit_code == 3 and "--format 'csv': choose parquet or datasets" in wrong.stderr
