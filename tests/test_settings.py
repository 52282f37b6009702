from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import load_settings


def test_defaults_follow_the_seed_and_derive_paths(tmp_path):
    settings = load_settings()
    assert (settings.audio.sample_rate, settings.audio.n_fft, settings.audio.hop_length) == (
        22050,
        1024,
        512,
    )
    assert settings.audio.n_mels == 64
    assert settings.store_path == tmp_path / "data" / "audiotok.zarr"
    assert settings.audio.max_frames == 431  # 1 + 220500 // 512: a full 10 s clip


def test_precedence_cli_over_env_over_dotenv_over_default(monkeypatch):
    Path(".env").write_text("AUDIOTOK_AUDIO__N_MELS=32\nAUDIOTOK_VOCAB__NITER=7\nAUDIOTOK_SEED=3\n")
    monkeypatch.setenv("AUDIOTOK_AUDIO__N_MELS", "48")
    settings = load_settings({"seed": 9})
    assert settings.audio.n_mels == 48  # env beats .env
    assert settings.vocab.niter == 7  # .env beats default
    assert settings.seed == 9  # cli beats .env


def test_unset_cli_flags_do_not_mask_env(monkeypatch):
    monkeypatch.setenv("AUDIOTOK_VOCAB__N_CLUSTERS", "32")
    assert load_settings({"vocab": {"n_clusters": None}}).vocab.n_clusters == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate: Input should be a finite number"),
        ({"audio": {"clip_seconds": 1e7}}, "audio.clip_seconds: Input should be less than or equal to 600"),
        ({"audio": {"clip_seconds": float("nan")}}, "audio.clip_seconds: Input should be a finite number"),
        ({"audio": {"hop_length": 2048}}, "hop_length 2048 > n_fft 1024"),
        ({"audio": {"n_mels": 600}}, "n_mels 600 exceeds the 513 FFT bins"),
        ({"split": {"val_ratio": 1.5}}, "split.val_ratio"),
        ({"split": {"val_ratio": 0}}, "split.val_ratio"),
    ],
)
def test_inconsistent_settings_are_rejected_in_one_line(overrides, message):
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_reports_bad_settings_with_exit_3(cli, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_MODEL__VOCAB_SIZE", "100")
    result = cli("train", "--k", "64")
    assert result.exit_code == 3
    assert "model.vocab_size 100 != --k 64" in result.stderr


def test_vocab_size_is_checked_against_effective_values_and_only_by_train(cli, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_MODEL__VOCAB_SIZE", "16")
    assert cli("config").exit_code == 0  # commands without a model never look at it
    assert cli("info").exit_code == 4  # (no store yet), not a settings error
    assert cli("train", "--k", "16").exit_code == 4  # agrees with --k: on to the missing store


@pytest.mark.parametrize(("where", "place"), [("env", "the environment"), (".env", ".env")])
def test_a_nested_group_that_is_not_json_is_one_line(cli, monkeypatch, where, place):
    if where == "env":
        monkeypatch.setenv("AUDIOTOK_AUDIO", "not-json")
    else:
        Path(".env").write_text("AUDIOTOK_AUDIO=not-json\n")
    result = cli("config")
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"invalid setting audio (from AUDIOTOK_AUDIO in {place}): not a JSON object" in result.stderr
    assert "AUDIOTOK_AUDIO__NAME=VALUE" in result.stderr


def test_errors_say_where_a_bad_value_came_from(cli, monkeypatch):
    Path(".env").write_text("AUDIOTOK_VOCAB__NITER=0\n")
    from_file = cli("config")
    assert from_file.exit_code == 3 and "vocab.niter (from AUDIOTOK_VOCAB__NITER in .env)" in from_file.stderr
    monkeypatch.setenv("AUDIOTOK_AUDIO__N_MEL", "32")  # a typo
    typo = cli("config")
    assert (
        typo.exit_code == 3
        and "audio.n_mel" in typo.stderr
        and "Extra inputs are not permitted" in typo.stderr
    )


def test_config_shows_where_each_value_came_from(cli, monkeypatch):
    Path(".env").write_text("AUDIOTOK_VOCAB__NITER=7\n")
    monkeypatch.setenv("AUDIOTOK_AUDIO__N_MELS", "48")
    result = cli("--seed", "5", "config", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["audio.n_mels"]["source"] == "env" and rows["audio.n_mels"]["value"] == 48
    assert rows["vocab.niter"]["source"] == ".env" and rows["vocab.niter"]["value"] == 7
    assert rows["seed"]["source"] == "cli" and rows["seed"]["value"] == 5
    assert rows["audio.n_fft"]["source"] == "default"
    assert rows["vocab.n_clusters"]["env"] == "AUDIOTOK_VOCAB__N_CLUSTERS"


def test_env_example_lists_every_setting():
    from audiotok_cli.settings import Settings, flatten

    example = (Path(__file__).parents[1] / ".env.example").read_text()
    for name in flatten(Settings().model_dump()):
        assert "AUDIOTOK_" + name.replace(".", "__").upper() in example, name


@pytest.mark.parametrize(
    ("variable", "value", "group", "field", "expected"),
    [
        ("AUDIOTOK_VOCAB__TRANSFORMS", "clip-mean,deltas", "vocab", "transforms", ("clip-mean", "deltas")),
        ("AUDIOTOK_SPLIT__TRAIN_SOURCES", "bal_train", "split", "train_sources", ("bal_train",)),
        ("AUDIOTOK_SPLIT__TEST_GROUPS", '["s1", "s2"]', "split", "test_groups", ("s1", "s2")),
        ("AUDIOTOK_MODEL__CNN_CHANNELS", "8,16", "model", "cnn_channels", (8, 16)),
        ("AUDIOTOK_MODEL__CNN_CHANNELS", "[8, 16]", "model", "cnn_channels", (8, 16)),
    ],
)
def test_list_settings_come_from_the_environment_as_a_comma_list_or_json(
    monkeypatch, variable, value, group, field, expected
):
    monkeypatch.setenv(variable, value)
    assert getattr(getattr(load_settings({}), group), field) == expected


def test_layers_read_one_or_several_and_one_is_written_as_before(monkeypatch):
    """Records written before `--layer` repeated hold a bare number; they must read, and dump, the
    same (a run's identity is its settings' dump)."""
    from audiotok_cli.settings import AudioSettings

    assert AudioSettings.model_validate({"layer": 6}).layer == (6,)
    assert (
        AudioSettings(layer=6).model_dump()["layer"] == 6
        and '"layer":-1' in AudioSettings().model_dump_json()
    )
    assert AudioSettings(layer=[2, 4]).model_dump()["layer"] == [2, 4]
    monkeypatch.setenv("AUDIOTOK_AUDIO__LAYER", "2,4")
    assert load_settings().audio.layer == (2, 4)
    monkeypatch.setenv("AUDIOTOK_AUDIO__LAYER", "3,3")
    with pytest.raises(SettingsError, match=r"layers \[3, 3\]: one or more distinct layers"):
        load_settings()


def test_a_dotenv_line_that_is_not_name_equals_value_is_one_line_naming_the_file_and_line(cli):
    Path(".env").write_text("AUDIOTOK_SEED=3\n# a comment\nAUDIOTOK_VOCAB__NITER 7\n")
    result = cli("config")
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        f"error: {Path('.env').resolve()} line 3 is not NAME=VALUE ('AUDIOTOK_VOCAB__NITER 7'); fix it or "
        "comment it out with #"
    ]
    assert "python-dotenv" not in result.output
