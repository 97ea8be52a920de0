"""Seed statistics against numpy and the published relative-gain formula."""

from __future__ import annotations

import math

import numpy as np

from d2v_speech.benchmarking.seed_statistics import clearly_lower, relative_gain, summarize


def test_summary_is_numpys_mean_and_sample_std():
    values = [31.2, 29.8, 33.05]
    summary = summarize(values)
    assert math.isclose(summary.mean, np.mean(values))
    assert math.isclose(summary.std, np.std(values, ddof=1))
    assert summary["n"] == 3
    assert summary.show() == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (3)"
    assert math.isnan(summarize([4.0]).std) and summarize([4.0]).show() == "4.00 (1)"
    assert summarize([]).show() == "-"


def test_relative_gain_is_the_papers_relative_error_reduction():
    # the paper: test-clean WER 3.6 -> 3.1 is 13.9 % relative
    assert math.isclose(relative_gain(3.6, 3.1), (3.6 - 3.1) / 3.6 * 100)
    assert relative_gain(10.0, 12.0) < 0
    assert math.isnan(relative_gain(0.0, 1.0))


def test_a_clear_win_needs_three_seeds_and_a_gap_over_two_stds():
    scratch = summarize([40.0, 41.0, 42.0])  # std 1
    assert clearly_lower(summarize([37.0, 37.5, 38.0]), scratch)  # gap 3.5 > 2
    assert not clearly_lower(summarize([39.0, 39.5, 40.0]), scratch)  # gap 1.5
    assert not clearly_lower(summarize([30.0, 30.0]), scratch)  # two seeds only
    assert not clearly_lower(summarize([30.0, 35.0, 40.0]), scratch)  # gap 6 < 2 x std 5
