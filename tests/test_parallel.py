"""featurize and tokenize on several worker processes: the same store to the bit as one process."""

from __future__ import annotations

import numpy as np

from audiotok_cli.settings import load_settings
from audiotok_cli.stages.expand import expand
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.stages.split import split
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import Store


def test_workers_write_the_same_store_to_the_bit_as_one_process(small_mirrors):
    settings = load_settings(
        {
            "paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir},
            "features": {"clips_per_shard": 8, "clips_per_chunk": 4},  # 6 shards to share out
            "vocab": {"n_clusters": 16},
        }
    )
    expand(settings.resolved_paths)
    split(settings.store_path, settings.split, settings.seed)
    for name, workers in (("one", 1), ("two", 2)):
        layout = settings.features.model_copy(update={"name": name})
        result = featurize(settings.store_path, settings.audio_dir, settings.audio, layout, workers=workers)
        assert result.clips_done == 48 and result.shards_written == 6
    store = Store.open(settings.store_path)
    one, two = store.features("one"), store.features("two")
    assert np.array_equal(one.all_lengths(), two.all_lengths()) and (one.all_lengths() > 0).all()
    assert np.array_equal(one.data[:], two.data[:])

    build_vocab(settings.store_path, settings.vocab, settings.seed, features="one")
    assert tokenize(settings.store_path, workers=1).clips_done == 48
    alone = Store.open(settings.store_path).tokens().data[:]
    assert tokenize(settings.store_path, overwrite=True, workers=2).clips_done == 48
    tokens = Store.open(settings.store_path).tokens()
    assert np.array_equal(tokens.data[:], alone) and np.array_equal(tokens.all_lengths(), one.all_lengths())
