"""Distractor sampling for the contrastive losses: other frames of the same utterance."""

import torch


def sample_negatives(
    y: torch.Tensor,
    num_negatives: int,
    valid_counts: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``num_negatives`` distractors per frame, uniformly from the utterance's other frames.

    For frame t of utterance b, each negative is a frame index in ``[0, valid_counts[b])`` other
    than t. Vectorised as in fairseq: draw r uniformly in ``[0, count - 1)`` and shift ``r >= t``
    up by one, which is uniform over the ``count - 1`` allowed frames. Frames at padding
    positions (t >= count) also get valid negatives. Gradients flow into ``y`` through the gather.

    Arguments
    ---------
    y : torch.Tensor
        (B, M, C) the candidate vectors (e.g. quantized masked frames).
    num_negatives : int
        N, distractors per frame (drawn with replacement).
    valid_counts : torch.Tensor, optional
        (B,) long, number of leading valid frames per utterance; default M for all.
    generator : torch.Generator, optional
        Source of randomness, on ``y``'s device.

    Returns
    -------
    negatives : torch.Tensor
        (N, B, M, C) ``negatives[n, b, t] = y[b, neg_index[n, b, t]]``.
    neg_index : torch.Tensor
        (N, B, M) long, frame index of each negative within its utterance.
    """
    if y.dim() != 3:
        raise ValueError(f"y must be (B, M, C), got shape {tuple(y.shape)}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    batch, frames, channels = y.shape
    if valid_counts is None:
        counts = torch.full((batch,), frames, dtype=torch.long, device=y.device)
    else:
        if valid_counts.shape != (batch,):
            raise ValueError(
                f"valid_counts must have shape ({batch},), got {tuple(valid_counts.shape)}"
            )
        counts = valid_counts.to(device=y.device, dtype=torch.long)
        if bool((counts > frames).any()):
            raise ValueError(f"valid_counts {counts.tolist()} exceed the {frames} frames of y")
    if bool((counts < 2).any()):
        raise ValueError(
            f"every utterance needs >= 2 valid frames to draw negatives, got {counts.tolist()}"
        )

    with torch.no_grad():
        num_choices = (counts - 1).view(1, batch, 1).double()
        uniform = torch.rand(
            (num_negatives, batch, frames),
            generator=generator,
            device=y.device,
            dtype=torch.float64,
        )
        # float64 keeps floor(u * (count - 1)) exact enough; the clamp guards the u -> 1 rounding
        neg_index = torch.minimum((uniform * num_choices).long(), (counts - 2).view(1, batch, 1))
        frame_index = torch.arange(frames, device=y.device).view(1, 1, frames)
        neg_index = neg_index + (neg_index >= frame_index).long()

    utterance_offset = (torch.arange(batch, device=y.device) * frames).view(1, batch, 1)
    negatives = y.reshape(batch * frames, channels)[(neg_index + utterance_offset).reshape(-1)]
    return negatives.view(num_negatives, batch, frames, channels), neg_index
