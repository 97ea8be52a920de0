"""Segments of two-channel 8 kHz recordings: SPHERE reads, shorten refusal, 16 kHz resampling."""

import csv

import numpy as np
import pytest
import torch
from scipy import signal

from d2v_speech.asr.data import load_asr_dataset
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.corpora.switchboard.segments import read_segment, to_model_rate
from d2v_speech.corpora.switchboard.sphere import SphereError, read_sphere_header, write_sphere
from d2v_speech.data.pipelines import AudioReadError

RATE = 8000


@pytest.fixture
def conversation(tmp_path):
    """A 2 s two-channel PCM SPHERE file: a 300 Hz tone on A, a 1 kHz tone on B."""
    time = np.arange(2 * RATE) / RATE
    samples = np.stack(
        [0.5 * np.sin(2 * np.pi * 300 * time), 0.25 * np.sin(2 * np.pi * 1000 * time)]
    )
    path = tmp_path / "sw02001.sph"
    write_sphere(path, samples.T, RATE, coding="PCM_16")
    return path, samples.T


def test_header_fields_as_written(conversation):
    header = read_sphere_header(conversation[0])
    assert header["sample_rate"] == RATE
    assert header["channel_count"] == 2
    assert header["sample_count"] == 2 * RATE
    assert header["sample_n_bytes"] == 2


def test_segment_is_the_written_channel_slice(conversation):
    path, samples = conversation
    for channel, index in (("A", 0), ("B", 1)):
        segment, rate = read_segment(str(path), 4000, 12000, channel)
        assert rate == RATE
        # 16-bit quantisation is the only difference
        np.testing.assert_allclose(segment, samples[4000:12000, index], atol=1 / 2**15)


def test_segment_errors_name_the_file(conversation):
    path = str(conversation[0])
    with pytest.raises(SphereError, match="runs past the end"):
        read_segment(path, 15000, 17000, "A")
    with pytest.raises(SphereError, match="channel 'C'"):
        read_segment(path, 0, 100, "C")
    with pytest.raises(SphereError, match="empty or negative"):
        read_segment(path, 100, 100, "A")


def test_shorten_sphere_is_refused_with_the_remedy(tmp_path):
    header = (
        b"NIST_1A\n   1024\nchannel_count -i 2\nsample_rate -i 8000\n"
        b"sample_coding -s26 ulaw,embedded-shorten-v2.00\nend_head\n"
    )
    path = tmp_path / "sw02002.sph"
    path.write_bytes(header.ljust(1024, b" ") + b"ajkq" * 500)
    with pytest.raises(SphereError) as error:
        read_segment(str(path), 0, 800, "A")
    message = str(error.value)
    assert str(path) in message and "shorten" in message and "sph2pipe" in message


def test_non_sphere_stereo_file_reads_too(tmp_path):
    import soundfile as sf

    samples = np.random.default_rng(0).uniform(-0.5, 0.5, (RATE, 2)).astype(np.float32)
    path = tmp_path / "conv.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")
    segment, rate = read_segment(str(path), 10, 110, "B")
    assert rate == RATE
    np.testing.assert_array_equal(segment, samples[10:110, 1])
    with pytest.raises(AudioReadError, match="missing.wav"):
        read_segment(str(tmp_path / "missing.wav"), 0, 10, "A")


def test_resampling_matches_a_polyphase_reference():
    time = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 440 * time) + 0.5 * np.sin(2 * np.pi * 2500 * time)
    ours = to_model_rate(torch.from_numpy(tone.astype(np.float32)), RATE).numpy()
    reference = signal.resample_poly(tone, 2, 1)
    assert ours.shape == reference.shape == (2 * RATE,)
    # two different anti-aliasing filters: compare away from the edges
    assert np.abs(ours[400:-400] - reference[400:-400]).max() < 0.02
    same = torch.randn(100)
    assert to_model_rate(same, 16000) is same


def test_asr_dataset_reads_segment_rows_at_16k(conversation, tmp_path):
    path, samples = conversation
    rows = [
        {"ID": "a1", "duration": "0.5", "wav": "$swbd_root/sw02001.sph", "start": "0",
         "stop": "4000", "channel": "A", "spk_id": "1", "wrd": "HELLO"},
        {"ID": "b1", "duration": "1.0", "wav": "$swbd_root/sw02001.sph", "start": "8000",
         "stop": "16000", "channel": "B", "spk_id": "2", "wrd": "YES"},
    ]  # fmt: skip
    csv_path = tmp_path / "swbd.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dataset = load_asr_dataset(
        [csv_path], {"swbd_root": str(tmp_path)}, LetterVocabulary(), normalize=False,
        min_samples=400,
    )  # fmt: skip
    item = dataset[1]
    assert item["text"] == "YES"
    reference = signal.resample_poly(samples[8000:16000, 1], 2, 1)
    assert item["sig"].shape == (16000,)
    assert np.abs(item["sig"].numpy()[400:-400] - reference[400:-400]).max() < 0.02
