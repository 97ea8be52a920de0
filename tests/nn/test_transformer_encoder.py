"""Transformer encoder: attention, pre-LN layers, LayerDrop and padding."""

import math

import pytest
import torch
from transformers import Wav2Vec2Config
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2EncoderLayerStableLayerNorm

from d2v_speech.nn import EncoderConfig
from d2v_speech.nn.transformer import EncoderLayer, SelfAttention, TransformerEncoder


def small_config(**overrides):
    values = {
        "embed_dim": 16,
        "num_layers": 3,
        "num_heads": 4,
        "ffn_dim": 32,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 3,
        "pos_conv_groups": 4,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "layerdrop": 0.0,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def naive_attention(attention, x, valid_frames):
    """x (T, D) of one utterance, keys limited to the first `valid_frames` frames."""
    frames, dim = x.shape
    heads = attention.num_heads
    head_dim = dim // heads
    q = attention.q_proj(x).view(frames, heads, head_dim)
    k = attention.k_proj(x).view(frames, heads, head_dim)
    v = attention.v_proj(x).view(frames, heads, head_dim)
    context = torch.zeros(frames, heads, head_dim)
    for h in range(heads):
        for t in range(frames):
            scores = [float(q[t, h] @ k[s, h]) / math.sqrt(head_dim) for s in range(valid_frames)]
            top = max(scores)
            weights = [math.exp(score - top) for score in scores]
            total = sum(weights)
            for s in range(valid_frames):
                context[t, h] += weights[s] / total * v[s, h]
    return attention.out_proj(context.reshape(frames, dim))


def test_attention_matches_naive_softmax_with_key_padding():
    torch.manual_seed(0)
    attention = SelfAttention(16, num_heads=4, dropout=0.0).eval()
    x = torch.randn(2, 7, 16)
    attend = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    attend[1, ..., 4:] = False
    with torch.no_grad():
        out = attention(x, attend)
        for row, valid in enumerate([7, 4]):
            torch.testing.assert_close(
                out[row], naive_attention(attention, x[row], valid), rtol=0, atol=1e-5
            )


def test_pre_ln_layer_matches_hf_stable_layer_norm_layer():
    torch.manual_seed(0)
    ours = EncoderLayer(small_config(layer_norm_first=True)).eval()
    hf = Wav2Vec2EncoderLayerStableLayerNorm(
        Wav2Vec2Config(
            hidden_size=16, num_attention_heads=4, intermediate_size=32, do_stable_layer_norm=True
        )
    ).eval()
    with torch.no_grad():
        for parameter in hf.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    ours.load_state_dict(hf.state_dict())
    captured = {}
    hf.feed_forward.output_dense.register_forward_hook(
        lambda module, inputs, output: captured.setdefault("ffn", output)
    )
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        out, ffn = ours(x)
        expected = hf(x)
        expected = expected[0] if isinstance(expected, tuple) else expected
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(ffn, captured["ffn"], rtol=0, atol=1e-5)


def test_pre_ln_encoder_applies_final_layer_norm_after_last_layer():
    torch.manual_seed(0)
    pre = TransformerEncoder(small_config(layer_norm_first=True)).eval()
    with torch.no_grad():
        for parameter in pre.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    post = TransformerEncoder(small_config(layer_norm_first=False)).eval()
    post.load_state_dict(pre.state_dict())
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        out = pre(x)
        # independent composition: x + pos(x) -> pre-LN layers -> encoder.layer_norm
        h = x + pre.pos_conv_embed(x)
        assert torch.equal(out.hidden_states[0], h)
        for layer in pre.layers:
            h = h + layer.attention(layer.layer_norm(h))
            h = h + layer.feed_forward(layer.final_layer_norm(h))
        h = torch.nn.functional.layer_norm(
            h, (16,), pre.layer_norm.weight, pre.layer_norm.bias, 1e-5
        )
        post_out = post(x).last_hidden_state
    torch.testing.assert_close(out.last_hidden_state, h, rtol=0, atol=1e-5)
    assert out.hidden_states[-1] is out.last_hidden_state
    assert len(out.hidden_states) == 4 and len(out.ffn_outputs) == 3
    assert (post_out - out.last_hidden_state).abs().max() > 0.1


def test_layerdrop_never_in_eval():
    torch.manual_seed(0)
    encoder = TransformerEncoder(small_config(layerdrop=0.9)).eval()
    x = torch.randn(1, 5, 16)
    with torch.no_grad():
        reference = encoder(x).last_hidden_state
        for _ in range(5):
            out = encoder(x, layer_keep=torch.tensor([False, False, False]))
            assert all(f is not None for f in out.ffn_outputs)
            assert torch.equal(out.last_hidden_state, reference)


def test_layer_keep_skips_layers_and_keeps_their_parameters_in_the_graph():
    torch.manual_seed(0)
    encoder = TransformerEncoder(small_config()).train()
    x = torch.randn(2, 5, 16)
    out = encoder(x, layer_keep=torch.tensor([True, False, True]))
    assert out.ffn_outputs[1] is None and out.ffn_outputs[0] is not None
    torch.testing.assert_close(out.hidden_states[2], out.hidden_states[1], rtol=0, atol=0)
    # running layers 0 and 2 only, by hand, gives the same output
    with torch.no_grad():
        h = encoder.dropout(encoder.layer_norm(x + encoder.pos_conv_embed(x)))
        h = encoder.layers[2](encoder.layers[0](h)[0])[0]
    torch.testing.assert_close(out.last_hidden_state.detach(), h, rtol=0, atol=1e-6)
    out.last_hidden_state.sum().backward()
    skipped = list(encoder.layers[1].parameters())
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in skipped)
    assert torch.count_nonzero(encoder.layers[0].feed_forward.output_dense.weight.grad) > 0


def test_layerdrop_draws_from_torch_rng():
    encoder = TransformerEncoder(small_config(num_layers=6, layerdrop=0.5)).train()
    x = torch.randn(1, 5, 16)
    torch.manual_seed(123)
    expected_keep = (torch.rand(6) >= 0.5).tolist()
    torch.manual_seed(123)
    out = encoder(x)
    assert [f is not None for f in out.ffn_outputs] == expected_keep


def test_bad_layer_keep_and_padding_mask_rejected():
    encoder = TransformerEncoder(small_config()).train()
    x = torch.randn(1, 5, 16)
    with pytest.raises(ValueError, match=r"layer_keep must be a bool tensor of shape \(3,\)"):
        encoder(x, layer_keep=torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="padding_mask must be bool of shape"):
        encoder(x, padding_mask=torch.zeros(1, 4, dtype=torch.bool))


def test_padded_rows_have_no_nan_even_when_fully_padded():
    torch.manual_seed(0)
    encoder = TransformerEncoder(small_config()).eval()
    x = torch.randn(3, 6, 16)
    padding_mask = torch.zeros(3, 6, dtype=torch.bool)
    padding_mask[1, 2:] = True
    padding_mask[2, :] = True
    with torch.no_grad():
        out = encoder(x, padding_mask)
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
    assert all(torch.isfinite(f).all() for f in out.ffn_outputs)


def test_ffn_outputs_are_taken_before_dropout_in_training():
    torch.manual_seed(0)
    encoder = TransformerEncoder(small_config(dropout=0.5)).train()
    captured = []
    for layer in encoder.layers:
        layer.feed_forward.output_dense.register_forward_hook(
            lambda module, inputs, output: captured.append(output)
        )
    out = encoder(torch.randn(2, 6, 16))
    assert len(captured) == 3
    for ffn_output, fc2_output in zip(out.ffn_outputs, captured):
        assert torch.equal(ffn_output, fc2_output)
