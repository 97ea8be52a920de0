"""data2vec 2.0 engine against naive references written from shared/reference/data2vec2_audio.md.

The references loop over rows, heads and frames in plain Python/torch ops (no SDPA, no gather, no
grouped conv), so each checks one vectorised piece of the engine: the block mask's exact count,
ALiBi's slopes and bias, the sparse student's gather, the restore with placeholders, the conv
decoder, and the whole loss, per utterance alone against a padded batch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from d2v_speech.data.pipelines import BlockMaskCollate, CropCollate
from d2v_speech.nn.alibi import alibi_slopes
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.conv_decoder import ConvDecoder1d
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.transformer import KeptFrames
from d2v_speech.ssl.block_masker import BlockMasker
from d2v_speech.ssl.data2vec2 import Data2Vec2Objective, restore_with_noise
from d2v_speech.ssl.ema import EMATeacherSettings
from d2v_speech.ssl.target_builder import TopKTargetBuilder
from d2v_speech.ssl.variance_floor import temporal_spread

ATOL = 1e-5


def tiny_config(layer_norm_first: bool, alibi: bool = True) -> EncoderConfig:
    return EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
        embed_dim=16,
        num_layers=3,
        num_heads=4,
        ffn_dim=32,
        dropout=0.0,
        attention_dropout=0.0,
        layerdrop=0.0,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
        layer_norm_first=layer_norm_first,
        alibi=alibi,
    )


# ----------------------------------------------------------------------------- block mask
def naive_block_mask(masker: BlockMasker, num_frames: int, generator: torch.Generator):
    """Reference section 2.2, one row at a time, consuming the generator as the masker does."""
    rows, length = masker.num_clones, masker.mask_length
    num_centres = int(num_frames * (masker.mask_prob + masker.mask_prob_adjust) / length)
    centres = torch.randint(0, num_frames, (rows, num_centres), generator=generator)
    noise = torch.rand(rows, num_frames, generator=generator)
    target = int(masker.mask_prob * num_frames)
    out = torch.zeros(rows, num_frames, dtype=torch.bool)
    for row in range(rows):
        marked = set()
        for centre in centres[row].tolist():
            for offset in range(-(length // 2), length - length // 2):
                marked.add(min(max(centre + offset, 0), num_frames - 1))
        marked_list = sorted(marked, key=lambda t: -noise[row, t].item())
        if len(marked_list) >= target:  # unmark the excess uniformly among the marked frames
            chosen = marked_list[:target]
        else:  # mark missing frames uniformly among the unmarked ones
            others = sorted(
                (t for t in range(num_frames) if t not in marked), key=lambda t: -noise[row, t]
            )
            chosen = marked_list + others[: target - len(marked_list)]
        out[row, chosen] = True
    return out


@pytest.mark.parametrize("num_frames", [1, 2, 7, 40, 199])
def test_block_mask_equals_naive_reference_and_count_is_exact(num_frames):
    masker = BlockMasker(mask_prob=0.5, mask_length=5, mask_prob_adjust=0.05, num_clones=3)
    fast = masker.utterance_masks(num_frames, torch.Generator().manual_seed(num_frames))
    slow = naive_block_mask(masker, num_frames, torch.Generator().manual_seed(num_frames))
    assert torch.equal(fast, slow)
    assert fast.sum(dim=1).tolist() == [num_frames // 2] * 3


def test_block_spans_cover_about_42_percent_and_the_top_up_brings_50():
    masker = BlockMasker(num_clones=64)
    generator = torch.Generator().manual_seed(0)
    num_centres = int(999 * 0.55 / 5)
    centres = torch.randint(0, 999, (64, num_centres), generator=generator)
    spans = torch.zeros(64, 999)
    spans.scatter_(1, (centres.unsqueeze(-1) + torch.arange(-2, 3)).clamp(0, 998).view(64, -1), 1)
    assert 0.40 < spans.mean().item() < 0.44  # reference: about 42 % at T = 999
    masks = masker.utterance_masks(999, torch.Generator().manual_seed(0))
    assert masks.sum(dim=1).eq(499).all()


def test_batch_masks_stay_inside_each_length_in_clone_order():
    masker = BlockMasker(num_clones=2)
    masks = masker(torch.tensor([30, 11]), 30, torch.Generator().manual_seed(1))
    assert masks.shape == (4, 30)
    assert masks.sum(dim=1).tolist() == [15, 15, 5, 5]
    assert not masks[2:, 11:].any()
    with pytest.raises(ValueError, match="frame_lengths"):
        masker(torch.tensor([31]), 30)


def test_mask_collate_draws_exact_masks_per_clip_reproducibly():
    config = tiny_config(False)
    masker = BlockMasker(num_clones=2)
    crop = CropCollate(crop_to_shortest=False, max_samples=4000, seed=3)
    collate = BlockMaskCollate(crop, masker, config, seed=3)
    items = [{"id": "a", "sig": torch.randn(4000)}, {"id": "b", "sig": torch.randn(2500)}]
    batch = collate(items)
    frames = [config.num_frames(n) for n in batch["lengths"].tolist()]
    assert batch["mask"].shape == (4, config.num_frames(4000))
    assert batch["mask"].sum(dim=1).tolist() == [frames[0] // 2] * 2 + [frames[1] // 2] * 2
    assert not batch["mask"][2:, frames[1] :].any()
    assert torch.equal(collate(items)["mask"], batch["mask"])
    collate.epoch = 1
    assert crop.epoch == 1 and not torch.equal(collate(items)["mask"], batch["mask"])


# ----------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_follow_the_reference():
    twelve = [2.0**-k for k in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    assert torch.allclose(alibi_slopes(12), torch.tensor(twelve))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))


# ----------------------------------------------------------------------------- sparse student
def naive_attention(layer, x, positions, slopes, scale):
    """x (T, D) of one row; additive ALiBi -slope*clamp(scale)*|p_i - p_j|, fp32 softmax."""
    attention = layer.attention
    heads = attention.num_heads
    frames, dim = x.shape
    head_dim = dim // heads
    q = attention.q_proj(x).view(frames, heads, head_dim)
    k = attention.k_proj(x).view(frames, heads, head_dim)
    v = attention.v_proj(x).view(frames, heads, head_dim)
    out = torch.zeros(frames, heads, head_dim)
    for h in range(heads):
        scores = torch.zeros(frames, frames)
        for i in range(frames):
            for j in range(frames):
                bias = 0.0
                if slopes is not None:
                    bias = -slopes[h] * max(scale[h].item(), 0.0) * abs(positions[i] - positions[j])
                scores[i, j] = (q[i, h] @ k[j, h]) / math.sqrt(head_dim) + bias
        out[:, h] = torch.softmax(scores, dim=1) @ v[:, h]
    return attention.out_proj(out.reshape(frames, dim))


def naive_layer(layer, x, positions, slopes, scale):
    ffn = layer.feed_forward
    mlp = lambda y: ffn.output_dense(F.gelu(ffn.intermediate_dense(y)))  # noqa: E731
    if layer.layer_norm_first:
        x = x + naive_attention(layer, layer.layer_norm(x), positions, slopes, scale)
        return x + mlp(layer.final_layer_norm(x))
    x = layer.layer_norm(x + naive_attention(layer, x, positions, slopes, scale))
    return layer.final_layer_norm(x + mlp(x))


def naive_sparse_student(encoder, x, visible):
    """Reference 2.3 steps 4-9 for one row: x (T, D), visible (T,) -> (T_keep, D)."""
    x0 = x * visible.unsqueeze(-1).float()
    with_pos = x0 + encoder.pos_conv_embed(x0.unsqueeze(0))[0]
    positions = [t for t in range(x.shape[0]) if visible[t]]
    h = torch.stack([with_pos[t] for t in positions])
    if not encoder.layer_norm_first:
        h = encoder.layer_norm(h)
    slopes = None if encoder.alibi_scale is None else alibi_slopes(len(encoder.alibi_scale))
    for layer in encoder.layers:
        h = naive_layer(layer, h, positions, slopes, encoder.alibi_scale)
    return encoder.layer_norm(h) if encoder.layer_norm_first else h


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_sparse_student_equals_naive_reference(layer_norm_first):
    torch.manual_seed(0)
    encoder = Data2VecAudioModel(tiny_config(layer_norm_first)).encoder.eval()
    with torch.no_grad():
        encoder.alibi_scale.copy_(torch.tensor([1.0, 0.5, -0.3, 2.0]))  # -0.3 acts as 0
    x = torch.randn(3, 12, 16)
    visible = torch.rand(3, 12) > 0.5
    visible[:, 0] = True
    out, kept = encoder.encode_kept(x, visible)
    for row in range(3):
        count = int(visible[row].sum())
        expected = naive_sparse_student(encoder, x[row], visible[row])
        assert kept.index[row, :count].tolist() == visible[row].nonzero()[:, 0].tolist()
        assert kept.padding_mask[row].tolist() == [False] * count + [True] * (
            kept.index.shape[1] - count
        )
        assert torch.allclose(out.last_hidden_state[row, :count], expected, atol=ATOL)


def test_full_encoder_with_alibi_equals_sparse_student_with_everything_visible():
    torch.manual_seed(1)
    encoder = Data2VecAudioModel(tiny_config(False)).encoder.eval()
    x = torch.randn(2, 9, 16)
    full = encoder(x).last_hidden_state
    sparse, _ = encoder.encode_kept(x, torch.ones(2, 9, dtype=torch.bool))
    assert torch.allclose(full, sparse.last_hidden_state, atol=ATOL)
    naive = naive_sparse_student(encoder, x[0], torch.ones(9).bool())
    assert torch.allclose(full[0], naive, atol=ATOL)


# ----------------------------------------------------------------------------- restore + decoder
def test_restore_puts_kept_frames_back_and_placeholders_elsewhere():
    states = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2) + 1
    kept = KeptFrames(
        index=torch.tensor([[0, 2, 3], [1, 0, 0]]),
        padding_mask=torch.tensor([[False, False, False], [False, True, True]]),
    )
    full = restore_with_noise(states, kept, num_frames=5, noise_std=0.0)
    expected = torch.zeros(2, 5, 2)
    expected[0, 0], expected[0, 2], expected[0, 3] = states[0, 0], states[0, 1], states[0, 2]
    expected[1, 1] = states[1, 0]
    assert torch.equal(full, expected)
    torch.manual_seed(0)
    noisy = restore_with_noise(
        torch.zeros(4, 1, 64),
        KeptFrames(torch.zeros(4, 1).long(), torch.zeros(4, 1).bool()),
        num_frames=400,
        noise_std=0.01,
    )
    assert abs(noisy[:, 1:].std().item() - 0.01) < 5e-4


def naive_grouped_conv(x, conv):
    """x (C_in, T), 'same' zero padding, loops over groups and taps."""
    weight, bias, groups = conv.weight, conv.bias, conv.groups
    out_channels, in_per_group, kernel = weight.shape
    padded = F.pad(x, (kernel // 2, kernel // 2))
    frames = x.shape[1]
    out = torch.zeros(out_channels, frames)
    out_per_group = out_channels // groups
    for o in range(out_channels):
        g = o // out_per_group
        inputs = padded[g * in_per_group : (g + 1) * in_per_group]
        for tap in range(kernel):
            out[o] += weight[o, :, tap] @ inputs[:, tap : tap + frames]
        out[o] += bias[o]
    return out


def naive_decoder(decoder, x):
    """Reference 2.4 steps 4-6 for one row: x (T, D) -> (T, D)."""
    h = x.T
    for block in decoder.blocks:
        y = naive_grouped_conv(h, block.conv)
        y = (y - y.mean(0)) / torch.sqrt(y.var(0, unbiased=False) + 1e-5)
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        h = y + h if y.shape == h.shape else y
    return decoder.proj(h.T)


def test_conv_decoder_equals_naive_reference_and_ignores_padding():
    torch.manual_seed(2)
    decoder = ConvDecoder1d(embed_dim=16, decoder_dim=8, kernel=7, num_layers=3, groups=4)
    x = torch.randn(2, 11, 16)
    out = decoder(x)
    assert torch.allclose(out[0], naive_decoder(decoder, x[0]), atol=ATOL)
    padding = torch.zeros(2, 11, dtype=torch.bool)
    padding[1, 6:] = True
    padded = decoder(torch.where(padding.unsqueeze(-1), torch.randn(2, 11, 16), x), padding)
    assert torch.allclose(padded[1, :6], naive_decoder(decoder, x[1, :6]), atol=ATOL)


# ----------------------------------------------------------------------------- the whole loss
def build_objective(seed: int = 0, noise_std: float = 0.0) -> Data2Vec2Objective:
    torch.manual_seed(seed)
    model = Data2VecAudioModel(tiny_config(False))
    return Data2Vec2Objective(
        model,
        masker=BlockMasker(num_clones=3),
        teacher=EMATeacherSettings(0.9, 0.99, 10, copy_patterns=()),
        target_builder=TopKTargetBuilder(top_k=2),
        decoder=ConvDecoder1d(16, decoder_dim=8, kernel=5, num_layers=2, groups=4),
        decoder_input_dropout=0.0,
        mask_noise_std=noise_std,
    )


def naive_utterance_loss(objective, wav, masks):
    """Reference 2.3-2.6 for one utterance alone: wav (S,), masks (M, T) -> per-frame losses."""
    model = objective.model
    local = model.feature_projection(model.feature_extractor(wav.unsqueeze(0)))[1][0]
    ffn = objective.teacher.model(local.unsqueeze(0)).ffn_outputs
    normed = []
    for layer in ffn[-2:]:
        f = layer[0]
        normed.append((f - f.mean(0)) / torch.sqrt(f.var(0, unbiased=False) + 1e-5))
    target = sum(normed) / 2
    losses = []
    for mask in masks:
        kept = naive_sparse_student(model.encoder, local, ~mask)
        full = torch.zeros_like(local)
        full[~mask] = kept
        pred = naive_decoder(objective.decoder, full)
        per_frame = (pred[mask] - target[mask]).square().sum(-1) / math.sqrt(local.shape[-1])
        losses.append(per_frame)
    return torch.cat(losses)


def test_loss_equals_naive_reference_and_padding_changes_no_utterance():
    objective = build_objective()
    objective.train()
    torch.manual_seed(5)
    wav = torch.randn(2, 3000)
    lengths = torch.tensor([3000, 2100])
    frames = [objective.model.config.num_frames(n) for n in lengths.tolist()]
    masks = objective.masker(torch.tensor(frames), frames[0], torch.Generator().manual_seed(0))
    out = objective(wav, lengths, mask=masks)
    per_utt = []
    for b in range(2):
        utt_masks = masks[b * 3 : (b + 1) * 3, : frames[b]]
        per_utt.append(naive_utterance_loss(objective, wav[b, : lengths[b]], utt_masks))
        alone = objective(wav[b : b + 1, : lengths[b]], mask=utt_masks)
        assert torch.allclose(alone["loss"], per_utt[b].mean(), atol=ATOL)
    assert torch.allclose(out["loss"], torch.cat(per_utt).mean(), atol=ATOL)
    expected_per_utt = torch.stack([p.mean() for p in per_utt])
    assert torch.allclose(out["per_utterance_loss"], expected_per_utt, atol=ATOL)
    assert out["num_masked"].item() == 3 * (frames[0] // 2 + frames[1] // 2)


def test_teacher_sees_clean_uncloned_features_and_gradients_skip_it():
    objective = build_objective(noise_std=0.01)
    out = objective(torch.randn(2, 3000))
    out["loss"].backward()
    assert objective.model.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0
    assert objective.decoder.proj.weight.grad.abs().sum() > 0
    assert objective.model.encoder.alibi_scale.grad is not None
    assert all(p.grad is None for p in objective.teacher.parameters())


def test_ema_averages_the_positional_conv_and_alibi_scale():
    objective = build_objective()
    encoder = objective.model.encoder
    with torch.no_grad():
        for param in encoder.parameters():
            param.add_(1.0)
    before = {k: v.clone() for k, v in objective.teacher.model.state_dict().items()}
    objective.after_optimizer_step(1)
    after = objective.teacher.model.state_dict()
    student = encoder.state_dict()
    names = ("alibi_scale", "pos_conv_embed.layers.0.conv.weight", "layers.0.layer_norm.weight")
    for name in names:
        assert torch.allclose(after[name], 0.9 * before[name] + 0.1 * student[name], atol=1e-6)


def test_bad_masks_are_refused_with_their_shape():
    objective = build_objective()
    with pytest.raises(ValueError, match="B \\* num_clones"):
        objective(torch.randn(2, 3000), mask=torch.zeros(2, 10, dtype=torch.bool))
    frames = objective.model.config.num_frames(3000)
    bad = torch.ones(6, frames, dtype=torch.bool)
    with pytest.raises(ValueError, match="padded frames"):
        objective(torch.randn(2, 3000), torch.tensor([3000, 2000]), mask=bad)


def test_teacher_with_its_own_feature_encoder_ignores_the_students_cnn_until_the_ema_step():
    torch.manual_seed(0)
    objective = Data2Vec2Objective(
        Data2VecAudioModel(tiny_config(False)),
        masker=BlockMasker(num_clones=2),
        teacher=EMATeacherSettings(0.9, 0.99, 10, copy_patterns=()),
        target_builder=TopKTargetBuilder(top_k=2),
        decoder=ConvDecoder1d(16, decoder_dim=8, kernel=5, num_layers=2, groups=4),
        teacher_input="own_feature_encoder",
    )
    wav = torch.randn(2, 3000)
    _, _, local, padding = objective.frontend(wav, None)
    before = objective.teacher_targets(local, padding, wav)
    conv = objective.model.feature_extractor.conv_layers[0].conv
    teacher_conv = objective.teacher.model.feature_extractor.conv_layers[0].conv
    old = teacher_conv.weight.detach().clone()
    with torch.no_grad():
        conv.weight.mul_(-1.0)
    _, _, local, padding = objective.frontend(wav, None)
    assert torch.equal(objective.teacher_targets(local, padding, wav), before)
    objective.after_optimizer_step(1)
    assert torch.allclose(teacher_conv.weight, 0.9 * old + 0.1 * conv.weight, atol=1e-6)
    with pytest.raises(ValueError, match="teacher_input"):
        Data2Vec2Objective(
            Data2VecAudioModel(tiny_config(False)),
            BlockMasker(),
            EMATeacherSettings(),
            TopKTargetBuilder(2),
            ConvDecoder1d(16, 8, 5, 2, 4),
            teacher_input="cnn",
        )


def naive_temporal_spread(local, lengths):
    """Reference of temporal_spread: per utterance, per channel, unbiased std over its frames of
    the frame-wise layer-normalised features."""
    rows = []
    for b, n in enumerate(lengths):
        x = local[b, :n]
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
            x.var(-1, unbiased=False, keepdim=True) + 1e-5
        )
        rows.append(torch.sqrt(x.var(0, unbiased=True) + 1e-6))
    return torch.stack(rows)


def test_temporal_spread_equals_naive_reference_with_padding():
    torch.manual_seed(3)
    local = torch.randn(3, 11, 6) * 4 + 2
    lengths = [11, 7, 2]
    padding = torch.arange(11)[None, :] >= torch.tensor(lengths)[:, None]
    local[padding] = 123.0  # padded frames must not count
    expected = naive_temporal_spread(local, lengths)
    assert torch.allclose(temporal_spread(local, padding), expected, atol=ATOL)
    assert torch.allclose(temporal_spread(local[:1], None), expected[:1], atol=ATOL)


def test_variance_floor_adds_its_hinge_and_pushes_a_collapsing_cnn_apart():
    torch.manual_seed(4)
    wav = torch.randn(2, 3000)
    plain = build_objective()
    floored = build_objective()
    floored.variance_floor, floored.variance_weight = 5.0, 2.0  # far above any spread: active
    frames = plain.model.config.num_frames(3000)
    masks = plain.masker(torch.tensor([frames, frames]), frames, torch.Generator().manual_seed(0))
    out_plain, out_floor = plain(wav, mask=masks), floored(wav, mask=masks)
    local = plain.frontend(wav, None)[2]
    hinge = (5.0 - naive_temporal_spread(local, [local.shape[1]] * 2)).clamp_min(0).mean()
    assert torch.allclose(out_floor["variance_hinge"], hinge, atol=ATOL)
    assert torch.allclose(out_floor["loss"], out_plain["loss"] + 2.0 * hinge, atol=ATOL)
    assert torch.allclose(out_floor["input_std"], out_plain["input_std"], atol=ATOL)
    # the hinge alone: one small gradient step raises the spread
    conv = floored.model.feature_extractor.conv_layers[-1].conv
    spread = temporal_spread(floored.frontend(wav, None)[2], None).mean()
    (5.0 - temporal_spread(floored.frontend(wav, None)[2], None)).clamp_min(0).mean().backward()
    with torch.no_grad():
        for p in floored.model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
    assert conv.weight.grad is not None
    assert temporal_spread(floored.frontend(wav, None)[2], None).mean() > spread
