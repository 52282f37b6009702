"""Every chunk carries a checksum: a flipped bit, a truncated shard or a shard file gone while its
clips are marked done is refused by any reader in one line naming the shard and the fix, never read
as data or as padding."""

from __future__ import annotations

import pytest

from audiotok_cli.errors import DataError
from audiotok_cli.store import Pick, Store


def _shard_file(settings, group: str):
    files = sorted((settings.store_path / group / "data" / "c").rglob("*"))
    return next(path for path in files if path.is_file())


def test_a_flipped_byte_inside_a_shard_is_named_by_every_reader(cli, tokenized):
    path = _shard_file(tokenized, "features/logmel")
    payload = bytearray(path.read_bytes())
    for offset in range(len(payload) // 3, len(payload) // 3 + 64):  # inside an inner chunk
        payload[offset] ^= 0xFF
    path.write_bytes(bytes(payload))
    for command in (["vocab", "--k", "8"], ["train", "--model", "baseline", "--epochs", "1"]):
        result = cli(*command)
        assert result.exit_code == 5, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert (
            "shard 0 of features/logmel (rows 0-47)" in line
            and "is damaged (Stored and computed checksum" in line
        )
        assert "make it again: `audiotok verify --repair; audiotok featurize --name logmel`" in line


def test_a_shard_file_gone_while_its_clips_are_done_is_never_read_as_padding(cli, tokenized):
    _shard_file(tokenized, "tokens/logmel-k16").unlink()
    tokens = Store.open(tokenized.store_path).tokens(Pick("logmel-k16"))
    with pytest.raises(DataError, match="its data file is missing, but its clips are marked done"):
        tokens.read_shard(0)
    for command in (["train", "--model", "simple", "--epochs", "1"], ["export-tokens", "out.parquet"]):
        result = cli(*command)
        assert result.exit_code == 5, result.output
        assert (
            "shard 0 of tokens/logmel-k16" in result.stderr
            and "`audiotok verify --repair; audiotok tokenize --vocab logmel-k16`" in result.stderr
        )


def test_a_truncated_shard_is_refused(tokenized):
    path = _shard_file(tokenized, "features/logmel")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    features = Store.open(tokenized.store_path).features()
    with pytest.raises(DataError, match=r"shard 0 of features/logmel .* is damaged"):
        features.read_shard(0)
