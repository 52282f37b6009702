"""`featurize --encoder NAME_OR_PATH --layer L`: a pretrained transformers encoder's hidden states as
the frames, end to end. Tiny randomly initialised encoders saved with `save_pretrained` stand in for
pretrained ones (nothing downloads here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTModel,
    HubertConfig,
    HubertModel,
    Wav2Vec2FeatureExtractor,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from audiotok_cli.audio.encoder import EncoderFrames
from audiotok_cli.audio.logmel import decode
from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import Pick, Store
from store_helpers import printed_repairs, run_printed
from training_helpers import assert_predict_scores_the_store_tokens


def _save(folder: Path, model, extractor) -> str:
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return str(folder)


def _hubert(folder: Path, seed: int = 0) -> str:
    """A 2-layer HuBERT of 32 hidden units (its convolutions stride 320 samples: 50 frames/s at 16 kHz)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = HubertModel(
            HubertConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            )
        )  # fmt: skip
    return _save(folder, model, Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True))


@pytest.fixture(scope="module")
def hubert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _hubert(tmp_path_factory.mktemp("hubert") / "tiny-hubert")


def _hidden_states(folder: str, samples: np.ndarray, layer: int) -> np.ndarray:
    """What transformers itself gives for one clip, the reference the store is checked against."""
    model = HubertModel.from_pretrained(folder).eval()
    inputs = Wav2Vec2FeatureExtractor.from_pretrained(folder)(
        samples, sampling_rate=16000, return_tensors="pt"
    )
    with torch.no_grad():
        return model(inputs.input_values, output_hidden_states=True).hidden_states[layer][0].numpy()


def test_encoder_features_are_its_hidden_states_and_every_stage_reads_them(cli, featurized, hubert):
    done = cli("featurize", "--encoder", hubert, "--layer", "1", "--name", "hub")
    assert done.exit_code == 0, done.output
    said = " ".join(done.stdout.split())
    assert "features 'hub': 48 clips featurized" in said
    assert f"(hubert {hubert} layer 1 of 2: 32 values a frame, 50 frames/s at 16000 Hz)" in said
    store = Store.open(featurized.store_path)
    features = store.features("hub")
    record = features.record
    assert record.audio.sample_rate == 16000 and record.encoder.hidden_size == 32
    assert record.encoder.layer == (1,)
    assert features.data.shape[1:] == (record.max_frames, 32) and record.max_frames == 10 * 50 + 1

    file = sorted((featurized.audio_dir / "eval").rglob("*.flac"))[0]
    row = store.row_of[file.stem]
    expected = _hidden_states(hubert, decode(file, 16000), layer=1)
    stored = features.data[row, : features.all_lengths()[row]]
    assert stored.shape == expected.shape == (4 * 50 - 1, 32)  # 4 s clips; HuBERT's convolutions drop one
    assert np.allclose(stored, expected, atol=2e-3 * np.abs(expected).max())  # float16 in the store

    assert cli("vocab", "--features", "hub", "--k", "8").exit_code == 0
    assert cli("tokenize", "--vocab", "hub-k8").exit_code == 0
    assert store.vocab_record("hub-k8").encoder == record.encoder
    trained = cli("train", "--model", "simple", "--vocab", "hub-k8", "--epochs", "2", "--embed-dim", "8")
    assert trained.exit_code == 0, trained.output
    run_dir = featurized.runs_dir / "simple-hub-k8"
    assert_predict_scores_the_store_tokens(cli, run_dir, store.tokens(Pick("hub-k8")), store, file)
    out = featurized.runs_dir.parent / "hub.parquet"
    exported = cli("export-tokens", str(out), "--vocab", "hub-k8")
    assert exported.exit_code == 0 and "48 clips" in exported.stdout, exported.output

    frames = cli("train", "--model", "baseline", "--input", "frames", "--features", "hub", "--epochs", "1")
    assert frames.exit_code == 0, frames.output
    assert (
        json.loads((featurized.runs_dir / "baseline-hub" / "run.json").read_text())["model"]["n_mels"] == 32
    )
    scored = cli("eval", "--run", "baseline-hub")
    assert scored.exit_code == 0, scored.output
    info = cli("info")
    assert "hubert" in info.stdout and "32 values a frame" in " ".join(info.stdout.split())


def test_verify_names_the_encoder_that_remakes_a_damaged_shard(cli, featurized, hubert):
    assert cli("featurize", "--encoder", hubert, "--layer", "1", "--name", "hub").exit_code == 0
    pristine = Store.open(featurized.store_path).features("hub").data[:]
    (featurized.store_path / "features" / "hub" / "data" / "c" / "0" / "0" / "0").unlink()
    found = cli("verify")
    assert found.exit_code == 5
    command = f"audiotok verify --repair; audiotok featurize --name hub --encoder {hubert} --layer 1"
    assert printed_repairs(found.stdout) == [command]
    run_printed(cli, command)  # as verify said, word for word
    assert np.array_equal(Store.open(featurized.store_path).features("hub").data[:], pristine)


def test_several_layers_sit_side_by_side_and_pq_gives_each_its_codebook(cli, featurized, hubert):
    """DASB's multi-layer units: `--layer 0 --layer 2` keeps both layers' states in each frame, and
    `vocab --quantizer pq:2` then quantizes each layer with its own codebook."""
    done = cli("featurize", "--encoder", hubert, "--layer", "0", "--layer", "-1", "--name", "both")
    assert done.exit_code == 0, done.output
    assert f"(hubert {hubert} layers 0, 2 of 2: 64 values a frame" in " ".join(done.stdout.split())
    store = Store.open(featurized.store_path)
    features = store.features("both")
    assert features.record.encoder.layer == (0, 2) and features.data.shape[2] == 64
    file = sorted((featurized.audio_dir / "eval").rglob("*.flac"))[0]
    row, samples = store.row_of[file.stem], decode(file, 16000)
    expected = np.concatenate([_hidden_states(hubert, samples, layer) for layer in (0, 2)], axis=1)
    stored = features.data[row, : features.all_lengths()[row]]
    assert stored.shape == expected.shape == (4 * 50 - 1, 64)
    assert np.allclose(stored, expected, atol=2e-3 * np.abs(expected).max())

    made = cli("vocab", "--features", "both", "--k", "8", "--quantizer", "pq:2")
    assert made.exit_code == 0, made.output
    books = store.vocab(Pick("both-pq2x8")).centroids
    assert books.shape == (2, 8, 32)  # one codebook a layer, each over that layer's 32 values
    assert cli("tokenize", "--vocab", "both-pq2x8").exit_code == 0

    (featurized.store_path / "features" / "both" / "data" / "c" / "0" / "0" / "0").unlink()
    found = cli("verify")
    remade = f"audiotok featurize --name both --encoder {hubert} --layer 0 --layer -1"
    command = f"audiotok verify --repair; {remade}"
    assert found.exit_code == 5 and command in printed_repairs(found.stdout)
    run_printed(cli, command)
    assert np.array_equal(Store.open(featurized.store_path).features("both").data[:], features.data[:])

    twice = cli("featurize", "--encoder", hubert, "--layer", "2", "--layer", "-1", "--name", "twice")
    assert twice.exit_code == 3 and "layers [2, -1] name layer 2 twice (-1 is the last)" in twice.stderr


def test_encoder_features_do_not_depend_on_the_worker_count(cli, featurized, hubert, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_FEATURES__CLIPS_PER_SHARD", "16")
    monkeypatch.setenv("AUDIOTOK_FEATURES__CLIPS_PER_CHUNK", "8")
    assert cli("featurize", "--encoder", hubert, "--name", "one").exit_code == 0
    assert cli("featurize", "--encoder", hubert, "--name", "two", "--workers", "2").exit_code == 0
    store = Store.open(featurized.store_path)
    one, two = store.features("one"), store.features("two")
    assert np.array_equal(one.all_lengths(), two.all_lengths()) and (one.all_lengths() > 0).all()
    assert np.array_equal(one.data[:], two.data[:])


def test_another_encoder_under_the_same_name_is_refused(cli, featurized, tmp_path):
    folder = _hubert(tmp_path / "encoder", seed=0)
    assert cli("featurize", "--encoder", folder, "--name", "hub").exit_code == 0
    assert (
        cli(
            "train", "--model", "baseline", "--input", "frames", "--features", "hub", "--epochs", "1"
        ).exit_code
        == 0
    )
    _hubert(tmp_path / "encoder", seed=1)  # other weights in the same folder

    again = cli("featurize", "--encoder", folder, "--name", "hub")
    assert again.exit_code == 6 and "encoder digest" in again.stderr and "--overwrite" in again.stderr
    file = sorted((featurized.audio_dir / "eval").rglob("*.flac"))[0]
    predicted = cli("predict", "baseline-hub", str(file))
    assert predicted.exit_code == 6
    assert (
        f"encoder {folder!r} is not the one run" in predicted.stderr
        and "put that one back" in predicted.stderr
    )

    layer = cli("featurize", "--encoder", folder, "--layer", "5", "--name", "deep")
    assert layer.exit_code == 3 and "has hidden states 0 (its input embeddings) to 2" in layer.stderr
    missing = cli("featurize", "--encoder", str(tmp_path / "nowhere"), "--name", "none")
    assert (
        missing.exit_code == 3
        and "cannot load encoder" in missing.stderr
        and "save_pretrained" in missing.stderr
    )
    assert "Traceback" not in missing.output


@pytest.mark.filterwarnings("ignore:At least one mel filter")  # AST's default filterbank, not ours
def test_whisper_frames_are_cut_back_to_the_clip_and_patch_encoders_are_refused(tmp_path):
    """Whisper pads every input to 30 s: a 4 s clip keeps the 200 frames (50/s) that cover it. AST's
    states are spectrogram patches, not time steps: refused in one line."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        whisper = WhisperModel(
            WhisperConfig(
                d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            )
        )  # fmt: skip
        ast = ASTModel(
            ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        )
    folder = _save(tmp_path / "whisper", whisper, WhisperFeatureExtractor())
    frames_of = EncoderFrames(AudioSettings(encoder=folder, clip_seconds=8))
    assert (frames_of.sample_rate, frames_of.frames_per_second, frames_of.dim) == (16000, 50.0, 32)
    samples = np.random.default_rng(0).normal(size=4 * 16000).astype(np.float32) * 0.1
    frames = frames_of(samples)
    inputs = WhisperFeatureExtractor()(samples, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        full = whisper.get_encoder()(inputs.input_features).last_hidden_state[0].numpy()
    assert frames.shape == (200, 32) and np.allclose(frames, full[:200], atol=1e-5)
    with pytest.raises(SettingsError, match="lower --clip-seconds to that"):
        EncoderFrames(AudioSettings(encoder=folder, clip_seconds=40))

    patches = _save(tmp_path / "ast", ast, ASTFeatureExtractor())
    with pytest.raises(SettingsError, match="they do not run along time"):
        EncoderFrames(AudioSettings(encoder=patches))


def test_equal_length_clips_share_a_forward_and_keep_their_order(hubert):
    """The GPU path: clips grouped by length, `batch` a forward; each clip's frames are its own."""
    frames_of = EncoderFrames(AudioSettings(encoder=hubert))
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=seconds * 16000).astype(np.float32) * 0.1 for seconds in (2, 1, 2, 2, 1)]
    names = [f"clip{i}" for i in range(len(clips))]
    one_at_a_time = frames_of.many(clips, names)
    frames_of.batch = 2
    batched = frames_of.many(clips, names)
    for alone, together in zip(one_at_a_time, batched, strict=True):
        assert alone.shape == together.shape and np.allclose(alone, together, atol=1e-5)
    assert [len(f) for f in batched] == [99, 49, 99, 99, 49]
    too_short = frames_of.many([np.zeros(100, np.float32), clips[1]], ["tiny", "fine"])
    assert "tiny (100 samples at 16000 Hz) cannot go through the encoder" in str(too_short[0])
    assert np.allclose(too_short[1], one_at_a_time[1], atol=1e-5)
