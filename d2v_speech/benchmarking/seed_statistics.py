"""Statistics over fine-tuning seeds: mean and spread, relative gains, and a clear-win test."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["SeedSummary", "summarize", "relative_gain", "clearly_lower"]


class SeedSummary(dict):
    """``{"mean", "std", "n", "values"}``; ``std`` is the sample std (n - 1), NaN for one seed."""

    @property
    def mean(self) -> float:
        return self["mean"]

    @property
    def std(self) -> float:
        return self["std"]

    def show(self, digits: int = 2) -> str:
        """'m ± s (n)', or just 'm (1)' for a single seed."""
        if self["n"] == 0:
            return "-"
        if self["n"] == 1:
            return f"{self.mean:.{digits}f} (1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} ({self['n']})"


def summarize(values: Sequence[float]) -> SeedSummary:
    """Mean and sample standard deviation of the seeds' values."""
    values = [float(v) for v in values]
    if not values:
        return SeedSummary(mean=math.nan, std=math.nan, n=0, values=[])
    spread = statistics.stdev(values) if len(values) > 1 else math.nan
    return SeedSummary(mean=statistics.fmean(values), std=spread, n=len(values), values=values)


def relative_gain(reference: float, value: float) -> float:
    """Relative reduction of an error rate, in %: (reference - value) / reference * 100."""
    if reference == 0 or math.isnan(reference) or math.isnan(value):
        return math.nan
    return (reference - value) / reference * 100.0


def clearly_lower(arm: SeedSummary, reference: SeedSummary, min_seeds: int = 3) -> bool:
    """True when ``arm``'s mean is below ``reference``'s by more than two standard deviations of
    the seeds (the larger of the two), both with at least ``min_seeds`` seeds."""
    if arm["n"] < min_seeds or reference["n"] < min_seeds:
        return False
    margin = 2.0 * max(arm.std, reference.std)
    return reference.mean - arm.mean > margin
