"""Cross-contrastive InfoNCE that down-weights same-cluster negatives (data2vec-aqc, ccc-wav2vec).

Two modes:

* default (fixed): a negative in its positive's cluster always loses weight in the softmax: its
  logit gets ``+ log(scale_factor)``, i.e. its ``exp`` is multiplied by ``scale_factor``, whatever
  the sign of its similarity.
* ``official_cluster_scaling=True``: the fork's exact behaviour. Only when some negative is
  bit-identical to its positive somewhere in the call, same-cluster logits (cos / temperature) are
  *multiplied* by ``scale_factor``; that raises the weight of negatives with negative similarity,
  and in calls without any such duplicate nothing is scaled at all.
"""

import math

import torch
import torch.nn.functional as F


def _check_inputs(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    same_cluster: torch.Tensor,
    scale_factor: float,
    logit_temperature: float,
) -> None:
    """Raise ValueError on inconsistent shapes or settings."""
    if anchor.dim() != 2 or positive.shape != anchor.shape:
        raise ValueError(
            "anchor and positive must both be (M, C), got "
            f"{tuple(anchor.shape)} and {tuple(positive.shape)}"
        )
    if negatives.dim() != 3 or negatives.shape[1:] != anchor.shape:
        raise ValueError(
            f"negatives must be (N, {anchor.shape[0]}, {anchor.shape[1]}), "
            f"got {tuple(negatives.shape)}"
        )
    if same_cluster.shape != negatives.shape[:2] or same_cluster.dtype != torch.bool:
        raise ValueError(
            f"same_cluster must be a bool tensor of shape {tuple(negatives.shape[:2])}, "
            f"got {same_cluster.dtype} {tuple(same_cluster.shape)}"
        )
    if not 0 < scale_factor <= 1:
        raise ValueError(f"scale_factor must be in (0, 1], got {scale_factor}")
    if logit_temperature <= 0:
        raise ValueError(f"logit_temperature must be > 0, got {logit_temperature}")


def cluster_scaled_contrastive_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    same_cluster: torch.Tensor,
    scale_factor: float = 0.3,
    logit_temperature: float = 0.1,
    official_cluster_scaling: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InfoNCE over cosine logits, target = the positive, summed over frames (fairseq).

    Computed in fp32 whatever the input dtype. Negatives bit-identical to their positive are
    excluded (logit -inf) in both modes.

    Arguments
    ---------
    anchor : torch.Tensor
        (M, C) predictions (e.g. projected student or teacher outputs at masked frames).
    positive : torch.Tensor
        (M, C) the matching targets (quantized frames of the other view).
    negatives : torch.Tensor
        (N, M, C) distractors for each frame.
    same_cluster : torch.Tensor
        (N, M) bool, True where a negative shares its positive's k-means cluster.
    scale_factor : float
        Down-weighting factor in (0, 1] for same-cluster negatives.
    logit_temperature : float
        Cosine similarities are divided by it.
    official_cluster_scaling : bool
        Reproduce the fork's conditional, sign-dependent logit scaling (see module docstring).

    Returns
    -------
    loss_sum : torch.Tensor
        Scalar fp32, cross-entropy summed over the M frames.
    stats : dict of torch.Tensor
        Detached scalars: ``accuracy`` (positive ranked strictly first), ``correct``, ``count``,
        ``neg_is_pos_fraction``, ``same_cluster_fraction`` and ``cluster_scaling_applied`` (0/1).
    """
    _check_inputs(anchor, positive, negatives, same_cluster, scale_factor, logit_temperature)
    anchor, positive, negatives = anchor.float(), positive.float(), negatives.float()
    neg_is_pos = (negatives == positive.unsqueeze(0)).all(dim=-1)
    targets = torch.cat([positive.unsqueeze(0), negatives], dim=0)
    logits = F.cosine_similarity(anchor.unsqueeze(0), targets, dim=-1) / logit_temperature
    positive_logits, negative_logits = logits[:1], logits[1:]

    negative_logits = negative_logits.masked_fill(neg_is_pos, float("-inf"))
    if official_cluster_scaling:
        # the fork scales only inside its `if neg_is_pos.any()` branch; this branch syncs the device
        apply_scaling = bool(neg_is_pos.any())
        if apply_scaling:
            negative_logits = torch.where(
                same_cluster, negative_logits * scale_factor, negative_logits
            )
    else:
        apply_scaling = True
        negative_logits = torch.where(
            same_cluster, negative_logits + math.log(scale_factor), negative_logits
        )
    logits = torch.cat([positive_logits, negative_logits], dim=0).transpose(0, 1)

    num_frames = logits.shape[0]
    target = torch.zeros(num_frames, dtype=torch.long, device=logits.device)
    loss_sum = F.cross_entropy(logits, target, reduction="sum")
    return loss_sum, _statistics(logits.detach(), neg_is_pos, same_cluster, apply_scaling)


def _statistics(
    logits: torch.Tensor, neg_is_pos: torch.Tensor, same_cluster: torch.Tensor, scaled: bool
) -> dict[str, torch.Tensor]:
    """Accuracy as fairseq's wav2vec criterion counts it. logits: (M, 1 + N)."""
    count = logits.shape[0]
    # a frame whose logits are all equal has argmax == argmin == 0 and is not counted correct
    correct = ((logits.argmax(-1) == 0) & (logits.argmin(-1) != 0)).sum()
    zero = logits.new_zeros(())
    return {
        "accuracy": correct.float() / max(count, 1),
        "correct": correct,
        "count": torch.tensor(count, device=logits.device),
        "neg_is_pos_fraction": neg_is_pos.float().mean() if neg_is_pos.numel() else zero,
        "same_cluster_fraction": same_cluster.float().mean() if same_cluster.numel() else zero,
        "cluster_scaling_applied": torch.tensor(float(scaled), device=logits.device),
    }
