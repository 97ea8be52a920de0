"""data2vec-aqc on the 2.0 engine: the engine's loss untouched, the student on the augmented view,
and the contrastive terms against a per-frame Python loop of the InfoNCE formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_data2vec2 import tiny_config

from d2v_speech.nn.conv_decoder import ConvDecoder1d
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.aqc2 import AQC2Objective, contrastive_frames
from d2v_speech.ssl.block_masker import BlockMasker
from d2v_speech.ssl.cluster_scaler import ClusterScaler
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec2 import Data2Vec2Objective
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.quantizer_settings import QuantizerSettings
from d2v_speech.ssl.target_builder import TopKTargetBuilder

ATOL = 1e-5


def engine_parts():
    return {
        "masker": BlockMasker(num_clones=4),
        "teacher": EMATeacherSettings(0.9, 0.99, 10, copy_patterns=()),
        "target_builder": TopKTargetBuilder(top_k=2),
        "decoder": ConvDecoder1d(16, decoder_dim=8, kernel=5, num_layers=2, groups=4),
        "decoder_input_dropout": 0.0,
        "mask_noise_std": 0.0,
    }


def build_aqc2(seed=0, weights=(0.5, 0.5), diversity=0.1, penalty=1.0, clones=2, frames=None):
    torch.manual_seed(seed)
    model = Data2VecAudioModel(tiny_config(False))
    return AQC2Objective(
        model,
        **engine_parts(),
        quantizer=QuantizerSettings(num_vars=8, groups=2, vq_dim=12),
        negative_sampler=NegativeSampler(num_negatives=5),
        cluster_scaler=ClusterScaler(cluster_factor=4, scale_factor=0.3),
        contrastive_head=CrossContrastiveHead(weights=weights, logit_temperature=0.1),
        contrastive_clones=clones,
        contrastive_frames=frames,
        diversity_weight=diversity,
        feature_penalty_weight=penalty,
    )


def test_contrastive_frames_pick_masked_frames_of_the_first_clones():
    mask = torch.zeros(6, 20, dtype=torch.bool)
    mask[:, ::2] = True
    mask[4, 1] = True  # 11 masked in one row: the count is equalised to 10
    rows, frames = contrastive_frames(mask, num_clones=3, clones=2, max_frames=None)
    assert rows.tolist() == [0, 1, 3, 4]
    assert frames.shape == (4, 10)
    assert all(mask[r, f].all() for r, f in zip(rows.tolist(), frames))
    assert bool((frames[:, 1:] > frames[:, :-1]).all())  # time order
    _, capped = contrastive_frames(mask, 3, 2, max_frames=4)
    assert capped.shape == (4, 4)
    with pytest.raises(ValueError, match=">= 2 masked frames"):
        contrastive_frames(torch.eye(3, dtype=torch.bool), 3, 1, None)


def test_without_aqc_weights_and_augmentation_the_loss_is_the_engines():
    aqc = build_aqc2(weights=(0.0, 0.0), diversity=0.0, penalty=0.0)
    torch.manual_seed(0)
    engine = Data2Vec2Objective(Data2VecAudioModel(tiny_config(False)), **engine_parts())
    engine.load_state_dict(aqc.state_dict(), strict=False)
    wav = torch.randn(2, 3000)
    frames = aqc.model.config.num_frames(3000)
    mask = aqc.masker(torch.tensor([frames] * 2), frames, torch.Generator().manual_seed(0))
    assert torch.allclose(aqc(wav, mask=mask)["loss"], engine(wav, mask=mask)["loss"], atol=ATOL)


def test_student_sees_the_augmented_view_and_the_teacher_the_clean_one():
    aqc = build_aqc2()
    torch.manual_seed(1)
    wav, wav_aug = torch.randn(2, 3000), torch.randn(2, 3000)
    frames = aqc.model.config.num_frames(3000)
    mask = aqc.masker(torch.tensor([frames] * 2), frames, torch.Generator().manual_seed(0))
    out = aqc(wav, wav_aug=wav_aug, mask=mask)
    _, _, local_clean, _ = aqc.frontend(wav, None)
    _, _, local_aug, _ = aqc.frontend(wav_aug, None)
    predictions = aqc.student_predictions(local_aug, None, mask, None)
    targets = aqc.teacher_targets(local_clean, None)
    expected = aqc.regression_terms(predictions, targets, mask)["loss_regression"]
    assert torch.allclose(out["loss_regression"], expected, atol=ATOL)
    swapped = aqc.regression_terms(
        aqc.student_predictions(local_clean, None, mask, None), targets, mask
    )["loss_regression"]
    assert not torch.allclose(out["loss_regression"], swapped, atol=1e-3)


def naive_info_nce(anchor, candidates, neg_index, same, temperature, scale):
    """Sum over frames of -log softmax(positive) with same-cluster negatives' exp x scale."""
    total = 0.0
    rows, frames, _ = anchor.shape
    for b in range(rows):
        for m in range(frames):
            logits = [F.cosine_similarity(anchor[b, m], candidates[b, m], dim=0) / temperature]
            for n in range(neg_index.shape[0]):
                negative = candidates[b, neg_index[n, b, m]]
                logit = F.cosine_similarity(anchor[b, m], negative, dim=0) / temperature
                if same[n, b, m]:
                    logit = logit + math.log(scale)
                if not torch.equal(negative, candidates[b, m]):  # fork: a duplicate is no negative
                    logits.append(logit)
            total = total - torch.log_softmax(torch.stack(logits), 0)[0]
    return total


def test_contrastive_terms_equal_a_per_frame_loop(monkeypatch):
    aqc = build_aqc2()
    calls = []
    original = CrossContrastiveHead.info_nce

    def spy(self, anchor, candidates, neg_index, same_cluster, scaler):
        calls.append((anchor, candidates, neg_index, same_cluster))
        return original(self, anchor, candidates, neg_index, same_cluster, scaler)

    monkeypatch.setattr(CrossContrastiveHead, "info_nce", spy)
    torch.manual_seed(2)
    wav = torch.randn(2, 3000)
    out = aqc(wav, wav_aug=wav + 0.1 * torch.randn(2, 3000))
    assert len(calls) == 2
    count = calls[0][0].shape[0] * calls[0][0].shape[1]
    for (anchor, candidates, neg_index, same), key in zip(
        calls, ("loss_contrastive_student", "loss_contrastive_teacher")
    ):
        expected = naive_info_nce(anchor, candidates, neg_index, same, 0.1, 0.3) / count
        assert torch.allclose(out[key], expected.detach(), atol=ATOL)
    loss_s, loss_t = out["loss_contrastive_student"], out["loss_contrastive_teacher"]
    total = (
        out["loss_regression"]
        + 0.5 * loss_s
        + 0.5 * loss_t
        + 0.1 * out["diversity_loss"]
        + 1.0 * out["feature_penalty"]
    )
    assert torch.allclose(out["loss"].detach(), total, atol=ATOL)


def test_gradients_reach_the_aqc_heads_and_padded_batches_run():
    aqc = build_aqc2(frames=4)
    wav = torch.randn(2, 3000)
    out = aqc(wav, torch.tensor([3000, 2200]), wav_aug=wav * 0.5)
    out["loss"].backward()
    for name in (
        "quantizer.weight_proj.weight",
        "project_q.weight",
        "contr_proj.weight",
        "decoder.proj.weight",
        "model.feature_extractor.conv_layers.0.conv.weight",
    ):
        assert dict(aqc.named_parameters())[name].grad.abs().sum() > 0, name
    assert {"quantizer.vars", "project_q.weight", "contr_proj.weight"} <= set(aqc.state_dict())
    aqc.after_optimizer_step(100)
    # the published schedule: max(start * decay ** updates, end)
    assert aqc.quantizer.temperature == pytest.approx(max(2.0 * 0.999995**100, 0.5))


def test_variance_floor_adds_the_clean_views_hinge():
    from d2v_speech.ssl.variance_floor import temporal_spread

    plain = build_aqc2(seed=3)
    floored = build_aqc2(seed=3)
    floored.variance_floor, floored.variance_weight = 4.0, 3.0
    wav = torch.randn(2, 3000)
    wav_aug = wav + 0.3 * torch.randn(2, 3000)
    frames = plain.model.config.num_frames(3000)
    mask = plain.masker(torch.tensor([frames] * 2), frames, torch.Generator().manual_seed(1))
    torch.manual_seed(5)  # the same Gumbel noise and negatives in both
    out_plain = plain(wav, wav_aug=wav_aug, mask=mask)
    torch.manual_seed(5)
    out_floor = floored(wav, wav_aug=wav_aug, mask=mask)
    assert "variance_hinge" not in out_plain
    clean_local = plain.frontend(wav, None)[2]
    hinge = (4.0 - temporal_spread(clean_local, None)).clamp_min(0).mean()
    assert torch.allclose(out_floor["variance_hinge"], hinge, atol=ATOL)
    assert torch.allclose(out_floor["loss"], out_plain["loss"] + 3.0 * hinge, atol=ATOL)
