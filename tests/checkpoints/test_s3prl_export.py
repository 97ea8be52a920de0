"""Export to s3prl's converted data2vec checkpoint (SUPERB upstream `data2vec_custom`): an exact
round trip, and s3prl 0.4.18's own `UpstreamExpert` giving our hidden states (1e-4)."""

import pytest
import torch
from export_helpers import small_config, speech_waveform, trained_checkpoint

from d2v_speech.checkpoints import LoadedCheckpoint, load_checkpoint, main as checkpoints_main
from d2v_speech.checkpoints.s3prl_export import (
    FormatError,
    export_s3prl,
    is_s3prl_checkpoint,
    load_s3prl,
    s3prl_checkpoint,
)
from d2v_speech.data.pipelines import normalize_waveform

CONFIGS = {
    "post_ln": {},
    "pre_ln_group_norm": {"layer_norm_first": True, "extractor_mode": "group_norm"},
}


def s3prl_interfaces():
    """s3prl's data2vec `UpstreamExpert` and SUPERB's `Featurizer`, imported directly: `s3prl.hub`
    imports every upstream, some of which need torchaudio APIs removed in 2.9."""
    try:
        from s3prl.upstream.data2vec.expert import UpstreamExpert
        from s3prl.upstream.interfaces import Featurizer
    except ImportError as error:
        pytest.skip(f"s3prl is not installed ({error}); `pip install s3prl==0.4.18` runs this")
    return UpstreamExpert, Featurizer


def assert_same_tensors(ours, theirs):
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_round_trip_is_exact_and_keeps_the_encoder_only(tmp_path):
    original = trained_checkpoint(small_config(**CONFIGS["pre_ln_group_norm"]), aqc=True)
    path = export_s3prl(original, tmp_path / "upstream.pt")
    content = torch.load(path, weights_only=True)
    assert sorted(content) == ["model_cfg", "model_weight", "task_cfg"]
    assert is_s3prl_checkpoint(content) and content["model_weight"]["_ema"] == {}
    assert content["task_cfg"]["normalize"] is True
    loaded = load_s3prl(content)
    assert loaded.source_format == "s3prl" and loaded.config == original.config
    assert_same_tensors(loaded.encoder_state, original.encoder_state)
    # the teacher, the aqc heads and final_proj do not go to s3prl (strict load there)
    assert loaded.teacher_state is None and loaded.heads == {} and loaded.normalize is True
    # the file reads back through the general loader and the command line too
    assert_same_tensors(load_checkpoint(path).encoder_state, original.encoder_state)
    assert checkpoints_main(["inspect", str(path)]) == 0


def test_320x_downsampling_is_required():
    checkpoint = LoadedCheckpoint.from_model(
        trained_checkpoint(small_config(conv_layers=[(16, 10, 5), (16, 3, 2)])).build_encoder()
    )
    with pytest.raises(FormatError, match=r"^x\.pt: cannot be exported to s3prl: .* by 10, "):
        s3prl_checkpoint(checkpoint, source="x.pt")


def utterances():
    """A real utterance and a shorter, shifted copy: a padded batch for s3prl."""
    first = speech_waveform(24000)
    second = torch.roll(speech_waveform(24000), 3000)[:17000]
    return [first, second]


def our_hidden_states(checkpoint, wavs, normalize):
    """Our encoder on the zero-padded batch (fairseq's padding behaviour, as s3prl)."""
    if normalize:
        wavs = [normalize_waveform(wav) for wav in wavs]
    lengths = torch.tensor([len(wav) for wav in wavs])
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    model = checkpoint.build_encoder().eval()
    with torch.no_grad():
        return model(batch, lengths)


@pytest.mark.parametrize("normalize", [True, False], ids=["normalize", "raw"])
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_s3prl_upstream_gives_our_hidden_states(overrides, normalize, tmp_path):
    upstream_expert, featurizer = s3prl_interfaces()
    # the reference is the original encoder, zeroing padding once as fairseq does
    config = small_config(pos_conv_mask_padding=False, **overrides)
    original = trained_checkpoint(config, aqc=True)
    path = export_s3prl(original, tmp_path / "upstream.pt", normalize=normalize)
    expert = upstream_expert(str(path)).eval()
    wavs = utterances()
    with torch.no_grad():
        theirs = expert(wavs)["hidden_states"]
    ours = our_hidden_states(original, wavs, normalize)
    assert len(theirs) == len(ours.hidden_states) == original.config.num_layers + 1
    valid = ~ours.padding_mask
    for index, (mine, hidden) in enumerate(zip(ours.hidden_states, theirs)):
        assert hidden.shape == mine.shape, index
        assert (mine - hidden)[valid].abs().max() < 1e-4, index
    # SUPERB's weighted sum over the layers accepts the upstream: 320x, one (T, D) per utterance
    features = featurizer(expert, upstream_device="cpu")(wavs, {"hidden_states": theirs})
    assert [tuple(f.shape) for f in features] == [(74, 32), (53, 32)]
