"""Numbers that are numbers: audio whose features would not be finite is refused by featurize (never
marked done), and NaN frames already in a store (their checksums valid) are named by `verify` and
refused by `vocab` and `tokenize`, with the repair that makes them again."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store
from collections_kit import folders


def test_a_float_file_of_huge_samples_is_refused_by_featurize_naming_it(cli, tmp_path):
    root = folders(tmp_path / "sounds", per_class=4)
    huge = root / "bell" / "huge.wav"
    sf.write(huge, np.full(16000, 1e30, dtype=np.float32), 16000, subtype="FLOAT")  # finite, absurd
    assert cli("import", str(root)).exit_code == 0
    assert cli("split").exit_code == 0
    result = cli("featurize", "--clip-seconds", "1")
    assert result.exit_code == 5
    assert "huge.wav holds samples up to 1e+30, far beyond full scale (1.0)" in result.stderr
    assert "overflow" not in result.stderr.replace("would overflow", "")  # no numpy warning
    store = Store.open(load_settings().store_path)
    features = store.features()
    row = store.row_of["sounds/bell/huge.wav"]
    assert features.all_lengths()[row] == -1  # pending, never done
    lengths = features.all_lengths()
    data = features.data[:]
    assert np.isfinite(data[lengths > 0]).all()


def test_non_finite_frames_in_a_store_are_named_by_verify_and_refused_by_vocab_and_tokenize(cli, tmp_path):
    root = folders(tmp_path / "sounds", per_class=6)
    for command in (
        ["import", str(root)],
        ["split"],
        ["featurize", "--clip-seconds", "1"],
        ["vocab", "--k", "4"],
    ):
        assert cli(*command).exit_code == 0, command
    store = Store.open(load_settings().store_path)
    features = store.features()
    data, lengths = features.read_shard(0)
    data[2, 3, 5] = np.nan  # written as a store writes it: the checksums are valid
    features.write_shard(0, data, lengths)

    verified = cli("verify")
    assert verified.exit_code == 5
    said = " ".join((verified.stdout + verified.stderr).split())
    assert "rows 2 hold NaN or inf values" in said
    assert "audiotok verify --repair; audiotok featurize --name logmel" in said
    for command in (["vocab", "--k", "4", "--overwrite"], ["tokenize", "--k", "4"]):
        refused = cli(*command)
        assert refused.exit_code == 5, command
        assert "(rows 2 hold NaN or inf values); make it again" in " ".join(refused.stderr.split())

    assert cli("verify", "--repair").exit_code == 0  # marks the shard pending
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    assert cli("verify").exit_code == 0
    assert cli("tokenize", "--k", "4").exit_code == 0
