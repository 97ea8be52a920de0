"""ms98 and STM markup of the mini Switchboard: token grammar, partial-word shares, rates."""

import re
from collections import Counter

import numpy as np
import pytest

from d2v_speech.synthetic.switchboard.markup import RATES, markup_ms98, markup_stm

MS98_TOKEN = re.compile(
    r"^(?:[a-z']+(?:-[a-z']+)*"  # word, uh-huh
    r"|\[(?:noise|laughter|vocalized-noise)\]"
    r"|\[laughter-[a-z']+\]"
    r"|[a-z]+\[[a-z]+\]-|-\[[a-z]+\][a-z]+"  # partial words
    r"|\{[a-z]+\}|[a-z]+_1|<[be]_aside>)$"
)
STM_TOKEN = re.compile(r"^(?:[A-Z']+(?:-[A-Z']+)*|\(%HESITATION\)|\((?:UH|UM)\)|\([A-Z]+-\))$")


def _words(count: int, rng) -> list[str]:
    vocabulary = ["because", "them", "i", "the", "really", "don't", "summer", "about"]
    return [vocabulary[i] for i in rng.integers(len(vocabulary), size=count)]


def test_ms98_markup_grammar_and_rates():
    rng = np.random.default_rng(0)
    tags: Counter = Counter()
    words = 0
    for _ in range(2000):
        segment = _words(10, rng)
        words += 10
        tokens = markup_ms98(segment, rng, turn_start=True)
        tags.update(token.tag for token in tokens)
        for token in tokens:
            assert MS98_TOKEN.match(token.written), token
            if token.kind == "head":  # bec[ause]-: keep = said letters / word letters
                said, unsaid = re.fullmatch(r"([a-z]+)\[([a-z]+)\]-", token.written).groups()
                assert token.spoken == said + unsaid
                assert token.keep == pytest.approx(len(said) / len(token.spoken))
            if token.kind == "tail":
                unsaid, said = re.fullmatch(r"-\[([a-z]+)\]([a-z]+)", token.written).groups()
                assert token.keep == pytest.approx(len(said) / len(token.spoken))
    assert tags["hesitation"] / words == pytest.approx(RATES["hesitation"], rel=0.15)
    event_rate = (tags["noise"] + tags["laughter"] + tags["hum"]) / words
    assert event_rate == pytest.approx(RATES["event"], rel=0.2)
    assert tags["partial"] > 0 and tags["laughter_word"] > 0 and tags["coinage"] > 0
    assert tags["reduced"] > 0 and tags["aside"] > 0


def test_stm_markup_grammar():
    rng = np.random.default_rng(1)
    seen: Counter = Counter()
    for _ in range(500):
        for token in markup_stm(_words(10, rng), rng, turn_start=False):
            assert STM_TOKEN.match(token.written), token
            seen[token.written[:2]] += 1
            if token.kind == "head":
                assert token.spoken.upper().startswith(token.written[1:-2])
    assert seen["(%"] > 0 and seen["(U"] > 0
