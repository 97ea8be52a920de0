"""The fairseq key layout, written out from anchors_compat A.4 as an independent reference for the
checkpoint tests (deliberately not the converter's own table)."""

import re

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
