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


# ------------------------------------------------------------------ lexicon decoder (flashlight)
def write_lexicon_file(path, words):
    path.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
    return path


def unigram_arpa(path, log10_probs):
    """A bigram-order ARPA whose words have the given unigram log10 probabilities."""
    words = list(log10_probs)
    lines = ["\\data\\", f"ngram 1={len(words) + 3}", f"ngram 2={len(words)}", "", "\\1-grams:"]
    lines += ["-99\t<s>\t0", "-1\t</s>", "-2\t<unk>"]
    lines += [f"{log10_probs[w]}\t{w}\t0" for w in words]
    lines += ["", "\\2-grams:"] + [f"{log10_probs[w]}\t<s> {w}" for w in words]
    path.write_text("\n".join(lines + ["", "\\end\\", ""]))
    return path


def frames_log_probs(letters, frames):
    """(1, T, V) log-probs, one frame per entry: a unit, or {unit: probability} for ambiguity."""
    log_probs = torch.full((1, len(frames), len(letters)), -30.0)
    for t, frame in enumerate(frames):
        choices = frame if isinstance(frame, dict) else {frame: 1.0}
        for unit, probability in choices.items():
            log_probs[0, t, letters.tokens.index(unit)] = math.log(probability)
    return log_probs


def test_lexicon_decoder_keeps_to_lexicon_words(tmp_path, letters):
    from d2v_speech.asr.decoding import LexiconDecoder

    frames = ["C", {"E": 0.6, "A": 0.4}, "T", "|"]
    log_probs, lengths = frames_log_probs(letters, frames), torch.tensor([4])
    assert GreedyDecoder(letters)(log_probs, lengths) == ["CET"]  # not a word
    lexicon = write_lexicon_file(tmp_path / "lexicon.txt", ["CAT", "DOG", "CETUS"])
    assert LexiconDecoder(letters, lexicon)(log_probs, lengths) == ["CAT"]


@pytest.mark.parametrize("favoured", ["CAT", "COT"])
def test_lexicon_decoder_lm_breaks_an_acoustic_tie(tmp_path, letters, favoured):
    from d2v_speech.asr.decoding import LexiconDecoder

    frames = ["C", {"A": 0.5, "O": 0.5}, "T", "|"]
    log_probs, lengths = frames_log_probs(letters, frames), torch.tensor([4])
    lexicon = write_lexicon_file(tmp_path / "lexicon.txt", ["CAT", "COT"])
    other = "COT" if favoured == "CAT" else "CAT"
    arpa = unigram_arpa(tmp_path / "lm.arpa", {favoured: -0.5, other: -2.0})
    decoder = LexiconDecoder(letters, lexicon, arpa, lm_weight=1.0)
    assert decoder(log_probs, lengths) == [favoured]
    # a word score cannot flip it (both are one word); a lower LM weight keeps the same order
    assert decoder.with_weights(0.2, 3.0)(log_probs, lengths) == [favoured]


def test_lexicon_decoder_lm_weight_trades_against_acoustics(tmp_path, letters):
    from d2v_speech.asr.decoding import LexiconDecoder

    # acoustics favour CAT by ln(0.7 / 0.3) = 0.85 nats; the LM favours COT by 1.5 (log10)
    frames = ["C", {"A": 0.7, "O": 0.3}, "T", "|"]
    log_probs, lengths = frames_log_probs(letters, frames), torch.tensor([4])
    lexicon = write_lexicon_file(tmp_path / "lexicon.txt", ["CAT", "COT"])
    arpa = unigram_arpa(tmp_path / "lm.arpa", {"COT": -0.5, "CAT": -2.0})
    decoder = LexiconDecoder(letters, lexicon, arpa, lm_weight=0.0)
    # hypothesis score = acoustic ln-prob + w * KenLM log10-prob (flashlight adds them unscaled),
    # so COT wins iff 1.5 w > ln(0.7 / 0.3)
    threshold = math.log(0.7 / 0.3) / 1.5
    assert decoder.with_weights(0.9 * threshold, 0.0)(log_probs, lengths) == ["CAT"]
    assert decoder.with_weights(1.1 * threshold, 0.0)(log_probs, lengths) == ["COT"]
    tuned = decoder.with_weights(1.1 * threshold, -1.0)
    assert (tuned.lexicon_path, tuned.lm_path) == (decoder.lexicon_path, decoder.lm_path)
    assert (tuned.lm_weight, tuned.word_score) == (1.1 * threshold, -1.0)


def test_lexicon_decoder_respects_frame_lengths(tmp_path, letters):
    from d2v_speech.asr.decoding import LexiconDecoder

    lexicon = write_lexicon_file(tmp_path / "lexicon.txt", ["CAT", "DOG"])
    cat_dog = frames_log_probs(letters, ["C", "A", "T", "|", "D", "O", "G", "|"])[0]
    dog_cat = frames_log_probs(letters, ["D", "O", "G", "|", "C", "A", "T", "|"])[0]
    log_probs = torch.stack([cat_dog, dog_cat, cat_dog])
    decoder = LexiconDecoder(letters, lexicon)
    assert decoder(log_probs, torch.tensor([4, 8, 8])) == ["CAT", "DOG CAT", "CAT DOG"]
    assert decoder(log_probs, torch.tensor([8, 4, 0])) == ["CAT DOG", "DOG", ""]
    with pytest.raises(ValueError, match="frame lengths"):
        decoder(log_probs, torch.tensor([8, 9, 8]))


def test_lexicon_decoder_rejects_other_vocabularies_and_names_the_package(
    tmp_path, letters, monkeypatch
):
    import sys
    from types import SimpleNamespace

    from d2v_speech.asr.decoding import LexiconDecoder

    lexicon = write_lexicon_file(tmp_path / "lexicon.txt", ["CAT"])
    with pytest.raises(ValueError, match="BeamSearchDecoder"):
        LexiconDecoder(SimpleNamespace(kind="sentencepiece"), lexicon)
    with pytest.raises(FileNotFoundError, match="nolm.arpa"):
        LexiconDecoder(letters, lexicon, tmp_path / "nolm.arpa")
    monkeypatch.setitem(sys.modules, "torchaudio.models.decoder", None)  # import fails
    with pytest.raises(ImportError, match="pip install flashlight-text"):
        LexiconDecoder(letters, lexicon)
