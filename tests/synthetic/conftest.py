"""Shared fixtures: ONE tiny embedded corpus per test session (a few seconds to generate)."""

from pathlib import Path

import pytest

from d2v_speech.synthetic.librispeech.generate import generate_corpus

TINY_HOURS = 0.02
TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Folder of a tiny corpus (about 40 utterances) generated with two worker processes."""
    out = tmp_path_factory.mktemp("tiny") / "MiniLibriSpeech"
    generate_corpus(out, hours=TINY_HOURS, seed=TINY_SEED, jobs=2, progress=False)
    return out
