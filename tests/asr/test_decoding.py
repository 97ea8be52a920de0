"""Greedy CTC decoding against a naive loop; beam search against exhaustive search; KenLM fusion."""

import itertools
import math

import pytest
import torch

from d2v_speech.asr.decoding import BeamSearchDecoder, GreedyDecoder, ctc_greedy_ids
from d2v_speech.asr.vocabulary import LetterVocabulary


def naive_greedy(log_probs, length, blank=0):
    out, previous = [], None
    for t in range(length):
        best = max(range(log_probs.shape[-1]), key=lambda v: float(log_probs[t, v]))
        if best != previous and best != blank:
            out.append(best)
        previous = best
    return out


def test_greedy_matches_a_naive_loop_and_respects_lengths():
    generator = torch.Generator().manual_seed(0)
    # few units and peaked frames: many repeats and blanks to collapse
    log_probs = (3 * torch.randn(5, 40, 4, generator=generator)).log_softmax(-1)
    lengths = torch.tensor([40, 33, 1, 17, 25])
    decoded = ctc_greedy_ids(log_probs, lengths)
    for row in range(5):
        assert decoded[row] == naive_greedy(log_probs[row], int(lengths[row]))
    # frames past the length never leak in
    assert ctc_greedy_ids(log_probs[:, :33], lengths.clamp(max=33))[1] == decoded[1]


def test_greedy_decoder_text(letters):
    ids = letters.encode("NO WAY")
    path = [0]
    for index in ids:  # each unit twice, blank between, as a CTC alignment
        path += [index, index, 0]
    log_probs = torch.full((1, len(path), len(letters)), -20.0)
    log_probs[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert GreedyDecoder(letters)(log_probs, torch.tensor([len(path)])) == ["NO WAY"]


def best_labeling(log_probs, blank=0):
    """Exhaustive CTC: sum the probability of every path per collapsed labeling; take the best."""
    num_frames, vocab = log_probs.shape
    totals = {}
    for path in itertools.product(range(vocab), repeat=num_frames):
        labeling = tuple(
            u for i, u in enumerate(path) if u != blank and (i == 0 or u != path[i - 1])
        )
        score = math.exp(sum(float(log_probs[t, u]) for t, u in enumerate(path)))
        totals[labeling] = totals.get(labeling, 0.0) + score
    return max(totals, key=totals.get)


@pytest.mark.parametrize("seed, greedy_agrees", [(0, False), (1, False), (2, True), (5, False)])
def test_beam_search_finds_the_most_probable_labeling(seed, greedy_agrees):
    vocab = LetterVocabulary(["<s>", "|", "A", "B"])
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, 4, generator=generator)
    logits[:, 1] = -30.0  # no word boundary: labelings are plain letter strings
    log_probs = logits.log_softmax(-1)
    expected = "".join(vocab.tokens[u] for u in best_labeling(log_probs))
    decoder = BeamSearchDecoder(
        vocab, beam_size=200, beam_prune_logp=-1e9, token_prune_min_logp=-1e9
    )
    assert decoder(log_probs[None], torch.tensor([5])) == [expected]
    # the best path (greedy) is often not the most probable labeling: the cases that matter
    greedy = GreedyDecoder(vocab)(log_probs[None], torch.tensor([5]))[0]
    assert (greedy == expected) == greedy_agrees


def test_kenlm_fusion_prefers_the_lm_word(tmp_path, letters):
    pytest.importorskip("kenlm")
    pytest.importorskip("pygtrie")
    # acoustics slightly prefer "CAT" over "COT"; a unigram LM that only knows COT flips it
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(
        "\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-99\t<s>\t-0.3\n-0.5\t</s>\n"
        "-99\t<unk>\n-0.1\tCOT\t-0.3\n\n\\2-grams:\n-0.1\t<s> COT\n-0.1\tCOT </s>\n\n\\end\\\n"
    )
    frames = ["C", "A/O", "T", "|"]
    log_probs = torch.full((1, len(frames), len(letters)), -12.0)
    for t, unit in enumerate(frames):
        if unit == "A/O":
            log_probs[0, t, letters.tokens.index("A")] = math.log(0.55)
            log_probs[0, t, letters.tokens.index("O")] = math.log(0.45)
        else:
            log_probs[0, t, letters.tokens.index(unit)] = 0.0
    lengths = torch.tensor([len(frames)])
    assert BeamSearchDecoder(letters, beam_size=10)(log_probs, lengths) == ["CAT"]
    with_lm = BeamSearchDecoder(letters, beam_size=10, kenlm_model_path=str(arpa), alpha=1.0)
    assert with_lm(log_probs, lengths) == ["COT"]
