"""Conv feature encoder: frame lengths, padding isolation, parity with Hugging Face modules."""

import pytest
import torch
from transformers import Data2VecAudioConfig, Wav2Vec2Config
from transformers.models.data2vec.modeling_data2vec_audio import (
    Data2VecAudioFeatureEncoder,
    Data2VecAudioFeatureProjection,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder

from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.nn.feature_encoder import FeatureEncoder, FeatureProjection

CONV = [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 2, 2)]


def small_config(**overrides):
    values = {
        "conv_layers": CONV,
        "embed_dim": 32,
        "num_layers": 1,
        "num_heads": 4,
        "ffn_dim": 64,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 5,
        "pos_conv_groups": 4,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def hf_conv_kwargs(conv_layers):
    return {
        "conv_dim": [c for c, _, _ in conv_layers],
        "conv_kernel": [k for _, k, _ in conv_layers],
        "conv_stride": [s for _, _, s in conv_layers],
    }


def perturb_(module, seed=0):
    """Move every parameter off its init (LayerNorm 1/0 etc.) so that swapped keys would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_frame_lengths_match_naive_loop_hf_and_real_output():
    torch.manual_seed(0)
    model = Data2VecAudioModel(small_config()).eval()
    hf = Data2VecAudioFeatureEncoder(Data2VecAudioConfig(**hf_conv_kwargs(CONV)))
    lengths = torch.arange(0, 700, 7)
    expected = []
    for length in lengths.tolist():
        frames = length
        for _, kernel, stride in CONV:
            frames = max((frames - kernel) // stride + 1, 0)
        expected.append(frames)
    assert model.frame_lengths(lengths).tolist() == expected
    for length in [62, 63, 100, 333, 640]:
        with torch.no_grad():
            frames = model.feature_extractor(torch.randn(1, length)).shape[1]
            hf_frames = hf(torch.randn(1, length)).shape[2]
        assert frames == hf_frames == model.frame_lengths(torch.tensor([length])).item()


def test_frame_padding_mask_marks_frames_beyond_length():
    model = Data2VecAudioModel(small_config())
    mask = model.frame_padding_mask(torch.tensor([640, 300]), num_frames=19)
    lengths = model.frame_lengths(torch.tensor([640, 300])).tolist()
    for row, length in enumerate(lengths):
        assert mask[row].tolist() == [t >= length for t in range(19)]
    assert model.frame_padding_mask(None, 19) is None


def test_layer_norm_cnn_valid_frames_never_see_padding():
    torch.manual_seed(0)
    encoder = FeatureEncoder(small_config()).eval()
    short = torch.randn(1, 300)
    # garbage (not zeros) after the valid samples: valid frames must still be identical
    padded = torch.cat([short, 5 * torch.randn(1, 340)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 640)], dim=0)
    valid = encoder.output_lengths(torch.tensor([300])).item()
    with torch.no_grad():
        alone = encoder(short)
        in_batch = encoder(batch)[0, :valid]
    assert alone.shape[1] == valid
    torch.testing.assert_close(in_batch, alone[0], rtol=0, atol=1e-6)


def test_layer_norm_encoder_and_projection_match_hf():
    torch.manual_seed(0)
    config = small_config(conv_bias=True)
    ours_cnn, ours_proj = FeatureEncoder(config).eval(), FeatureProjection(config).eval()
    hf_config = Data2VecAudioConfig(hidden_size=32, conv_bias=True, **hf_conv_kwargs(CONV))
    hf_cnn = Data2VecAudioFeatureEncoder(hf_config).eval()
    hf_proj = Data2VecAudioFeatureProjection(hf_config).eval()
    perturb_(hf_cnn)
    perturb_(hf_proj, seed=1)
    ours_cnn.load_state_dict(hf_cnn.state_dict())
    ours_proj.load_state_dict(hf_proj.state_dict())
    wav = torch.randn(2, 900)
    with torch.no_grad():
        expected = hf_cnn(wav).transpose(1, 2)
        features = ours_cnn(wav)
        hf_projected, hf_normed = hf_proj(expected)
        normed, projected = ours_proj(features)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(normed, hf_normed, rtol=0, atol=1e-5)
    torch.testing.assert_close(projected, hf_projected, rtol=0, atol=1e-5)


def test_group_norm_mode_matches_hf_wav2vec2_group_encoder():
    torch.manual_seed(0)
    config = small_config(extractor_mode="group_norm")
    ours = FeatureEncoder(config).eval()
    hf = Wav2Vec2FeatureEncoder(
        Wav2Vec2Config(feat_extract_norm="group", **hf_conv_kwargs(CONV))
    ).eval()
    perturb_(hf)
    # same keys: GroupNorm only on block 0 (`conv_layers.0.layer_norm`), bare convs after it
    assert set(ours.state_dict()) == set(hf.state_dict())
    ours.load_state_dict(hf.state_dict())
    wav = torch.randn(2, 900)
    with torch.no_grad():
        torch.testing.assert_close(ours(wav), hf(wav).transpose(1, 2), rtol=0, atol=1e-5)


def test_group_norm_mode_is_not_padding_invariant():
    """GroupNorm normalises each channel over time, so padding reaches valid frames (as fairseq)."""
    torch.manual_seed(0)
    encoder = FeatureEncoder(small_config(extractor_mode="group_norm")).eval()
    short = torch.randn(1, 300)
    with torch.no_grad():
        alone = encoder(short)
        padded = encoder(torch.cat([short, torch.zeros(1, 340)], dim=1))[:, : alone.shape[1]]
    assert (alone - padded).abs().max() > 1e-3


def test_unknown_norm_rejected():
    from d2v_speech.nn.feature_encoder import ConvBlock

    with pytest.raises(ValueError, match="unknown conv block norm 'batch'"):
        ConvBlock(1, 4, 3, 1, False, "batch")
