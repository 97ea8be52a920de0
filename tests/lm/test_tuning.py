"""LM weight tuning picks the grid point an independent brute force over the grid picks."""

import math
import random

import jiwer
import pytest
import torch

from d2v_speech.asr.decoding import LexiconDecoder
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.lm.tuning import decode_log_probs, tune_lm_weights

WORDS = ["CAT", "COT", "DOG", "DIG", "SAT", "SIT", "ON", "IN", "A", "MAT"]
LM_WEIGHTS = [0.0, 0.5, 1.0, 2.0]
WORD_SCORES = [-1.0, 0.0, 1.0]


def brute_force(references, decode, lm_weights, word_scores):
    """Reference: jiwer WER/CER (%) of every grid point; the first lowest (WER, CER) wins."""
    best, rows = None, []
    for lm_weight in lm_weights:
        for word_score in word_scores:
            hypotheses = decode(lm_weight, word_score)
            wer = 100 * jiwer.wer(references, hypotheses)
            cer = 100 * jiwer.cer(references, hypotheses)
            rows.append((lm_weight, word_score, wer, cer))
            if best is None or (wer, cer) < best[2:]:
                best = (lm_weight, word_score, wer, cer)
    return best, rows


def scripted_decoder(utterance_index_of, lm_weight, word_score):
    """A stand-in decoder whose hypotheses depend pseudo-randomly on the weights."""

    def decode(log_probs, lengths):
        index = utterance_index_of(log_probs)
        rng = random.Random(f"{lm_weight}/{word_score}/{index}")
        return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))]

    return decode


def test_tuning_matches_a_brute_force_over_the_grid():
    rng = random.Random(0)
    references = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(12)]
    # each utterance's log-probs carry its index, so the stand-in decoder can tell them apart
    log_probs = [torch.full((5 + i, 4), float(i)) for i in range(len(references))]

    def index_of(batch):
        return int(batch[0, 0, 0])

    def make_decoder(lm_weight, word_score):
        return scripted_decoder(index_of, lm_weight, word_score)

    best_weight, best_score, table = tune_lm_weights(
        log_probs, references, make_decoder, LM_WEIGHTS, WORD_SCORES
    )

    def decode_all(lm_weight, word_score):
        decoder = make_decoder(lm_weight, word_score)
        return [decoder(x[None], torch.tensor([x.shape[0]]))[0] for x in log_probs]

    expected, rows = brute_force(references, decode_all, LM_WEIGHTS, WORD_SCORES)
    assert (best_weight, best_score) == expected[:2]
    assert [(r["lm_weight"], r["word_score"]) for r in table] == [r[:2] for r in rows]
    for row, (_, _, wer, cer) in zip(table, rows, strict=True):
        assert row["wer"] == pytest.approx(wer) and row["cer"] == pytest.approx(cer)
    assert len({row["wer"] for row in table}) > 3  # the grid really varies


def test_equal_wer_is_decided_by_cer_then_by_grid_order():
    references = ["CAT SAT"]
    outputs = {(0.0, 0.0): "CAT DOG", (1.0, 0.0): "CAT SIT", (2.0, 0.0): "CAT SIT"}

    def make_decoder(lm_weight, word_score):
        return lambda log_probs, lengths: [outputs[(lm_weight, word_score)]]

    best = tune_lm_weights([torch.zeros(3, 4)], references, make_decoder, [0.0, 1.0, 2.0], [0.0])
    assert best[:2] == (1.0, 0.0)  # same WER (50 %) as 0.0, lower CER; 2.0 ties and comes later
    assert [row["wer"] for row in best[2]] == [50.0, 50.0, 50.0]


def test_tuning_a_lexicon_decoder_with_an_lm(tmp_path):
    vocabulary = LetterVocabulary()
    (tmp_path / "lexicon.txt").write_text("CAT\tC A T |\nCOT\tC O T |\n")
    (tmp_path / "lm.arpa").write_text(
        "\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-99\t<s>\t0\n-1\t</s>\n-3\t<unk>\n"
        "-0.5\tCOT\t0\n-2.0\tCAT\t0\n\n\\2-grams:\n-0.5\t<s> COT\n-2.0\t<s> CAT\n\n\\end\\\n"
    )
    # utterance i: acoustics favour CAT with probability p_i; only a strong LM says COT
    probabilities = [0.55, 0.7, 0.9]
    references = ["COT", "COT", "CAT"]
    log_probs = []
    for p in probabilities:
        frames = torch.full((4, len(vocabulary)), -30.0)
        for t, unit in enumerate("C?T|"):
            if unit == "?":
                frames[t, vocabulary.tokens.index("A")] = math.log(p)
                frames[t, vocabulary.tokens.index("O")] = math.log(1 - p)
            else:
                frames[t, vocabulary.tokens.index(unit)] = 0.0
        log_probs.append(frames)
    base = LexiconDecoder(vocabulary, tmp_path / "lexicon.txt", tmp_path / "lm.arpa")
    grid = [0.1, 0.4, 0.6, 1.0, 2.0]
    best_weight, best_score, table = tune_lm_weights(
        log_probs, references, base.with_weights, grid, [0.0]
    )

    def decode(lm_weight, word_score):
        return decode_log_probs(base.with_weights(lm_weight, word_score), log_probs)

    expected, _ = brute_force(references, decode, grid, [0.0])
    # COT wins utterance i iff 1.5 w > ln(p_i / (1 - p_i)): w in (0.54, 1.46) gets all right
    assert (best_weight, best_score) == expected[:2] == (0.6, 0.0)
    assert [row["wer"] for row in table] == pytest.approx([200 / 3, 100 / 3, 0, 0, 100 / 3])


def test_bad_inputs_are_rejected():
    def make_decoder(lm_weight, word_score):
        return lambda log_probs, lengths: ["A"]

    with pytest.raises(ValueError, match="1 log-prob tensors but 2 references"):
        tune_lm_weights([torch.zeros(3, 4)], ["A", "B"], make_decoder, [1.0], [0.0])
    with pytest.raises(ValueError, match="no utterance"):
        tune_lm_weights([], [], make_decoder, [1.0], [0.0])
    with pytest.raises(ValueError, match="at least one lm_weight"):
        tune_lm_weights([torch.zeros(3, 4)], ["A"], make_decoder, [], [0.0])
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        tune_lm_weights([torch.zeros(1, 3, 4)], ["A"], make_decoder, [1.0], [0.0])
