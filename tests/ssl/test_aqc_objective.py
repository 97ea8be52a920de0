"""The data2vec-aqc objective: wiring against a by-hand composition, gradients, precisions."""

import math

import pytest
import torch
import torch.nn.functional as F

import d2v_speech.ssl.cluster_scaler as cluster_scaler_module
import d2v_speech.ssl.negative_sampler as negative_sampler_module
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.aqc import AQCObjective

NUM_NEG = 5


def tiny_config(**overrides) -> EncoderConfig:
    values = {
        "conv_layers": [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)],
        "embed_dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "ffn_dim": 64,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "layerdrop": 0.0,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 5,
        "pos_conv_groups": 4,
        "layer_norm_first": True,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def make_objective(**kwargs) -> AQCObjective:
    torch.manual_seed(0)
    defaults = {
        "average_top_k_layers": 2,
        "latent_vars": 8,
        "latent_groups": 2,
        "final_dim": 16,
        "num_negatives": NUM_NEG,
        "cluster_factor": 4,
        "mask_prob": 0.5,
        "mask_length": 3,
    }
    defaults.update(kwargs)
    return AQCObjective(Data2VecAudioModel(tiny_config()), **defaults)


def batch(batch_size=3, samples=4000):
    generator = torch.Generator().manual_seed(1)
    wav = torch.randn(batch_size, samples, generator=generator)
    aug = wav + 0.3 * torch.randn(batch_size, samples, generator=generator)
    return wav, aug


def equal_count_mask(batch_size, frames, per_row):
    mask = torch.zeros(batch_size, frames, dtype=torch.bool)
    for row in range(batch_size):
        mask[row, row : row + per_row] = True
    return mask


def fixed_negatives(y, num_negatives, valid_counts=None, generator=None):
    """Negative n of frame t is frame (t + n + 1) mod M: deterministic, never itself."""
    batch_size, per_row, _ = y.shape
    index = (torch.arange(per_row)[None, :] + torch.arange(1, num_negatives + 1)[:, None]) % per_row
    index = index[:, None, :].expand(num_negatives, batch_size, per_row)
    gathered = torch.stack([y[b][index[:, b]] for b in range(batch_size)], dim=1)
    return gathered, index


def parity_labels(x, num_clusters, **kwargs):
    """Cluster = row parity of the point: deterministic and independent of the values."""
    return torch.arange(x.shape[0]) % 2


def has_duplicate_negative(q):
    """Whether some fixed negative of some frame is bit-identical to the frame. q: (M, C)."""
    per_row = q.shape[0]
    return any(
        torch.equal(q[(m + n) % per_row], q[m])
        for m in range(per_row)
        for n in range(1, NUM_NEG + 1)
    )


def naive_cross_entropy(anchors, q, labels, scale, official, official_applies):
    """Sum over frames of the cluster-scaled InfoNCE, one frame and one negative at a time.

    anchors, q: (M, C) for one utterance; labels: (M,). Negatives follow fixed_negatives.
    """
    per_row = q.shape[0]
    neighbours = [[(m + n) % per_row for n in range(1, NUM_NEG + 1)] for m in range(per_row)]
    duplicate = [[torch.equal(q[j], q[m]) for j in neighbours[m]] for m in range(per_row)]
    total = 0.0
    for m in range(per_row):
        logits = [F.cosine_similarity(anchors[m], q[m], dim=0) / 0.1]
        for j, is_duplicate in zip(neighbours[m], duplicate[m]):
            logit = F.cosine_similarity(anchors[m], q[j], dim=0) / 0.1
            if is_duplicate:
                logit = torch.tensor(float("-inf"))
            if labels[j] == labels[m]:
                if not official:
                    logit = logit + math.log(scale)
                elif official_applies:
                    logit = logit * scale
            logits.append(logit)
        total = total - torch.log_softmax(torch.stack(logits), dim=0)[0]
    return total


def naive_loss(objective, wav, aug, mask, scale, official):
    """The fork's recipe, utterance by utterance, from the objective's own modules."""
    model = objective.model
    with torch.no_grad():
        clean_cnn, _ = model.extract_cnn_features(wav)
        clean_normed, clean_proj = model.project_features(clean_cnn)
        aug_normed, aug_proj = model.project_features(model.extract_cnn_features(aug)[0])
        student = model.encoder(model.apply_mask(aug_proj, mask), None).last_hidden_state
        teacher = objective.teacher(clean_proj, None)
        layers = [F.instance_norm(h.transpose(1, 2)).transpose(1, 2) for h in teacher.ffn_outputs]
        target = sum(layers) / len(layers)
        batch_size, per_row = mask.shape[0], int(mask[0].sum())
        quant_clean = objective.quantizer(clean_normed[mask].view(batch_size, per_row, -1))
        quant_aug = objective.quantizer(aug_normed[mask].view(batch_size, per_row, -1))
        q_clean = objective.project_q(quant_clean.quantized)
        q_aug = objective.project_q(quant_aug.quantized)
        labels = (torch.arange(2 * batch_size * per_row) % 2).view(2, batch_size, per_row)

        # the fork scales only when some negative equals its positive anywhere in the call
        applies_s = any(has_duplicate_negative(q_clean[b]) for b in range(batch_size))
        applies_t = any(has_duplicate_negative(q_aug[b]) for b in range(batch_size))
        regression, ce_s, ce_t = 0.0, 0.0, 0.0
        for b in range(batch_size):
            frames = mask[b].nonzero()[:, 0]
            pred = objective.final_proj(student[b, frames])
            regression += ((pred - target[b, frames]) ** 2).sum() / math.sqrt(pred.shape[-1])
            student_anchor = objective.contr_proj(student[b, frames])
            teacher_anchor = objective.contr_proj(target[b, frames])
            ce_s += naive_cross_entropy(
                student_anchor, q_clean[b], labels[0, b], scale, official, applies_s
            )
            ce_t += naive_cross_entropy(
                teacher_anchor, q_aug[b], labels[1, b], scale, official, applies_t
            )
        num = batch_size * per_row
        penalty = clean_cnn.float().pow(2).mean()
        return (
            regression / num
            + 0.5 * ce_s / num
            + 0.5 * ce_t / num
            + 0.1 * quant_clean.diversity_loss
            + 10.0 * penalty
        )


@pytest.mark.parametrize("official", [False, True])
def test_loss_matches_utterance_by_utterance_composition(monkeypatch, official):
    monkeypatch.setattr(negative_sampler_module, "sample_negatives", fixed_negatives)
    monkeypatch.setattr(cluster_scaler_module, "cosine_kmeans", parity_labels)
    objective = make_objective(official_cluster_scaling=official).eval()
    wav, aug = batch()
    frames = objective.model.frame_lengths(torch.tensor([wav.shape[1]]))[0].item()
    mask = equal_count_mask(wav.shape[0], frames, per_row=6)
    with torch.no_grad():
        out = objective(wav, None, wav_aug=aug, mask=mask)
    reference = naive_loss(objective, wav, aug, mask, scale=0.3, official=official)
    assert torch.allclose(out["loss"], reference, rtol=1e-4, atol=1e-4)


def test_every_trainable_module_gets_gradient_and_teacher_none():
    objective = make_objective().train()
    wav, aug = batch()
    out = objective(wav, torch.tensor([4000, 3500, 3000]), wav_aug=aug)
    out["loss"].backward()
    missing = [n for n, p in objective.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    assert all(p.grad is None for p in objective.teacher.parameters())
    names = {n for n, _ in objective.named_parameters()}
    assert {"quantizer.vars", "project_q.weight", "contr_proj.weight"} <= names


def test_training_steps_lower_the_loss_and_schedules_advance():
    objective = make_objective().train()
    optimizer = torch.optim.Adam(objective.parameters(), lr=2e-3)
    wav, aug = batch()
    losses = []
    for step in range(1, 9):
        torch.manual_seed(step)
        out = objective(wav, None, wav_aug=aug)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        objective.after_optimizer_step(step)
        losses.append(float(out["loss"]))
    assert losses[-1] < 0.8 * losses[0]
    assert objective.quantizer.num_updates == 8
    assert objective.quantizer.temperature == pytest.approx(2.0 * 0.999995**8)
    assert objective.teacher.num_updates == 8


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_autocast_gives_finite_loss_close_to_fp32(dtype):
    objective = make_objective().eval()
    wav, aug = batch()
    frames = objective.model.frame_lengths(torch.tensor([wav.shape[1]]))[0].item()
    mask = equal_count_mask(3, frames, per_row=6)
    torch.manual_seed(3)
    with torch.no_grad():
        full = objective(wav, None, wav_aug=aug, mask=mask)["loss"]
    torch.manual_seed(3)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        reduced = objective(wav, None, wav_aug=aug, mask=mask)["loss"]
    assert torch.isfinite(reduced)
    assert abs(float(reduced) - float(full)) < 0.1 * abs(float(full))


def test_unequal_masked_counts_are_refused():
    objective = make_objective()
    wav, aug = batch()
    frames = objective.model.frame_lengths(torch.tensor([wav.shape[1]]))[0].item()
    mask = equal_count_mask(3, frames, per_row=6)
    mask[0, -1] = True
    with pytest.raises(ValueError, match="same number"):
        objective(wav, None, wav_aug=aug, mask=mask)


def test_state_dict_round_trip_keeps_temperature_and_teacher():
    objective = make_objective()
    objective.after_optimizer_step(1000)
    clone = make_objective()
    clone.load_state_dict(objective.state_dict())
    assert clone.quantizer.temperature == pytest.approx(objective.quantizer.temperature)
    assert clone.teacher.num_updates == objective.teacher.num_updates
