"""Speaker pairing of the mini Switchboard: callers recur, no pair talks twice."""

from collections import Counter

import numpy as np
import pytest

from d2v_speech.synthetic.switchboard.planning import pair_speakers, pool_size
from d2v_speech.synthetic.voices import Speaker


def test_pairs_recur_but_never_repeat():
    speakers = [Speaker(i, "flite", "kal", "", 100.0, 1.0, 0.5, "seen") for i in range(7)]
    size = pool_size(12, len(speakers))
    assert size == 6 and size * (size - 1) // 2 >= 12
    pairs = pair_speakers(speakers[:size], 12, np.random.default_rng(0))
    keys = [frozenset((a.speaker_id, b.speaker_id)) for a, b in pairs]
    assert len(set(keys)) == 12 and all(len(key) == 2 for key in keys)
    uses = Counter(i for key in keys for i in key)
    assert sum(uses.values()) == 24 and max(uses.values()) - min(uses.values()) <= 1
    with pytest.raises(ValueError, match="distinct training voices"):
        pool_size(200, 10)
