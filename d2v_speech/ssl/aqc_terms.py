"""What data2vec-aqc adds to the loss of either engine (1.0: AQCObjective, 2.0: AQC2Objective):
the weighted sum of its terms, their logged statistics, and the quantizer's temperature step.

    loss = regression + w_s * contrastive_student + w_t * contrastive_teacher
           + diversity_weight * diversity + feature_penalty_weight * feature_penalty
"""

from __future__ import annotations

import torch

from d2v_speech.nn.quantizer import QuantizerOutput

__all__ = ["AQCTerms", "codes_in_use"]


def codes_in_use(codes: torch.Tensor, num_vars: int) -> torch.Tensor:
    """Distinct codes chosen per group, summed over groups; codes (N, G) long -> scalar long.

    One scatter instead of a ``unique`` per group (no host sync).
    """
    used = torch.zeros(codes.shape[1], num_vars, dtype=torch.bool, device=codes.device)
    used.scatter_(1, codes.T, True)
    return used.sum()


class AQCTerms:
    """Mixin for an objective with ``contrastive_head``, ``quantizer``, ``diversity_weight``
    and ``feature_penalty_weight``; put it before the engine in the bases."""

    def aqc_loss(
        self,
        loss_regression: torch.Tensor,
        contrastive: tuple[torch.Tensor, torch.Tensor],
        contrastive_stats: tuple[dict, dict],
        quant_clean: QuantizerOutput,
        penalty: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, detached statistics of its terms) from the student and teacher terms."""
        (loss_s, loss_t), (stats_s, stats_t) = contrastive, contrastive_stats
        weight_s, weight_t = self.contrastive_head.weights
        loss = (
            loss_regression
            + weight_s * loss_s
            + weight_t * loss_t
            + self.diversity_weight * quant_clean.diversity_loss
            + self.feature_penalty_weight * penalty
        )
        return loss, {
            "loss_contrastive_student": loss_s.detach(),
            "loss_contrastive_teacher": loss_t.detach(),
            "diversity_loss": quant_clean.diversity_loss.detach(),
            "feature_penalty": penalty.detach(),
            "accuracy_student": stats_s["accuracy"],
            "accuracy_teacher": stats_t["accuracy"],
            "same_cluster_fraction": stats_s["same_cluster_fraction"],
        }

    def code_statistics(
        self, quant_clean: QuantizerOutput, quant_aug: QuantizerOutput
    ) -> dict[str, torch.Tensor]:
        """Codebook use of both views (detached scalars)."""
        codes = quant_clean.codes.reshape(-1, quant_clean.codes.shape[-1])
        return {
            "code_perplexity": quant_clean.code_perplexity.detach(),
            "prob_perplexity": quant_clean.prob_perplexity.detach(),
            "codes_in_use": codes_in_use(codes, self.quantizer.num_vars),
            "aug_code_perplexity": quant_aug.code_perplexity.detach(),
            "gumbel_temperature": torch.tensor(quant_clean.temperature),
        }

    def after_optimizer_step(self, num_updates: int | None = None) -> None:
        """The engine's step (EMA teacher), then the quantizer's temperature for the update."""
        super().after_optimizer_step(num_updates)
        if num_updates is not None:
            self.quantizer.set_num_updates(num_updates)
