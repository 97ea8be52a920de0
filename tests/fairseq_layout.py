"""The fairseq key layout, written out from anchors_compat A.4 as an independent reference for the
checkpoint tests (deliberately not the converter's own table)."""

import re

import torch

# our (= Hugging Face) key -> fairseq key, read right to left from the A.4 table
HF_TO_FAIRSEQ = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (
        r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
        r"feature_extractor.conv_layers.\1.2.1.",
    ),
    (r"feature_projection\.projection\.", "post_extract_proj."),
    (r"feature_projection\.layer_norm\.", "layer_norm."),
    (r"masked_spec_embed", "mask_emb"),
    (r"encoder\.pos_conv_embed\.layers\.(\d+)\.conv\.", r"encoder.pos_conv.\1.0."),
    (r"encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
]


def to_fairseq_key(key: str) -> str:
    """Rename one encoder key to fairseq; keys with the same name in both layouts pass through."""
    for pattern, replacement in HF_TO_FAIRSEQ:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    assert key.startswith(("encoder.layer_norm.", "encoder.layers.")), key
    return key


# --------------------------------------------------------------------------- data2vec 2.0
# Data2VecMultiModel (audio only), read off fairseq's examples/data2vec/models/{data2vec2.py,
# modalities/{base,audio,modules}.py}: our key -> fairseq key, with AUDIO = the audio encoder.
D2V2_AUDIO = "modality_encoders.AUDIO."
D2V2_ENCODER = [
    (
        r"feature_extractor\.conv_layers\.(\d+)\.conv\.",
        D2V2_AUDIO + r"local_encoder.conv_layers.\1.0.",
    ),
    (
        r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
        D2V2_AUDIO + r"local_encoder.conv_layers.\1.2.1.",
    ),
    (r"feature_projection\.layer_norm\.", D2V2_AUDIO + "project_features.1."),
    (r"feature_projection\.projection\.", D2V2_AUDIO + "project_features.2."),
    (r"encoder\.layer_norm\.", D2V2_AUDIO + "context_encoder.norm."),
]
# inside one block (AltBlock); q/k/v are fused into attn.qkv
D2V2_BLOCK = [
    ("attention.out_proj.", "attn.proj."),
    ("layer_norm.", "norm1."),
    ("final_layer_norm.", "norm2."),
    ("feed_forward.intermediate_dense.", "mlp.fc1."),
    ("feed_forward.output_dense.", "mlp.fc2."),
]
# the decoder (Decoder1d): blocks are Sequential(Conv1d, SamePad, ..., GELU); proj one Linear
D2V2_DECODER = [(r"blocks\.(\d+)\.conv\.", r"blocks.\1.0."), (r"proj\.", "proj.")]


def _d2v2_block_prefix(layer: int, prenet_depth: int) -> str:
    """Prenet blocks (Large) live in the audio encoder's context_encoder, the rest in `blocks`."""
    if layer < prenet_depth:
        return f"{D2V2_AUDIO}context_encoder.blocks.{layer}."
    return f"blocks.{layer - prenet_depth}."


def _d2v2_block_rest(rest: str) -> str:
    for ours, theirs in D2V2_BLOCK:
        if rest.startswith(ours):
            return theirs + rest[len(ours) :]
    raise AssertionError(rest)


def to_data2vec2_state(state, prenet_depth=0, skip_masked_spec_embed=True):
    """Our encoder (or teacher, keys with `encoder.`) state dict -> fairseq v2 model keys."""
    out, qkv = {}, {}
    for key, value in state.items():
        if key == "masked_spec_embed" and skip_masked_spec_embed:
            continue
        if key == "encoder.alibi_scale":
            out[D2V2_AUDIO + "alibi_scale"] = value.reshape(1, 1, -1, 1, 1).clone()
            continue
        match = re.match(r"encoder\.pos_conv_embed\.layers\.(\d+)\.conv\.(.+)", key)
        if match:
            index = int(match.group(1)) + 1  # TransposeLast comes first in the Sequential
            out[f"{D2V2_AUDIO}relative_positional_encoder.{index}.0.{match.group(2)}"] = value
            continue
        match = re.match(r"encoder\.layers\.(\d+)\.(.+)", key)
        if match:
            layer, rest = int(match.group(1)), match.group(2)
            proj = re.match(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if proj:
                qkv.setdefault((layer, proj.group(2)), {})[proj.group(1)] = value
            else:
                out[_d2v2_block_prefix(layer, prenet_depth) + _d2v2_block_rest(rest)] = value
            continue
        for pattern, replacement in D2V2_ENCODER:
            if re.match(pattern, key):
                out[re.sub(pattern, replacement, key, count=1)] = value
                break
        else:
            raise AssertionError(key)
    for (layer, kind), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        out[f"{_d2v2_block_prefix(layer, prenet_depth)}attn.qkv.{kind}"] = fused
    return out


def decoder_to_data2vec2(state):
    """Our ConvDecoder1d state dict -> fairseq `modality_encoders.AUDIO.decoder.*`."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in D2V2_DECODER:
            if re.match(pattern, key):
                out[D2V2_AUDIO + "decoder." + re.sub(pattern, replacement, key, count=1)] = value
                break
        else:
            raise AssertionError(key)
    return out
