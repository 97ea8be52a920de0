"""Letter vocabulary in fairseq order, round trips, unknown characters, SentencePiece option."""

import pytest

from d2v_speech.asr.vocabulary import (
    LetterVocabulary,
    SentencePieceVocabulary,
    VocabularyError,
    count_characters,
    vocabulary_from_state,
)

# vocab.json published with facebook/wav2vec2-base-960h (fairseq dict.ltr.txt + 4 specials):
# the letter ids are the fairseq dictionary's; only the special tokens' names differ.
HF_LIBRISPEECH_VOCAB = {
    "<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9,
    "I": 10, "H": 11, "S": 12, "R": 13, "D": 14, "L": 15, "U": 16, "M": 17, "W": 18, "C": 19,
    "F": 20, "G": 21, "Y": 22, "P": 23, "B": 24, "V": 25, "K": 26, "'": 27, "X": 28, "J": 29,
    "Q": 30, "Z": 31,
}  # fmt: skip


def test_letter_order_matches_the_published_librispeech_dictionary(letters):
    assert len(letters) == 32
    assert letters.blank_index == 0 and letters.tokens[0] == "<s>"
    for token, index in HF_LIBRISPEECH_VOCAB.items():
        if not token.startswith("<"):
            assert letters.tokens[index] == token


def test_encode_decode_round_trip(letters):
    text = "IT'S A QUIZ OF JAZZ"
    ids = letters.encode(text)
    # fairseq .ltr labels: letters, "|" after every word
    expected = [HF_LIBRISPEECH_VOCAB[c] for c in "I T ' S | A | Q U I Z | O F | J A Z Z |".split()]
    assert ids == expected
    assert letters.decode(ids) == text
    assert letters.decode([0, 1, 2, 3] + ids) == text  # specials are dropped
    assert letters.encode("  it's   a quiz of jazz ") == ids  # normalised: case, spaces
    assert count_characters(text) == len(ids)


def test_unknown_characters_are_listed(letters):
    assert letters.unknown_characters("ROOM 101, OK|") == [",", "0", "1", "|"]
    with pytest.raises(VocabularyError, match=r"\[',', '0', '1'\]"):
        letters.encode("ROOM 101, OK")


def test_fairseq_dict_and_hf_vocab_files(letters, tmp_path):
    path = letters.write_dict(tmp_path / "dict.ltr.txt")
    lines = path.read_text().splitlines()
    assert lines[0].split()[0] == "|" and lines[-1].split()[0] == "Z" and len(lines) == 28
    assert LetterVocabulary.from_fairseq_dict(path) == letters
    from_hf = LetterVocabulary.from_hf_vocab(HF_LIBRISPEECH_VOCAB)
    assert from_hf.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert from_hf.encode("HELLO") == letters.encode("HELLO")
    (tmp_path / "bad.txt").write_text("| 10\nE\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        LetterVocabulary.from_fairseq_dict(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="blank"):
        LetterVocabulary(["A", "|", "<s>"])


def test_state_round_trip(letters):
    assert vocabulary_from_state(letters.to_state()) == letters
    with pytest.raises(ValueError, match="unknown vocabulary kind"):
        vocabulary_from_state({"kind": "words"})


def test_sentencepiece_round_trip_with_blank_at_zero(short_set, tmp_path):
    vocab = SentencePieceVocabulary.train(tmp_path / "sp", 40, short_set, model_type="unigram")
    text = "HELLO THERE"
    ids = vocab.encode(text)
    assert 0 not in ids and len(vocab) == 41
    # piece ids shifted by one: index 0 is the CTC blank
    assert [i - 1 for i in ids] == vocab.processor.encode_as_ids(text)
    assert vocab.decode([0] + ids + [0]) == text
    assert vocabulary_from_state(vocab.to_state()).encode(text) == ids
    assert vocab.unknown_characters("HI #2") == ["#", "2"]
