"""Data2VecAudioModel against Hugging Face `transformers.Data2VecAudioModel` (eval, fp32)."""

import pytest
import torch
from transformers import Data2VecAudioConfig, Data2VecAudioModel as HFData2VecAudioModel

from d2v_speech.checkpoints import hf_config_to_encoder_config
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig

# (conv layers, hidden, layers, heads, ffn, pos depth, pos kernel, pos groups, conv bias)
ARCHITECTURES = {
    "two_conv_even_pos_kernel": ([(16, 10, 5), (16, 3, 2)], 32, 2, 4, 64, 3, 4, 4, False),
    "three_conv_bias": ([(24, 8, 4), (24, 4, 2), (20, 2, 2)], 48, 3, 6, 96, 2, 5, 8, True),
    "default_layout_narrow": (
        [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        64,
        1,
        2,
        128,
        5,
        19,
        16,
        False,
    ),
}
LENGTHS = {
    "two_conv_even_pos_kernel": [1500, 1100, 420],
    "three_conv_bias": [2000, 1200, 700],
    "default_layout_narrow": [9600, 7000, 4000],
}


def make_hf(name, seed=0):
    conv, hidden, layers, heads, ffn, depth, kernel, groups, bias = ARCHITECTURES[name]
    config = Data2VecAudioConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        conv_dim=[c for c, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        conv_bias=bias,
        num_conv_pos_embeddings=depth,
        conv_pos_kernel_size=kernel,
        num_conv_pos_embedding_groups=groups,
    )
    torch.manual_seed(seed)
    model = HFData2VecAudioModel(config).eval()
    with torch.no_grad():
        # move LayerNorms and zero biases off their init so that swapped keys would show
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def ours_from_hf(hf, pos_conv_mask_padding):
    config = hf_config_to_encoder_config(hf.config.to_dict(), pos_conv_mask_padding)
    model = Data2VecAudioModel(config).eval()
    model.load_state_dict(hf.state_dict(), strict=True)
    return model


def padded_batch(lengths, seed=1):
    generator = torch.Generator().manual_seed(seed)
    wav = torch.randn(len(lengths), max(lengths), generator=generator)
    sample_lengths = torch.tensor(lengths)
    attention_mask = torch.arange(max(lengths))[None] < sample_lengths[:, None]
    return wav * attention_mask, sample_lengths, attention_mask.long()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_padded_batch_parity_with_hf_all_hidden_states(name):
    hf = make_hf(name)
    ours = ours_from_hf(hf, pos_conv_mask_padding=False)
    wav, lengths, attention_mask = padded_batch(LENGTHS[name])
    captured = []
    hooks = [
        layer.feed_forward.output_dense.register_forward_hook(
            lambda module, inputs, output: captured.append(output)
        )
        for layer in hf.encoder.layers
    ]
    with torch.no_grad():
        expected = hf(wav, attention_mask=attention_mask, output_hidden_states=True)
        out = ours(wav, lengths)
    for hook in hooks:
        hook.remove()
    valid = ~out.padding_mask
    assert valid.sum(dim=1).tolist() == ours.frame_lengths(lengths).tolist()
    assert len(out.hidden_states) == len(expected.hidden_states) == hf.config.num_hidden_layers + 1
    for ours_state, hf_state in zip(out.hidden_states, expected.hidden_states):
        assert (ours_state - hf_state)[valid].abs().max() < 1e-4
    assert (out.last_hidden_state - expected.last_hidden_state)[valid].abs().max() < 1e-4
    assert (out.extract_features - expected.extract_features)[valid].abs().max() < 1e-4
    # FFN outputs (the data2vec targets) against a hook on HF's output_dense
    assert len(out.ffn_outputs) == len(captured)
    for ours_ffn, hf_ffn in zip(out.ffn_outputs, captured):
        assert (ours_ffn - hf_ffn)[valid].abs().max() < 1e-4


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_mask_padding_matches_hf_on_each_utterance_alone(name):
    hf = make_hf(name)
    ours = ours_from_hf(hf, pos_conv_mask_padding=True)
    wav, lengths, _ = padded_batch(LENGTHS[name])
    with torch.no_grad():
        out = ours(wav, lengths)
        for row, length in enumerate(lengths.tolist()):
            alone = hf(wav[row : row + 1, :length], output_hidden_states=True)
            frames = alone.last_hidden_state.shape[1]
            for ours_state, hf_state in zip(out.hidden_states, alone.hidden_states):
                assert (ours_state[row, :frames] - hf_state[0]).abs().max() < 1e-4


def test_hf_padding_leak_exists_without_mask_padding():
    """The documented HF/fairseq caveat: a short utterance in a padded batch != alone."""
    hf = make_hf("three_conv_bias")
    ours = ours_from_hf(hf, pos_conv_mask_padding=False)
    wav, lengths, _ = padded_batch(LENGTHS["three_conv_bias"])
    with torch.no_grad():
        in_batch = ours(wav, lengths).last_hidden_state[2]
        alone = ours(wav[2:3, : lengths[2]]).last_hidden_state[0]
    assert (in_batch[: alone.shape[0]] - alone).abs().max() > 1e-3


def test_mask_embedding_matches_hf_mask_time_indices():
    hf = make_hf("two_conv_even_pos_kernel")
    ours = ours_from_hf(hf, pos_conv_mask_padding=False)
    wav = torch.randn(2, 1500)
    frames = ours.config.num_frames(1500)
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[0, 3:13] = True
    mask[1, 40:50] = True
    with torch.no_grad():
        expected = hf(wav, mask_time_indices=mask).last_hidden_state
        out = ours(wav, mask=mask)
        unmasked = ours(wav)
    torch.testing.assert_close(out.last_hidden_state, expected, rtol=0, atol=1e-4)
    # projected_features is the unmasked teacher input
    torch.testing.assert_close(out.projected_features, unmasked.projected_features)


def test_apply_mask_is_out_of_place_and_uses_the_embedding():
    model = Data2VecAudioModel(EncoderConfig(embed_dim=32, num_heads=4, pos_conv_groups=4))
    x = torch.randn(2, 5, 32)
    original = x.clone()
    mask = torch.tensor([[True, False, False, True, False], [False] * 5])
    out = model.apply_mask(x, mask)
    assert torch.equal(x, original)
    for b in range(2):
        for t in range(5):
            expected = model.masked_spec_embed if mask[b, t] else x[b, t]
            assert torch.equal(out[b, t], expected)
    with pytest.raises(ValueError, match="mask must be bool of shape"):
        model.apply_mask(x, mask.long())


def test_initialisation_like_fairseq():
    torch.manual_seed(0)
    config = EncoderConfig(
        conv_layers=[(64, 10, 5), (64, 3, 2)],
        embed_dim=256,
        num_layers=2,
        num_heads=4,
        ffn_dim=1024,
        pos_conv_depth=2,
    )
    model = Data2VecAudioModel(config)
    linears = [m for m in model.encoder.layers.modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    conv = model.feature_extractor.conv_layers[
        1
    ].conv.weight  # kaiming normal: std sqrt(2 / fan_in)
    assert abs(conv.std().item() - (2 / (64 * 3)) ** 0.5) < 0.01
    embed = model.masked_spec_embed
    assert embed.min() >= 0 and embed.max() < 1 and 0.4 < embed.mean() < 0.6


def test_bad_inputs_raise_clear_errors():
    config = EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2)],
        embed_dim=32,
        num_layers=1,
        num_heads=4,
        ffn_dim=64,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
    )
    model = Data2VecAudioModel(config).eval()
    assert config.receptive_field == 20
    with pytest.raises(ValueError, match=r"shape \(B, S\)"):
        model(torch.randn(100))
    with pytest.raises(ValueError, match="shorter than the receptive field"):
        model(torch.randn(2, 100), torch.tensor([100, 19]))
    with pytest.raises(ValueError, match="integer sample counts"):
        model(torch.randn(2, 100), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="exceeds"):
        model(torch.randn(2, 100), torch.tensor([100, 120]))
    with pytest.raises(ValueError, match="floating point"):
        model(torch.zeros(2, 100, dtype=torch.long))


def test_training_without_mask_gives_every_parameter_a_gradient():
    """DDP without find_unused_parameters needs a gradient (zero is fine) on every parameter."""
    torch.manual_seed(0)
    config = EncoderConfig(
        conv_layers=[(16, 10, 5), (16, 3, 2)],
        embed_dim=32,
        num_layers=2,
        num_heads=4,
        ffn_dim=64,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
    )
    model = Data2VecAudioModel(config).train()
    model(
        torch.randn(2, 400), layer_keep=torch.tensor([True, False])
    ).last_hidden_state.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert torch.count_nonzero(model.masked_spec_embed.grad) == 0
