"""data2vec objective on a tiny random network: values, gradients, EMA, padding invariance."""

import math

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.monitors import frame_std
from d2v_speech.ssl.targets import instance_norm_over_time

SAMPLES = 1600


def tiny_model(dropout=0.0, layerdrop=0.0, seed=0):
    torch.manual_seed(seed)
    config = EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
        embed_dim=16,
        num_layers=3,
        num_heads=2,
        ffn_dim=32,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
        pos_conv_mask_padding=True,
        dropout=dropout,
        attention_dropout=dropout,
        layerdrop=layerdrop,
    )
    return Data2VecAudioModel(config)


def tiny_objective(**kwargs):
    options = {"average_top_k_layers": 2, "mask_prob": 0.5, "mask_length": 3}
    options.update(kwargs)
    return Data2VecObjective(tiny_model(), **options)


def fixed_mask(lengths, num_frames, seed):
    """A mask with the same count per row inside each length (every 3rd valid frame)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(lengths), num_frames, dtype=torch.bool)
    count = min(lengths) // 3
    for row, length in enumerate(lengths):
        mask[row, torch.randperm(length, generator=generator)[:count]] = True
    return mask


def test_loss_equals_manual_composition():
    objective = tiny_objective().eval()
    wav = torch.randn(2, SAMPLES)
    mask = fixed_mask([objective.model.config.num_frames(SAMPLES)] * 2, 79, seed=0)
    out = objective(wav, mask=mask)
    model = objective.model
    with torch.no_grad():
        features = model.feature_extractor(wav)
        normed, projected = model.project_features(features)
        student = model.encoder(model.apply_mask(projected, mask)).last_hidden_state
        teacher_ffn = objective.teacher.model(projected).ffn_outputs
        targets = sum(instance_norm_over_time(f) for f in teacher_ffn[-2:]) / 2
        pred = objective.final_proj(student[mask])
        per_frame = (pred - targets[mask]).square().sum(-1) / math.sqrt(16)
    assert out["loss"].item() == pytest.approx(per_frame.mean().item(), rel=1e-5)
    assert out["num_masked"].item() == int(mask.sum())
    assert out["target_var"].item() == pytest.approx(frame_std(targets[mask]).item(), rel=1e-5)
    assert out["pred_var"].item() == pytest.approx(frame_std(pred).item(), rel=1e-5)
    # after the CNN's LayerNorm: the feature penalty shrinks the raw features by design
    assert out["cnn_std"].item() == pytest.approx(frame_std(normed).item(), rel=1e-5)
    assert out["ema_decay"].item() == pytest.approx(0.999)
    row0 = per_frame[: int(mask[0].sum())].mean()
    assert out["per_utterance_loss"][0].item() == pytest.approx(row0.item(), rel=1e-5)


def test_gradients_reach_student_parts_but_not_teacher():
    objective = tiny_objective().train()
    out = objective(torch.randn(2, SAMPLES), torch.tensor([SAMPLES, 1200]))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    # CNN, projection, mask embedding, every encoder layer and final_proj all learn.
    for name, param in objective.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in objective.teacher.parameters())
    teacher_ids = {id(p) for p in objective.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in objective.parameters()}


def test_optimiser_steps_lower_the_loss_and_advance_ema():
    objective = tiny_objective(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    objective.train()
    optimiser = torch.optim.Adam(objective.parameters(), lr=3e-3)
    wav = torch.randn(2, SAMPLES)
    mask = fixed_mask([79, 79], 79, seed=1)
    losses = []
    for _ in range(8):
        out = objective(wav, mask=mask)
        losses.append(out["loss"].item())
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        objective.after_optimizer_step()
    assert losses[-1] < 0.7 * losses[0]
    assert objective.teacher.num_updates == 8
    assert out["ema_decay"].item() == pytest.approx(0.99 - 0.09 * (1 - 7 / 10))


def test_padded_batch_matches_each_utterance_alone():
    objective = tiny_objective().eval()
    lengths = torch.tensor([SAMPLES, 1100, 700])
    wav = torch.randn(3, SAMPLES)
    for row, length in enumerate(lengths.tolist()):
        wav[row, length:] = 0.0
    frames = objective.model.frame_lengths(lengths).tolist()
    mask = fixed_mask(frames, frames[0], seed=2)
    with torch.no_grad():
        batch = objective(wav, lengths, mask=mask)
        alone = [
            objective(wav[i : i + 1, :length], mask=mask[i : i + 1, : frames[i]])
            for i, length in enumerate(lengths.tolist())
        ]
        singles = [objective.frontend(wav[i : i + 1, :n]) for i, n in enumerate(lengths.tolist())]
        preds, targets, cnn = [], [], []
        for i, front in enumerate(singles):
            row_mask = mask[i : i + 1, : frames[i]]
            student = objective.student_encode(front.projected, None, row_mask)
            terms = objective.regression_terms(
                student, objective.teacher_targets(front.projected, None), row_mask
            )
            preds.append(terms["pred"])
            targets.append(terms["target"])
            cnn.append(front.normed[0])
    expected = torch.stack([single["per_utterance_loss"][0] for single in alone])
    torch.testing.assert_close(batch["per_utterance_loss"], expected, atol=1e-4, rtol=1e-4)
    assert batch["loss"].item() == pytest.approx(expected.mean().item(), abs=1e-4)
    for key, frames_list in (("pred_var", preds), ("target_var", targets), ("cnn_std", cnn)):
        reference = frame_std(torch.cat(frames_list)).item()
        assert batch[key].item() == pytest.approx(reference, abs=1e-4), key


def test_default_mask_follows_lengths_and_feature_penalty_adds():
    objective = tiny_objective(feature_penalty_weight=2.0).eval()
    out = objective(torch.randn(2, SAMPLES), torch.tensor([SAMPLES, 800]))
    assert out["num_masked"].item() > 0
    expected = out["loss_regression"] + 2.0 * out["feature_penalty"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_state_dict_carries_teacher_and_checkpointer_resumes(tmp_path):
    objective = tiny_objective()
    objective(torch.randn(1, SAMPLES))["loss"].backward()
    with torch.no_grad():
        for param in objective.model.encoder.parameters():
            param.add_(0.1)
    objective.update_teacher()
    Checkpointer(tmp_path, recoverables={"objective": objective}).save_checkpoint()
    fresh = tiny_objective()
    assert Checkpointer(tmp_path, recoverables={"objective": fresh}).recover_if_possible()
    assert fresh.teacher.num_updates == 1
    for (name, a), b in zip(
        objective.teacher.model.state_dict().items(), fresh.teacher.model.state_dict().values()
    ):
        assert torch.equal(a, b), name


def test_bad_configuration_and_mask_raise():
    with pytest.raises(ValueError, match="top_k=4"):
        Data2VecObjective(tiny_model(), average_top_k_layers=4)
    objective = tiny_objective()
    with pytest.raises(ValueError, match="mask"):
        objective(torch.randn(2, SAMPLES), mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="padded"):
        objective(
            torch.randn(2, SAMPLES),
            torch.tensor([SAMPLES, 800]),
            mask=torch.ones(2, 79, dtype=torch.bool),
        )


def test_feature_grad_mult_scales_only_the_cnn_gradient():
    wav = torch.randn(2, SAMPLES)
    mask = fixed_mask([79, 79], 79, seed=1)
    grads = {}
    for mult in (1.0, 0.1, 0.0):
        torch.manual_seed(0)
        objective = tiny_objective().eval()
        objective.feature_grad_mult = mult
        objective(wav, mask=mask)["loss"].backward()
        conv = objective.model.feature_extractor.conv_layers[0].conv.weight.grad
        proj = objective.model.feature_projection.projection.weight.grad
        grads[mult] = (conv, proj)
    assert torch.allclose(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-4, atol=1e-8)
    assert torch.allclose(grads[0.1][1], grads[1.0][1], rtol=1e-4, atol=1e-6)
    assert grads[0.0][0] is None  # the CNN is cut from the graph
    assert grads[0.0][1] is not None


def test_variance_floor_adds_its_hinge_on_the_encoder_input_and_is_off_by_default():
    from d2v_speech.ssl.variance_floor import temporal_spread

    lengths = [SAMPLES, SAMPLES - 400]
    wav = torch.randn(2, SAMPLES)
    plain = tiny_objective().eval()
    floored = tiny_objective(variance_floor=3.0, variance_weight=2.0).eval()
    frames = plain.model.config.num_frames(SAMPLES)
    valid = [int(n) for n in plain.model.frame_lengths(torch.tensor(lengths))]
    mask = fixed_mask(valid, frames, seed=1)
    out_plain = plain(wav, torch.tensor(lengths), mask=mask)
    out_floor = floored(wav, torch.tensor(lengths), mask=mask)
    assert "variance_hinge" not in out_plain and "input_std" not in out_plain
    front = plain.frontend(wav, torch.tensor(lengths))
    spread = temporal_spread(front.projected, front.padding_mask)  # (B, D), valid frames only
    hinge = (3.0 - spread).clamp_min(0).mean()
    assert torch.allclose(out_floor["variance_hinge"], hinge, atol=1e-5)
    assert torch.allclose(out_floor["input_std"], spread.mean(), atol=1e-5)
    assert torch.allclose(out_floor["loss"], out_plain["loss"] + 2.0 * hinge, atol=1e-5)
    out_floor["loss"].backward()  # the hinge reaches the CNN
    assert floored.model.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="variance_floor"):
        tiny_objective(variance_floor=-1.0)
