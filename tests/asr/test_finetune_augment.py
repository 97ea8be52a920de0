"""Fine-tuning augmentation: speed perturbation physics, reproducibility, training sets only."""

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_csv

from d2v_speech.asr.augment import FinetuneAugmenter
from d2v_speech.asr.data import AudioTooShortError, load_asr_dataset
from d2v_speech.augment import WaveformAugmenter
from d2v_speech.data.pipelines import normalize_waveform

NO_PLACEHOLDERS = {"data_root": "", "ll_root": ""}
RATE = 16000


def peak_frequency(wav: torch.Tensor) -> float:
    """Frequency (Hz) of the largest bin of a Hann-windowed spectrum."""
    samples = wav.numpy().astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * RATE / len(samples)


@pytest.mark.parametrize("speed", [90, 95, 105, 110])
def test_speed_scales_duration_and_pitch(speed):
    tone = torch.sin(2 * torch.pi * 440.0 * torch.arange(2 * RATE) / RATE)
    out = FinetuneAugmenter(speeds=[speed])(tone, "utt")
    # speed p: p % as long a clip is played in (100 / p) of the time, every frequency x p / 100
    assert abs(out.shape[0] - 2 * RATE * 100 / speed) <= 1
    assert peak_frequency(out) == pytest.approx(440.0 * speed / 100, abs=1.0)
    assert out.dtype == torch.float32


def test_speed_100_and_no_augmenter_is_the_identity():
    wav = torch.randn(4000)
    assert torch.equal(FinetuneAugmenter(speeds=[100])(wav, "a"), wav)


def test_draws_depend_only_on_seed_utterance_and_epoch():
    wav = torch.randn(8000)
    first, second = FinetuneAugmenter(seed=5), FinetuneAugmenter(seed=5)
    lengths = set()
    for epoch in range(12):
        first.epoch = second.epoch = epoch
        out = first(wav, "spk-1-0001")
        assert torch.equal(out, second(wav, "spk-1-0001"))
        lengths.add(out.shape[0])
    # five speeds, drawn anew each epoch: over 12 epochs more than one is used
    assert len(lengths) > 1
    chosen = {FinetuneAugmenter(seed=s)(wav, "spk-1-0001").shape[0] for s in range(20)}
    # torchaudio's resampler keeps ceil(S * new / orig) samples
    assert chosen <= {math.ceil(8000 * 100 / p) for p in (90, 95, 100, 105, 110)}


def test_waveform_augmenter_runs_after_the_speed_change():
    wav = torch.randn(16000)
    noise_only = WaveformAugmenter(noise_prob=1.0, reverb_prob=0.0, background_prob=0.0, seed=1)
    out = FinetuneAugmenter(speeds=[110], waveform_augmenter=noise_only)(wav, "u")
    slowed = FinetuneAugmenter(speeds=[110])(wav, "u")
    assert out.shape == slowed.shape
    assert not torch.allclose(out, slowed)
    # additive noise: what remains after removing the speed-changed signal is not correlated with it
    residual = (out - slowed).numpy()
    correlation = np.corrcoef(residual, slowed.numpy())[0, 1]
    assert abs(correlation) < 0.1


def test_invalid_speeds_are_refused():
    with pytest.raises(ValueError, match="speeds"):
        FinetuneAugmenter(speeds=[])
    with pytest.raises(ValueError, match="speeds"):
        FinetuneAugmenter(speeds=[0, 100])


def test_dataset_augments_before_normalising(short_set, letters):
    augmenter = FinetuneAugmenter(speeds=[90], seed=2)
    plain = load_asr_dataset([short_set], NO_PLACEHOLDERS, letters, True, 400)
    augmented = load_asr_dataset(
        [short_set], NO_PLACEHOLDERS, letters, True, 400, augmenter=augmenter
    )
    with open(short_set, encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    raw = torch.from_numpy(sf.read(row["wav"], dtype="float32")[0])
    expected = normalize_waveform(augmenter(raw, row["ID"]))
    assert torch.allclose(augmented[0]["sig"], expected, atol=1e-6)
    assert augmented[0]["sig"].shape[0] == math.ceil(raw.shape[0] * 100 / 90)
    assert plain[0]["sig"].shape[0] == raw.shape[0]
    assert augmented[0]["text"] == plain[0]["text"]


def test_clip_made_too_short_by_speeding_up_is_named(tmp_path, letters):
    # 420 samples pass the receptive-field check (400) as recorded, not after a 1.1x speed-up
    path = tmp_path / "edge.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 420), RATE, subtype="PCM_16")
    rows = [{"ID": "edge-1", "duration": 420 / RATE, "wav": str(path), "spk_id": 1, "wrd": "A"}]
    csv_path = write_csv(tmp_path / "edge.csv", rows)
    dataset = load_asr_dataset(
        [csv_path], NO_PLACEHOLDERS, letters, True, 400, augmenter=FinetuneAugmenter(speeds=[110])
    )
    with pytest.raises(AudioTooShortError, match=r"edge-1 .*after augmentation"):
        dataset[0]


def test_each_training_epoch_reaches_the_augmenter():
    from types import SimpleNamespace

    import speechbrain as sb

    from d2v_speech.training.finetune_brain import FineTuneBrain
    from d2v_speech.training.recipe_brain import RecipeBrain

    augmenter = FinetuneAugmenter()
    brain = SimpleNamespace(
        hparams=SimpleNamespace(train_augmenter=augmenter),
        epoch_following_hparams=FineTuneBrain.epoch_following_hparams,
    )
    RecipeBrain.on_stage_start(brain, sb.Stage.TRAIN, 7)
    assert augmenter.epoch == 7
    # validation and test stages leave the training draws alone
    RecipeBrain.on_stage_start(brain, sb.Stage.VALID, 8)
    assert augmenter.epoch == 7
