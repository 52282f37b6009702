"""`export`: a trained BERT run as a folder `transformers` loads as it is:
`BertModel.from_pretrained(folder, add_pooling_layer=False)` reads the encoder (config.json +
model.safetensors) with every weight (audiotok's head reads [CLS] directly, so there is no pooler);
audiotok's parts beside it say how to use it:
`audiotok_head.safetensors` (the classifier head, and for frame input the projection and front end),
`preprocessing.safetensors`, `classes.csv` and `audiotok.json` (the run record: the ids are centroid
+ 4, with [PAD] 0, [CLS] 1, [MASK] 2, [SEP] 3). A run on several ids a step (pq, rvq) exports the
same way; it is fed `inputs_embeds`: [CLS]'s embedding, then each step's ids' embeddings summed
(the config's `audiotok_token_ids` says so)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging as hf_logging

from audiotok_cli.atomic import write_json
from audiotok_cli.errors import OutputExistsError, SettingsError
from audiotok_cli.tokenizer.ids import SCHEME, STEPS_SCHEME
from audiotok_cli.training.runs import CLASSES, PREPROCESSING, load_run, save_tensors


@dataclass
class ExportResult:
    run_dir: Path
    output: Path
    files: list[str]


def export_run(run_dir: Path, output: Path, overwrite: bool = False) -> ExportResult:
    run = load_run(run_dir)
    if run.record.model.kind != "bert":
        raise SettingsError(
            f"run {run_dir} is a {run.record.model.kind!r} model: only bert runs export to transformers"
        )
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise OutputExistsError(f"{output} already exists and is not empty; pass --overwrite")
    output.mkdir(parents=True, exist_ok=True)
    config = run.model.bert.config  # the head's outputs by name, for transformers' pipelines
    config.id2label = dict(enumerate(run.classes.names))
    config.label2id = {name: index for index, name in config.id2label.items()}
    several = run.record.inputs.quantizer != "kmeans"  # pq, rvq: a step's embedding is the sum of its ids'
    config.audiotok_token_ids = STEPS_SCHEME if several else SCHEME  # as export-tokens writes input_ids
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar ignored --quiet
    run.model.bert.save_pretrained(output)
    head = {name: tensor for name, tensor in run.model.state_dict().items() if not name.startswith("bert.")}
    save_tensors(output / "audiotok_head.safetensors", head)
    for name in (PREPROCESSING, CLASSES):
        shutil.copyfile(run_dir / name, output / name)
    write_json(output / "audiotok.json", run.record.model_dump(mode="json"))
    return ExportResult(run_dir, output, sorted(path.name for path in output.iterdir()))
