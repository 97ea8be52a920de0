"""The v1 objectives as compositions of YAML parts: parts, keys, shorthands, swapping."""

import json

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.aqc import AQCObjective
from d2v_speech.ssl.cluster_scaler import ClusterScaler, CosineKMeans
from d2v_speech.ssl.cross_contrastive import CrossContrastiveHead
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.masking import compute_span_mask
from d2v_speech.ssl.negative_sampler import NegativeSampler
from d2v_speech.ssl.span_masker import SpanMasker

CONFIG = {
    "conv_layers": [(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    "embed_dim": 16,
    "num_layers": 2,
    "num_heads": 2,
    "ffn_dim": 32,
    "pos_conv_depth": 2,
    "pos_conv_kernel": 5,
    "pos_conv_groups": 4,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "layerdrop": 0.0,
}
AQC_YAML = """
objective: !new:d2v_speech.ssl.aqc.AQCObjective
    model: !new:d2v_speech.nn.data2vec_audio.Data2VecAudioModel
        - !new:d2v_speech.nn.config.EncoderConfig {config}
    masker: !new:d2v_speech.ssl.span_masker.SpanMasker
        mask_prob: 0.5
        mask_length: 3
    teacher: !new:d2v_speech.ssl.ema.EMATeacherSettings
        decay_start: 0.9
        decay_end: 0.99
        anneal_steps: 10
    target_builder: !new:d2v_speech.ssl.target_builder.TopKTargetBuilder
        top_k: 2
    predictor: !new:d2v_speech.ssl.final_proj_predictor.FinalProjPredictor
    quantizer: !new:d2v_speech.ssl.quantizer_settings.QuantizerSettings
        num_vars: 8
        vq_dim: 16
    negative_sampler: !new:d2v_speech.ssl.negative_sampler.NegativeSampler
        num_negatives: 5
    cluster_scaler: !new:d2v_speech.ssl.cluster_scaler.ClusterScaler
        kmeans: !new:d2v_speech.ssl.cluster_scaler.CosineKMeans
            backend: torch
            num_iters: 5
        cluster_factor: 4
    contrastive_head: !new:d2v_speech.ssl.cross_contrastive.CrossContrastiveHead
        weights: [0.25, 0.75]
"""
AQC_SHORTHANDS = {
    "mask_prob": 0.5,
    "mask_length": 3,
    "ema_decay": 0.9,
    "ema_end_decay": 0.99,
    "ema_anneal_end_step": 10,
    "average_top_k_layers": 2,
    "latent_vars": 8,
    "final_dim": 16,
    "num_negatives": 5,
    "cluster_factor": 4,
    "kmeans_backend": "torch",
    "kmeans_iters": 5,
    "contrastive_weights": (0.25, 0.75),
}


def model() -> Data2VecAudioModel:
    return Data2VecAudioModel(EncoderConfig(**CONFIG))


def yaml_objective(text: str = AQC_YAML) -> AQCObjective:
    torch.manual_seed(0)
    return load_hyperpyyaml(text.replace("{config}", json.dumps(CONFIG)))["objective"]


def batch():
    generator = torch.Generator().manual_seed(1)
    wav = torch.randn(2, 3200, generator=generator)
    return wav, wav + 0.3 * torch.randn(wav.shape, generator=generator), torch.tensor([3200, 2600])


def run(objective) -> dict[str, torch.Tensor]:
    wav, aug, lengths = batch()
    torch.manual_seed(3)
    return objective.train()(wav, lengths, wav_aug=aug)


def test_span_masker_draws_what_compute_span_mask_draws():
    lengths = torch.tensor([40, 25, 31])
    masks = [
        SpanMasker(0.5, 4, 2)((3, 40), lengths, generator=torch.Generator().manual_seed(7)),
        compute_span_mask((3, 40), lengths, 0.5, 4, 2, generator=torch.Generator().manual_seed(7)),
    ]
    assert torch.equal(*masks)
    with pytest.raises(ValueError, match="mask_prob"):
        SpanMasker(mask_prob=1.5)


def test_yaml_parts_build_the_objective_the_flat_keywords_build():
    composed = yaml_objective()
    torch.manual_seed(0)
    flat = AQCObjective(model(), **AQC_SHORTHANDS)
    assert list(composed.state_dict()) == list(flat.state_dict())
    for key, value in flat.state_dict().items():
        if not key.endswith("_extra_state"):
            assert torch.equal(composed.state_dict()[key], value), key
    out, reference = run(composed), run(flat)
    for key in reference:
        torch.testing.assert_close(out[key], reference[key], rtol=0, atol=0, msg=key)
    assert composed.contrastive_head.weights == (0.25, 0.75)


def test_state_dict_keys_are_the_checkpoint_layout():
    objective = yaml_objective()
    heads = {key.split(".")[0] for key in objective.state_dict() if not key.startswith("model.")}
    assert heads == {"final_proj", "quantizer", "project_q", "contr_proj", "_extra_state"}
    assert {"final_proj.weight", "quantizer.vars", "quantizer._extra_state"} <= set(
        objective.state_dict()
    )
    assert not isinstance(objective, Data2VecObjective)
    plain = Data2VecObjective(model(), average_top_k_layers=2)
    assert {key.split(".")[0] for key in plain.state_dict()} == {
        "model",
        "final_proj",
        "_extra_state",
    }


def test_a_part_and_its_flat_fields_together_are_refused():
    with pytest.raises(ValueError, match="mask_prob"):
        Data2VecObjective(model(), masker=SpanMasker(), mask_prob=0.3, average_top_k_layers=2)
    with pytest.raises(TypeError, match="latent_vars"):
        Data2VecObjective(model(), latent_vars=8, average_top_k_layers=2)
    with pytest.raises(ValueError, match="top_k=3"):
        Data2VecObjective(model(), average_top_k_layers=3)


class EveryOtherFrame(NegativeSampler):
    """A swapped-in sampler: negatives are the frames 1..N after each frame (cyclic)."""

    def __call__(self, candidates):
        batch_size, frames, _ = candidates.shape
        offsets = torch.arange(1, self.num_negatives + 1).view(-1, 1, 1)
        index = (torch.arange(frames).view(1, 1, -1) + offsets) % frames
        return index.expand(-1, batch_size, -1).contiguous()


class OneCluster(CosineKMeans):
    """A swapped-in clusterer that puts every point in one cluster."""

    def __call__(self, points, num_clusters, seed):
        return torch.zeros(points.shape[0], dtype=torch.long)


def test_swapped_parts_are_used():
    objective = AQCObjective(
        model(),
        average_top_k_layers=2,
        latent_vars=8,
        final_dim=16,
        negative_sampler=EveryOtherFrame(num_negatives=3),
        cluster_scaler=ClusterScaler(kmeans=OneCluster(), cluster_factor=4),
        contrastive_head=CrossContrastiveHead(weights=(0.0, 1.0)),
    )
    out = run(objective)
    assert float(out["same_cluster_fraction"]) == 1.0
    index = objective.negative_indices(torch.zeros(2, 5, 4))
    assert index[:, 0, 0].tolist() == [1, 2, 3]
    # weight 0 on the student term: the loss is the teacher term plus the rest
    rest = out["loss"] - out["loss_regression"] - out["loss_contrastive_teacher"]
    expected = 0.1 * out["diversity_loss"] + 10.0 * out["feature_penalty"]
    torch.testing.assert_close(rest, expected, rtol=1e-5, atol=1e-5)
