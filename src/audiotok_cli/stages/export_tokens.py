"""`export-tokens`: every tokenized clip as one Parquet row (clip id, source, split, labels, token
ids), written shard by shard, so any text-model toolchain (pyarrow, pandas, Hugging Face `datasets`)
can train on audiotok tokens. Two id columns, named so neither is mistaken for the other: `tokens`
are the centroid indices as stored (padding removed), `input_ids` what audiotok's models and an
exported BERT read ([CLS], then centroid + 4); the scheme is in the file's metadata too. Tokens of
several ids a step (`--quantizer pq:M|rvq:R`) are lists of steps, each a list of its codebooks' ids.

Labels are class indices, and the file carries the `datasets` features that name them
(`ClassLabel` over the store's class ids: AudioSet's MIDs, or a collection's own names), so
`datasets.load_dataset("parquet", data_files=...)` gives named classes; a single-label store's clips
also get `label`, one `ClassLabel` (-1 where a clip has none), as audio classification sets on the hub
name it.

`--format datasets` writes the same rows as a `datasets` DatasetDict (`save_to_disk`), each split its
own (`train`, `validation`, `test`, and `unassigned` clips where the store has them): what a
`datasets` user loads with `load_from_disk`, rather than one table with a `split` column."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audiotok_cli.atomic import naming_full_disk
from audiotok_cli.errors import OutputExistsError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.store import SPLITS, Pick, Store
from audiotok_cli.tokenizer.ids import SCHEME, STEPS_SCHEME, input_ids, step_input_ids

NO_LABEL = -1  # `datasets`' ClassLabel value for "none"
FORMATS = ("parquet", "datasets")
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test", "unassigned": "unassigned"}


def _schema(steps: bool, class_ids: list[str], single_label: bool) -> pa.Schema:
    """The file's columns and metadata: the id scheme, and the `datasets` features of every column."""
    ids = pa.list_(pa.list_(pa.int32())) if steps else pa.list_(pa.int32())
    columns = [("clip", pa.string()), ("source", pa.string()), ("split", pa.string())]
    columns += [("labels", pa.list_(pa.int64()))] + [("label", pa.int64())] * single_label
    columns += [("tokens", ids), ("input_ids", ids)]
    value = {"dtype": "int32", "_type": "Value"}
    sequence = {"feature": {"feature": value, "_type": "Sequence"} if steps else value, "_type": "Sequence"}
    classes = {"names": class_ids, "_type": "ClassLabel"}
    features = {name: {"dtype": "string", "_type": "Value"} for name in ("clip", "source", "split")}
    features |= {"labels": {"feature": classes, "_type": "Sequence"}}
    if single_label:
        features["label"] = classes
    features |= {"tokens": sequence, "input_ids": sequence}
    metadata = {
        "audiotok.token_ids": STEPS_SCHEME if steps else SCHEME,
        "huggingface": json.dumps({"info": {"features": features}}),
    }
    return pa.schema(columns, metadata=metadata)


@dataclass
class ExportResult:
    path: Path
    tokens: str
    clips: int


def export_tokens(
    store_path: Path, output: Path, pick: Pick | None = None, overwrite: bool = False
) -> ExportResult:
    """Write the tokens `pick` chooses to `output`; the file appears only once it is complete."""
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite")
    store = Store.open(store_path)
    tokens = store.tokens(pick)
    steps = tokens.record.codebooks > 1
    single_label = store.single_label()
    schema = _schema(steps, list(store.classes.mids), single_label)
    model_ids = (
        functools.partial(step_input_ids, codebook_size=tokens.record.n_clusters) if steps else input_ids
    )
    lengths = tokens.all_lengths()
    done = lengths >= 0
    sources = store.source_names
    partial = output.with_name(f".{output.name}.partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    clips = 0
    with naming_full_disk(output), pq.ParquetWriter(partial, schema) as writer:
        shards = tokens.shards_with(done)
        with progress(f"export {tokens.name}", len(shards)) as advance:
            for shard in shards:
                span = tokens.shard_rows(shard)
                ids, shard_lengths = tokens.read_shard(shard)
                keep = np.flatnonzero(shard_lengths >= 0)
                labels = store.labels(span)
                classes = [np.flatnonzero(labels[row]).tolist() for row in keep]
                batch = {
                    "clip": store.ytids(span)[keep].tolist(),
                    "source": [sources[c] for c in store.sources(span)[keep]],
                    "split": [SPLITS[c] for c in store.splits(span)[keep]],
                    "labels": classes,
                    **({"label": [one[0] if one else NO_LABEL for one in classes]} if single_label else {}),
                    "tokens": [_cell(ids[row, : shard_lengths[row]]) for row in keep],
                    "input_ids": [_cell(model_ids(ids[row, : shard_lengths[row]])) for row in keep],
                }
                writer.write_table(pa.table(batch, schema=schema))
                clips += len(keep)
                advance(1)
    partial.replace(output)
    return ExportResult(output, tokens.name, clips)


def _cell(ids: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """One clip's ids as a Parquet cell: a list of ids, or of steps (each a list of its ids)."""
    ids = ids.astype(np.int32)
    return list(ids) if ids.ndim == 2 else ids


def export_datasets(
    store_path: Path, output: Path, pick: Pick | None = None, overwrite: bool = False
) -> ExportResult:
    """The tokens as a `datasets` DatasetDict saved to the folder `output`, one split per store split
    (the Parquet export cut by its `split` column, a batch at a time); the folder appears only once
    it is complete."""
    try:
        import datasets
    except ImportError:
        raise SettingsError(
            "--format datasets needs the datasets package; pip install 'audiotok-cli[datasets]'"
        ) from None
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass --overwrite")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as work:
        whole = export_tokens(store_path, Path(work) / "tokens.parquet", pick)
        files = _by_split(whole.path, Path(work))
        with naming_full_disk(output):
            loaded = datasets.load_dataset(
                "parquet", data_files={split: str(path) for split, path in files.items()}, cache_dir=work
            )
            partial = Path(work) / "dataset"
            loaded.save_to_disk(str(partial))
            if output.exists():
                shutil.rmtree(output)
            partial.replace(output)
    return ExportResult(output, whole.tokens, whole.clips)


def _by_split(table: Path, work: Path) -> dict[str, Path]:
    """`table`'s rows in one Parquet file per split (named as the hub names splits), same schema."""
    source = pq.ParquetFile(table)
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for batch in source.iter_batches():
            splits = batch.column("split").to_numpy(zero_copy_only=False)
            for split in np.unique(splits):
                if split not in writers:
                    writers[split] = pq.ParquetWriter(
                        work / f"{HUB_SPLITS[split]}.parquet", source.schema_arrow
                    )
                writers[split].write_table(pa.Table.from_batches([batch]).filter(pa.array(splits == split)))
    finally:
        for writer in writers.values():
            writer.close()
    return {HUB_SPLITS[split]: work / f"{HUB_SPLITS[split]}.parquet" for split in SPLITS if split in writers}
