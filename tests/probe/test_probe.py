"""Frozen-encoder probes: the weighted layer sum and heads against naive references, the speaker
split, and both probes end to end on a tiny random encoder."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.presets import load_model_config
from d2v_speech.probe.featurizer import LayerWeightedSum
from d2v_speech.probe.heads import CTCProbeHead, SpeakerProbeHead
from d2v_speech.probe.layer_cache import CachedUtterance, collate_layers
from d2v_speech.probe.probe_run import ProbeSettings, run_probes, split_by_speaker


def test_weighted_sum_is_softmax_weights_over_layer_normed_layers():
    torch.manual_seed(0)
    featurizer = LayerWeightedSum(3)
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    layers = torch.randn(2, 3, 7, 6) * 3 + 1
    weights = torch.exp(featurizer.weights) / torch.exp(featurizer.weights).sum()
    expected = torch.zeros(2, 7, 6)
    for k in range(3):
        x = layers[:, k]
        normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, False, keepdim=True) + 1e-5)
        expected += weights[k] * normed
    assert torch.allclose(featurizer(layers), expected, atol=1e-5)


def test_heads_score_an_utterance_the_same_alone_and_padded():
    torch.manual_seed(1)
    ctc, speaker = CTCProbeHead(6, 10, hidden=8).eval(), SpeakerProbeHead(6, 4)
    x = torch.randn(2, 12, 6)
    lengths = torch.tensor([12, 7])
    batch = ctc(x, lengths)
    alone = ctc(x[1:, :7], lengths[1:])
    assert torch.allclose(batch[1, :7], alone[0], atol=1e-5)
    expected = speaker.output(x[1, :7].mean(0))
    assert torch.allclose(speaker(x, lengths)[1], expected, atol=1e-5)


def test_collate_pads_along_time_and_keeps_labels():
    items = [CachedUtterance("a", torch.ones(3, 4, 2).half(), 0),
             CachedUtterance("b", torch.ones(3, 2, 2).half(), 1)]  # fmt: skip
    layers, lengths, labels = collate_layers(items)
    assert layers.shape == (2, 3, 4, 2) and lengths.tolist() == [4, 2] and labels == [0, 1]
    assert layers[1, :, 2:].abs().sum() == 0


def test_speaker_split_is_disjoint_covers_every_speaker_and_ignores_row_order():
    rows = {f"{s}-{k}": {"spk_id": s, "wav": f"{s}/{k}.flac"} for s in "xyz" for k in range(9)}
    train, test, speakers = split_by_speaker(rows, held_out_every=4, per_speaker=8)
    assert speakers == ["x", "y", "z"]
    assert not {u for u, *_ in train} & {u for u, *_ in test}
    assert len(train) == 3 * 6 and len(test) == 3 * 2
    assert {label for *_, label in test} == {0, 1, 2}
    shuffled = dict(reversed(list(rows.items())))
    assert split_by_speaker(shuffled, 4, 8)[1] == test


def test_both_probes_run_end_to_end_and_tell_two_clearly_different_speakers_apart(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for k in range(12):
        low = k % 2 == 0  # "speaker" 0: a 150 Hz buzz, speaker 1: white noise
        t = np.arange(16000) / 16000
        wav = np.sign(np.sin(2 * np.pi * 150 * t)) * 0.3 if low else rng.normal(0, 0.3, 16000)
        path = tmp_path / f"{k}.wav"
        sf.write(path, (wav + rng.normal(0, 0.01, 16000)).astype(np.float32), 16000)
        items.append((f"u{k}", str(path), 0 if low else 1))
    torch.manual_seed(0)
    encoder = Data2VecAudioModel(load_model_config("tiny"))
    encoder.requires_grad_(False)
    ctc_items = [(u, p, "A B" if label else "C") for u, p, label in items]
    settings = ProbeSettings(ctc_updates=4, ctc_batch_size=4, speaker_updates=60,
                             speaker_batch_size=4, speaker_lr=0.01)  # fmt: skip
    results = run_probes(encoder, True, ctc_items[:8], {"dev": ctc_items[8:]},
                         (items[:8], items[8:]), settings)  # fmt: skip
    assert set(results["ctc"]) == {"dev"} and results["ctc"]["dev"]["cer"] >= 0
    assert results["speaker"] == {"accuracy": 100.0, "speakers": 2, "test_utterances": 4}
    weights = results["speaker_layer_weights"]
    assert len(weights) == encoder.config.num_layers + 1 and abs(sum(weights) - 1) < 1e-3
    assert results["settings"]["ctc_updates"] == 4
