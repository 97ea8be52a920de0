"""Fortune text normalisation and the number speller, against hand-checked English readings."""

import re

import pytest

from d2v_speech.synthetic.fortune_sentences import (
    iter_fortune_entries,
    load_sentences,
    normalize_transcript,
    spell_cardinal,
    spell_ordinal,
    spell_year,
)

LIBRISPEECH_LINE = re.compile(r"^[A-Z']+( [A-Z']+)*$")


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty one"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (342, "three hundred forty two"),
        (1000, "one thousand"),
        (2001, "two thousand one"),
        (10_010, "ten thousand ten"),
        (1_234_567, "one million two hundred thirty four thousand five hundred sixty seven"),
        (3_000_000_000, "three billion"),
    ],
)
def test_spell_cardinal_matches_english(number, words):
    assert spell_cardinal(number) == words


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty first"),
        (100, "one hundredth"),
        (1000, "one thousandth"),
    ],
)
def test_spell_ordinal_matches_english(number, words):
    assert spell_ordinal(number) == words


@pytest.mark.parametrize(
    ("year", "words"),
    [(1984, "nineteen eighty four"), (1900, "nineteen hundred"), (1205, "twelve oh five")],
)
def test_spell_year_reads_pairs(year, words):
    assert spell_year(year) == words


def test_spellers_reject_out_of_range():
    with pytest.raises(ValueError, match="spell integers"):
        spell_cardinal(-1)
    with pytest.raises(ValueError, match="1100..1999"):
        spell_year(2024)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("Avoid reality at all costs.", "AVOID REALITY AT ALL COSTS"),
        (
            "Don't   take life seriously;\nyou'll never get out alive.\n\t\t-- Elbert Hubbard",
            "DON'T TAKE LIFE SERIOUSLY YOU'LL NEVER GET OUT ALIVE",
        ),
        ("A well-known man -- or so 'they' say.", "A WELL KNOWN MAN OR SO THEY SAY"),
        (
            "I had 3 cats and 1,200 dogs in 1984.",
            "I HAD THREE CATS AND ONE THOUSAND TWO HUNDRED DOGS IN NINETEEN EIGHTY FOUR",
        ),
        ("He came 2nd of 21.", "HE CAME SECOND OF TWENTY ONE"),
    ],
)
def test_normalize_transcript_keeps_readable_entries(entry, expected):
    assert normalize_transcript(entry) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "Bank error in your favor.  Collect $200.",  # symbol
        "Mr. Smith went to Washington.",  # abbreviation read differently by TTS
        "Pi is about 3.14 or so.",  # decimal
        "Q:\tWhy?\nA:\tBecause.",  # dialogue labels
        "The IBM machine is down.",  # acronym
        "Try *this* instead.",  # markup
        "Caf\u00e9 au lait is good.",  # non-ASCII
        "J. R. R. Tolkien wrote books.",  # initials
        "It was the 1960s again.",  # digits mixed with letters
    ],
)
def test_normalize_transcript_drops_unreadable_entries(entry):
    assert normalize_transcript(entry) is None


def test_fortune_entries_split_on_percent_lines(tmp_path):
    (tmp_path / "jokes").write_text("first one\nline two\n%\nsecond\n%\n", encoding="utf-8")
    (tmp_path / "jokes.dat").write_bytes(b"\x00\x01")
    assert list(iter_fortune_entries(tmp_path)) == ["first one\nline two", "second"]


def test_load_sentences_from_installed_fortunes_are_librispeech_lines():
    sentences = load_sentences(min_words=4, max_words=35)
    assert len(sentences) > 5000
    assert len(set(sentences)) == len(sentences)
    assert sentences == sorted(sentences)
    for sentence in sentences:
        assert LIBRISPEECH_LINE.match(sentence), sentence
        assert 4 <= len(sentence.split()) <= 35


def test_missing_fortune_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sentences(tmp_path / "nowhere")
