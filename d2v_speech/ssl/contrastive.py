"""Cross-contrastive InfoNCE that down-weights same-cluster negatives (data2vec-aqc, ccc-wav2vec).

Two modes:

* default (fixed): a negative in its positive's cluster always loses weight in the softmax: its
  logit gets ``+ log(scale_factor)``, i.e. its ``exp`` is multiplied by ``scale_factor``, whatever
  the sign of its similarity.
* ``official_cluster_scaling=True``: the fork's exact behaviour. Only when some negative is
  bit-identical to its positive somewhere in the call, same-cluster logits (cos / temperature) are
  *multiplied* by ``scale_factor``; that raises the weight of negatives with negative similarity,
  and in calls without any such duplicate nothing is scaled at all.

:func:`cluster_scaled_contrastive_loss` takes the negatives as vectors (N, M, C);
:func:`within_utterance_contrastive_loss` computes the same loss from the candidates of each
utterance and the negatives' frame indices, without building the (N, B, M, C) negatives (what
the aqc objective uses: at the tiny demo size that took its contrastive forward from ~1.2 s to
~0.01 s per step on one CPU thread, ``benchmarks/results/pretrain_step.md``).
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
    _check_settings(scale_factor, logit_temperature)


def _check_indexed_inputs(
    anchor: torch.Tensor,
    candidates: torch.Tensor,
    neg_index: torch.Tensor,
    same_cluster: torch.Tensor,
) -> None:
    """Raise ValueError on inconsistent shapes for :func:`within_utterance_contrastive_loss`."""
    if anchor.dim() != 3 or candidates.shape != anchor.shape:
        raise ValueError(
            "anchor and candidates must both be (B, M, C), got "
            f"{tuple(anchor.shape)} and {tuple(candidates.shape)}"
        )
    batch, frames = anchor.shape[:2]
    if neg_index.dim() != 3 or tuple(neg_index.shape[1:]) != (batch, frames):
        raise ValueError(f"neg_index must be (N, {batch}, {frames}), got {tuple(neg_index.shape)}")
    if neg_index.dtype != torch.long:
        raise ValueError(f"neg_index must be a long tensor, got {neg_index.dtype}")
    if same_cluster.shape != neg_index.shape or same_cluster.dtype != torch.bool:
        raise ValueError(
            f"same_cluster must be a bool tensor of shape {tuple(neg_index.shape)}, "
            f"got {same_cluster.dtype} {tuple(same_cluster.shape)}"
        )


def _check_settings(scale_factor: float, logit_temperature: float) -> None:
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
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        anchor, positive, negatives = anchor.float(), positive.float(), negatives.float()
        neg_is_pos = (negatives == positive.unsqueeze(0)).all(dim=-1)
        unit_anchor = _unit(anchor)
        positive_logits = (unit_anchor * _unit(positive)).sum(dim=-1)
        negative_logits = torch.einsum("mc,nmc->mn", unit_anchor, _unit(negatives))
        return _scaled_info_nce(
            positive_logits / logit_temperature,
            negative_logits / logit_temperature,
            neg_is_pos.T,
            same_cluster.T,
            scale_factor,
            official_cluster_scaling,
        )


def within_utterance_contrastive_loss(
    anchor: torch.Tensor,
    candidates: torch.Tensor,
    neg_index: torch.Tensor,
    same_cluster: torch.Tensor,
    scale_factor: float = 0.3,
    logit_temperature: float = 0.1,
    official_cluster_scaling: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`cluster_scaled_contrastive_loss` for negatives drawn within each utterance, without
    materialising the (N, B, M, C) negatives.

    The positive of frame (b, m) is ``candidates[b, m]`` and its negative n is
    ``candidates[b, neg_index[n, b, m]]``; frames are flattened b-major, as
    ``cluster_scaled_contrastive_loss(anchor.reshape(-1, C), candidates.reshape(-1, C),
    gathered negatives (N, B * M, C), same_cluster.reshape(N, -1))`` would see them, and the
    result is the same up to float rounding. The cosines of all frame pairs of an utterance come
    from one batched matmul (B, M, M) and are then gathered, which costs B * M * M * C
    multiply-adds instead of building N * B * M * C negative vectors (and their gradient).

    Arguments
    ---------
    anchor : torch.Tensor
        (B, M, C) predictions at the masked frames.
    candidates : torch.Tensor
        (B, M, C) the targets (positives) of the same frames, which also serve as negatives.
    neg_index : torch.Tensor
        (N, B, M) long, frame index in ``[0, M)`` of each negative within its utterance.
    same_cluster : torch.Tensor
        (N, B, M) bool, True where a negative shares its positive's k-means cluster.
    scale_factor, logit_temperature, official_cluster_scaling
        As in :func:`cluster_scaled_contrastive_loss`.

    Returns
    -------
    loss_sum, stats
        As :func:`cluster_scaled_contrastive_loss`, over the B * M frames.
    """
    _check_indexed_inputs(anchor, candidates, neg_index, same_cluster)
    _check_settings(scale_factor, logit_temperature)
    batch, frames, _ = anchor.shape
    num_negatives = neg_index.shape[0]
    # (B, M, N) layout: row (b, m) of the logits lists frame m's negatives contiguously
    index = neg_index.permute(1, 2, 0)
    with torch.autocast(device_type=anchor.device.type, enabled=False):
        anchor, candidates = anchor.float(), candidates.float()
        cosines = _unit(anchor) @ _unit(candidates).transpose(1, 2)
        positive_logits = cosines.diagonal(dim1=1, dim2=2).reshape(-1)
        negative_logits = cosines.gather(2, index).reshape(batch * frames, num_negatives)
        neg_is_pos = _gathered_row_equals_own(candidates.detach(), index)
        return _scaled_info_nce(
            positive_logits / logit_temperature,
            negative_logits / logit_temperature,
            neg_is_pos.reshape(batch * frames, num_negatives),
            same_cluster.permute(1, 2, 0).reshape(batch * frames, num_negatives),
            scale_factor,
            official_cluster_scaling,
        )


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x / max(||x||, 1e-8) over the last dim, as ``F.cosine_similarity`` normalises (fp32)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-8)


def _gathered_row_equals_own(candidates: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, M, N) bool: ``candidates[b, index[b, m, n]] == candidates[b, m]`` in every channel.

    Exact, like ``(negatives == positive).all(-1)``. Candidate pairs are found first through an
    exact integer fingerprint (the sum of each row's float bit patterns, after ``+ 0.0`` maps -0.0
    to 0.0, so rows equal under ``==`` always share it); only those pairs are compared channel by
    channel.
    """
    batch, frames, _ = candidates.shape
    bits = (candidates + 0.0).view(torch.int32).to(torch.int64).sum(dim=-1)
    own = bits.unsqueeze(2).expand_as(index)
    flat_index = index.reshape(batch, -1)
    other = bits.gather(1, flat_index).view_as(index)
    rows, frames_at, slots = torch.nonzero(own == other, as_tuple=True)
    equal = torch.zeros(index.shape, dtype=torch.bool, device=index.device)
    partners = index[rows, frames_at, slots]
    same = (candidates[rows, frames_at] == candidates[rows, partners]).all(dim=-1)
    equal[rows, frames_at, slots] = same
    return equal


def _scaled_info_nce(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    neg_is_pos: torch.Tensor,
    same_cluster: torch.Tensor,
    scale_factor: float,
    official_cluster_scaling: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Excluded duplicates, cluster scaling and the summed cross-entropy.

    positive_logits (M,), negative_logits / neg_is_pos / same_cluster (M, N).
    """
    negative_logits = negative_logits.masked_fill(neg_is_pos, float("-inf"))
    if official_cluster_scaling:
        # the fork scales only inside its `if neg_is_pos.any()` branch; a tensor condition keeps
        # that rule without a host sync
        applied = neg_is_pos.any()
        negative_logits = torch.where(
            same_cluster & applied, negative_logits * scale_factor, negative_logits
        )
    else:
        applied = torch.ones((), dtype=torch.bool, device=negative_logits.device)
        negative_logits = torch.where(
            same_cluster, negative_logits + math.log(scale_factor), negative_logits
        )
    logits = torch.cat([positive_logits.unsqueeze(1), negative_logits], dim=1)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss_sum = F.cross_entropy(logits, target, reduction="sum")
    return loss_sum, _statistics(logits.detach(), neg_is_pos, same_cluster, applied)


def _statistics(
    logits: torch.Tensor, neg_is_pos: torch.Tensor, same_cluster: torch.Tensor, scaled: torch.Tensor
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
        "cluster_scaling_applied": scaled.float(),
    }
