"""EncoderConfig: presets, dict/YAML round trips, frame arithmetic and validation."""

from pathlib import Path

import pytest

from d2v_speech.nn.config import DEFAULT_CONV_LAYERS, EncoderConfig

PRESETS = Path(__file__).resolve().parents[2] / "hparams" / "model"


def naive_num_frames(num_samples, conv_layers):
    length = num_samples
    for _, kernel, stride in conv_layers:
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def test_defaults_match_fairseq_base_layout():
    config = EncoderConfig()
    assert config.conv_layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    # anchors_compat A.1: 320x downsampling (20 ms), 400-sample receptive field (25 ms)
    assert config.total_stride == 320
    assert config.receptive_field == 400
    assert config.cnn_dim == 512 and config.head_dim == 64


def test_num_frames_matches_naive_loop_and_published_values():
    config = EncoderConfig()
    for num_samples in [0, 1, 399, 400, 401, 719, 720, 721, 16000, 32000, 123457, 320000]:
        assert config.num_frames(num_samples) == naive_num_frames(num_samples, DEFAULT_CONV_LAYERS)
    # data2vec2_audio.md section 0: T = 999 for 20 s and 99 for 2 s at 16 kHz
    assert config.num_frames(320000) == 999
    assert config.num_frames(32000) == 99
    assert config.num_frames(399) == 0 and config.num_frames(400) == 1


def test_receptive_field_is_shortest_input_with_a_frame():
    config = EncoderConfig(conv_layers=[(8, 7, 3), (8, 4, 2), (8, 3, 3)], embed_dim=48)
    shortest = next(n for n in range(1, 200) if naive_num_frames(n, config.conv_layers) > 0)
    assert config.receptive_field == shortest


def test_dict_round_trip_and_unknown_keys_named():
    config = EncoderConfig(embed_dim=64, num_heads=4, pos_conv_groups=8, layer_norm_first=True)
    values = config.to_dict()
    assert values["conv_layers"][0] == [512, 10, 5]
    assert EncoderConfig.from_dict(values) == config
    with pytest.raises(ValueError, match=r"unknown EncoderConfig field\(s\): \['bogus', 'hiden'\]"):
        EncoderConfig.from_dict({**values, "hiden": 1, "bogus": 2})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"embed_dim": 100, "num_heads": 12}, "not divisible by num_heads"),
        ({"embed_dim": 96, "num_heads": 4, "pos_conv_groups": 5}, "pos_conv_groups"),
        ({"extractor_mode": "batch_norm"}, "extractor_mode"),
        ({"dropout": 1.5}, "dropout must be in"),
        ({"num_layers": 0}, "num_layers must be a positive integer"),
        ({"conv_layers": [(512, 10)]}, r"conv_layers\[0\]"),
        ({"conv_layers": []}, "non-empty"),
    ],
)
def test_invalid_values_raise(override, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**override)


def test_yaml_presets_load():
    base = EncoderConfig.from_yaml(PRESETS / "base.yaml")
    assert base == EncoderConfig()
    large = EncoderConfig.from_yaml(PRESETS / "large.yaml")
    assert (large.embed_dim, large.num_layers, large.num_heads, large.ffn_dim) == (
        1024,
        24,
        16,
        4096,
    )
    tiny = EncoderConfig.from_yaml(PRESETS / "tiny.yaml")
    assert tiny.layer_norm_first and tiny.total_stride == 320 and tiny.cnn_dim == 128


def test_yaml_with_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("embed_dim: 64\nnum_heads: 4\nnum_layerz: 2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*num_layerz"):
        EncoderConfig.from_yaml(path)
