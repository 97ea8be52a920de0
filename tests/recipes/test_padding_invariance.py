"""Padding never leaks into the data2vec-aqc objective (the aqc-specific parts).

The data2vec regression part is covered by tests/ssl/test_data2vec_objective.py. Here: the
quantizer, its perplexities, the negatives and k-means see only masked frames within each
utterance's length; arbitrary content in the padding changes nothing (loss, statistics,
gradients); and padded batches made by the real pipeline with `CropCollate(crop_to_shortest=False)`
give each utterance the regression loss it has alone.
"""

from __future__ import annotations

import pytest
import torch

import d2v_speech.ssl.cluster_scaler as cluster_scaler_module
import d2v_speech.ssl.negative_sampler as negative_sampler_module
from d2v_speech.augment import WaveformAugmenter
from d2v_speech.corpora.librispeech.prepare import prepare_librispeech
from d2v_speech.data.pipelines import CropCollate, PretrainAudioPipeline, load_pretrain_dataset
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.aqc import AQCObjective

SAMPLES = 8000
LENGTHS = (SAMPLES, 5600, 3900)
MASKED_PER_ROW = 6
NUM_NEGATIVES = 7
STAT_KEYS = (
    "loss",
    "loss_regression",
    "loss_contrastive_student",
    "loss_contrastive_teacher",
    "diversity_loss",
    "feature_penalty",
    "accuracy_student",
    "accuracy_teacher",
    "same_cluster_fraction",
    "code_perplexity",
    "prob_perplexity",
    "codes_in_use",
    "aug_code_perplexity",
    "target_var",
    "pred_var",
    "cnn_std",
)


def micro_objective(**kwargs) -> AQCObjective:
    """A small aqc objective without dropout, so that only padding could change its output."""
    config = EncoderConfig(
        conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)],
        embed_dim=32,
        num_layers=2,
        num_heads=2,
        ffn_dim=64,
        dropout=0.0,
        attention_dropout=0.0,
        layerdrop=0.0,
        pos_conv_depth=2,
        pos_conv_kernel=5,
        pos_conv_groups=4,
        layer_norm_first=True,
    )
    torch.manual_seed(0)
    options = {
        "average_top_k_layers": 2,
        "latent_vars": 16,
        "latent_groups": 2,
        "final_dim": 16,
        "num_negatives": NUM_NEGATIVES,
        "cluster_factor": 4,
        "cluster_size_from": "masked_frames",
    }
    return AQCObjective(Data2VecAudioModel(config), **{**options, **kwargs}).train()


def random_mask(frame_lengths: list[int], total_frames: int, per_row: int, seed: int):
    """(B, total_frames) bool: `per_row` random frames inside each row's valid frames."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(frame_lengths), total_frames, dtype=torch.bool)
    for row, frames in enumerate(frame_lengths):
        mask[row, torch.randperm(frames, generator=generator)[:per_row]] = True
    return mask


def padded_batch(extra: int, padding: str):
    """Clean and augmented waveforms (B, SAMPLES + extra); past each length: zeros or noise."""
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(len(LENGTHS), SAMPLES, generator=generator)
    views = [clean, clean + 0.3 * torch.randn(clean.shape, generator=generator)]
    junk = 50.0 * torch.randn(len(LENGTHS), SAMPLES + extra, generator=generator)
    padded = []
    for view in views:
        wav = junk.clone() if padding == "noise" else torch.zeros_like(junk)
        for row, length in enumerate(LENGTHS):
            wav[row, :length] = view[row, :length]
        padded.append(wav)
    return padded[0], padded[1], torch.tensor(LENGTHS)


def run_step(objective, wav, aug, lengths, mask, seed=5):
    """Forward + backward with a fixed random stream; returns (outputs, {name: grad})."""
    objective.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = objective(wav, lengths, wav_aug=aug, mask=mask)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}
    return out, grads


def test_content_and_amount_of_padding_change_nothing():
    objective = micro_objective()
    frame_lengths = objective.model.frame_lengths(torch.tensor(LENGTHS)).tolist()
    tight = padded_batch(extra=0, padding="zeros")
    frames = objective.model.config.num_frames(SAMPLES)
    mask = random_mask(frame_lengths, frames, MASKED_PER_ROW, seed=3)
    reference, reference_grads = run_step(objective, *tight, mask)

    loose = padded_batch(extra=2400, padding="noise")
    loose_frames = objective.model.config.num_frames(SAMPLES + 2400)
    loose_mask = torch.zeros(len(LENGTHS), loose_frames, dtype=torch.bool)
    loose_mask[:, :frames] = mask
    out, grads = run_step(objective, *loose, loose_mask)

    assert bool(torch.isfinite(reference["loss"]))
    for key in STAT_KEYS:
        torch.testing.assert_close(out[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(out["per_utterance_loss"], reference["per_utterance_loss"])
    assert grads.keys() == reference_grads.keys()
    for name, grad in reference_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)


def test_quantizer_negatives_and_kmeans_see_only_masked_frames_of_their_utterance(monkeypatch):
    objective = micro_objective()
    wav, aug, lengths = padded_batch(extra=2400, padding="noise")
    frame_lengths = objective.model.frame_lengths(lengths).tolist()
    frames = objective.model.config.num_frames(wav.shape[1])
    mask = random_mask(frame_lengths, frames, MASKED_PER_ROW, seed=4)

    quantizer_inputs, projected_q, kmeans_points, negative_draws = [], [], [], []
    objective.quantizer.register_forward_pre_hook(
        lambda module, args: quantizer_inputs.append(args[0].detach().clone())
    )
    objective.project_q.register_forward_hook(
        lambda module, args, output: projected_q.append(output.detach().clone())
    )
    real_kmeans = cluster_scaler_module.cosine_kmeans
    real_negatives = negative_sampler_module.sample_negatives

    def recording_kmeans(points, *args, **kwargs):
        kmeans_points.append(points.detach().clone())
        return real_kmeans(points, *args, **kwargs)

    def recording_negatives(y, *args, **kwargs):
        negatives, index = real_negatives(y, *args, **kwargs)
        negative_draws.append((tuple(y.shape[:2]), index.clone()))
        return negatives, index

    monkeypatch.setattr(cluster_scaler_module, "cosine_kmeans", recording_kmeans)
    monkeypatch.setattr(negative_sampler_module, "sample_negatives", recording_negatives)
    torch.manual_seed(6)
    out = objective(wav, lengths, wav_aug=aug, mask=mask)

    batch_size = len(LENGTHS)
    with torch.no_grad():
        views = [objective.frontend(wav, lengths), objective.frontend(aug, lengths)]
    assert len(quantizer_inputs) == 2
    for captured, view in zip(quantizer_inputs, views, strict=True):
        expected = torch.stack([view.normed[b][mask[b]] for b in range(batch_size)])
        torch.testing.assert_close(captured, expected)

    # negatives: per utterance, indices among its own M masked frames, never the frame itself
    assert len(negative_draws) == 2
    own = torch.arange(MASKED_PER_ROW).view(1, 1, -1)
    for shape, index in negative_draws:
        assert shape == (batch_size, MASKED_PER_ROW)
        assert tuple(index.shape) == (NUM_NEGATIVES, batch_size, MASKED_PER_ROW)
        assert int(index.min()) >= 0 and int(index.max()) < MASKED_PER_ROW
        assert not bool((index == own).any())

    # k-means: exactly the masked frames' quantized vectors of both views
    assert len(kmeans_points) == 1 and len(projected_q) == 2
    expected_points = torch.cat([q.reshape(-1, q.shape[-1]) for q in projected_q])
    assert kmeans_points[0].shape[0] == 2 * batch_size * MASKED_PER_ROW
    torch.testing.assert_close(kmeans_points[0], expected_points)

    # perplexities by the wav2vec 2.0 formula over the clean view's masked frames only
    flat = quantizer_inputs[0].reshape(-1, quantizer_inputs[0].shape[-1])
    with torch.no_grad():
        logits = objective.quantizer.weight_proj(flat).view(flat.shape[0], 2, -1)
    hard = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0)
    soft = torch.softmax(logits, dim=-1).mean(0)

    def perplexity(probs):
        return sum(
            torch.exp(-(p[p > 0] * torch.log(p[p > 0])).sum()).item() for p in probs.unbind(0)
        )

    assert out["code_perplexity"].item() == pytest.approx(perplexity(hard), rel=1e-4)
    assert out["prob_perplexity"].item() == pytest.approx(perplexity(soft), rel=1e-4)


@pytest.fixture(scope="module")
def pipeline_items(recipe_corpus, tmp_path_factory):
    """The three shortest utterances through the pretraining pipeline (clean + augmented)."""
    prepared = tmp_path_factory.mktemp("prepared")
    prepare_librispeech(recipe_corpus, prepared, splits=["train-clean-100"], progress=False)
    pipeline = PretrainAudioPipeline(augmenter=WaveformAugmenter(seed=7), seed=7)
    pipeline.epoch = 2
    dataset = load_pretrain_dataset(
        [str(prepared / "train-clean-100.csv")], str(recipe_corpus), pipeline, min_duration=2.0
    )
    shortest = sorted(
        range(len(dataset)), key=lambda i: float(dataset.data[dataset.data_ids[i]]["duration"])
    )
    return [dataset[i] for i in shortest[:3]]  # 2.2, 2.3 and 3.0 s


def test_padded_pipeline_batch_gives_each_utterance_its_single_utterance_loss(pipeline_items):
    max_samples = 40000
    collate = CropCollate(crop_to_shortest=False, max_samples=max_samples, seed=3)
    collate.epoch = 2
    batch = collate(pipeline_items)
    lengths = batch["lengths"]
    assert len(set(lengths.tolist())) == len(pipeline_items), "the batch needs padding"
    assert int(lengths.max()) == max_samples, "the batch needs a cropped utterance"

    objective = micro_objective()
    frame_lengths = objective.model.frame_lengths(lengths).tolist()
    frames = objective.model.config.num_frames(batch["sig"].shape[1])
    mask = random_mask(frame_lengths, frames, MASKED_PER_ROW, seed=8)
    with torch.no_grad():
        together = objective(batch["sig"], lengths, wav_aug=batch["sig_aug"], mask=mask)
        for row, item in enumerate(pipeline_items):
            single = collate([item])
            assert torch.equal(single["sig"][0], batch["sig"][row, : lengths[row]])
            alone = objective(
                single["sig"],
                single["lengths"],
                wav_aug=single["sig_aug"],
                mask=mask[row : row + 1, : frame_lengths[row]],
            )
            torch.testing.assert_close(
                together["per_utterance_loss"][row],
                alone["per_utterance_loss"][0],
                rtol=1e-4,
                atol=1e-5,
                msg=f"utterance {item['id']}",
            )
