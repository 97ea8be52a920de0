"""KenLM helpers: lexicon spelling, ARPA unigrams, lmplz discovery and a real (small) ARPA."""

import gzip
import json
import math
import os
import stat
from collections import defaultdict
from types import SimpleNamespace

import pytest

from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.lm import ngram
from d2v_speech.lm.ngram import arpa_unigrams, build_arpa, find_kenlm_binary, is_arpa, write_lexicon

HAND_ARPA = """
\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.2\t<unk>\t0
-99\t<s>\t-0.3
-0.7\t</s>
-0.9\tTHE\t-0.2
-1.1\tDON'T\t-0.1
-1.0\tCAT

\\2-grams:
-0.2\t<s> THE
-0.3\tTHE CAT

\\end\\
"""


def test_lexicon_spells_letters_with_a_word_boundary(tmp_path):
    words = ["CAT", "don't", "CAT", "NAÏVE", "A|B", "TWO WORDS", "", "X"]
    out = tmp_path / "sub" / "lexicon.txt"
    assert write_lexicon(words, LetterVocabulary(), out) == 3
    assert out.read_text().splitlines() == ["CAT\tC A T |", "don't\tD O N ' T |", "X\tX |"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["lexicon.txt"]


def test_lexicon_needs_a_letter_vocabulary(tmp_path):
    with pytest.raises(ValueError, match="letter vocabulary.*sentencepiece"):
        write_lexicon(["CAT"], SimpleNamespace(kind="sentencepiece"), tmp_path / "lex.txt")


def test_arpa_unigrams_of_a_hand_written_arpa(tmp_path):
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(HAND_ARPA)
    assert arpa_unigrams(arpa) == ["THE", "DON'T", "CAT"]
    assert is_arpa(arpa)
    compressed = tmp_path / "lm.arpa.gz"
    compressed.write_bytes(gzip.compress(HAND_ARPA.encode()))
    assert is_arpa(compressed) and arpa_unigrams(compressed) == ["THE", "DON'T", "CAT"]
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\x01")
    assert not is_arpa(binary)
    (tmp_path / "plain.txt").write_text("HELLO WORLD\n")
    with pytest.raises(ValueError, match="no \\\\1-grams: section"):
        arpa_unigrams(tmp_path / "plain.txt")
    (tmp_path / "bad.arpa").write_text("\\data\\\n\n\\1-grams:\n-1.0\n")
    with pytest.raises(ValueError, match="bad.arpa:4"):
        arpa_unigrams(tmp_path / "bad.arpa")


def make_executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_kenlm_binary_path_first_then_tools_folder(tmp_path, monkeypatch):
    on_path, tools = tmp_path / "path", tmp_path / "tools"
    on_path.mkdir()
    tools.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(ngram, "KENLM_BIN_DIR", tools)
    with pytest.raises(FileNotFoundError) as error:
        find_kenlm_binary("lmplz")
    message = str(error.value)
    assert "'lmplz'" in message and "tools/build_kenlm.sh" in message
    assert "make lm-tools" in message and str(tools) in message
    (tmp_path / "text.txt").write_text("THE CAT\n")
    with pytest.raises(FileNotFoundError, match="build_kenlm.sh"):
        build_arpa(tmp_path / "text.txt", tmp_path / "lm.arpa")
    local = make_executable(tools / "lmplz")
    assert find_kenlm_binary("lmplz") == local
    preferred = make_executable(on_path / "lmplz")
    assert find_kenlm_binary("lmplz") == preferred


def test_build_arpa_rejects_bad_arguments_before_running(tmp_path):
    with pytest.raises(ValueError, match="order"):
        build_arpa(tmp_path / "text.txt", tmp_path / "lm.arpa", order=1)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt is missing or empty"):
        build_arpa(tmp_path / "empty.txt", tmp_path / "lm.arpa")


# ------------------------------------------------------------------------- with a real lmplz
def lmplz_or_skip():
    try:
        return find_kenlm_binary("lmplz")
    except FileNotFoundError:
        pytest.skip("lmplz not built: run tools/build_kenlm.sh (make lm-tools) to test it")


TEXT = [
    "THE CAT SAT ON THE MAT",
    "THE DOG SAT ON THE LOG",
    "A CAT AND A DOG",
    "THE CAT SAT",
    "ON THE MAT THE DOG SAT",
]


def read_arpa(path):
    """{order: {ngram tuple: (log10 prob, log10 backoff)}} of an ARPA file."""
    grams, order = defaultdict(dict), 0
    for line in path.read_text().splitlines():
        if line.endswith("-grams:"):
            order = int(line[1])
        elif order and line and not line.startswith("\\"):
            fields = line.split("\t")
            backoff = float(fields[2]) if len(fields) == 3 else 0.0
            grams[order][tuple(fields[1].split())] = (float(fields[0]), backoff)
    return grams


def bigram_probability(grams, history, word):
    """P(word | history) of a back-off bigram model (the ARPA definition)."""
    if (history, word) in grams[2]:
        return 10 ** grams[2][(history, word)][0]
    return 10 ** (grams[1][(history,)][1] + grams[1][(word,)][0])


def test_build_arpa_estimates_a_proper_model_of_the_text(tmp_path):
    lmplz_or_skip()
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    out = build_arpa(text, tmp_path / "out" / "lm.arpa", order=2, memory="50M")
    grams = read_arpa(out)
    words = {w for line in TEXT for w in line.split()}
    assert set(arpa_unigrams(out)) == words
    # every bigram of the text (with sentence markers) is listed, and nothing else
    bigrams = {
        pair
        for line in TEXT
        for pair in zip(["<s>", *line.split()], [*line.split(), "</s>"], strict=True)
    }
    assert set(grams[2]) == bigrams
    # a proper distribution: unigrams sum to 1, and so does P(. | h) for every history
    outcomes = [*words, "</s>", "<unk>"]
    assert sum(10 ** grams[1][(w,)][0] for w in outcomes) == pytest.approx(1, abs=1e-4)
    for history in [*words, "<s>"]:
        total = sum(bigram_probability(grams, history, w) for w in outcomes)
        assert total == pytest.approx(1, abs=1e-4), history
    assert os.listdir(out.parent) == ["lm.arpa"]  # lmplz's scratch folder is gone


def test_build_arpa_reports_lmplz_errors(tmp_path):
    lmplz_or_skip()
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    out = tmp_path / "lm.arpa"
    with pytest.raises(
        RuntimeError, match=r"(?s)lmplz failed \(exit 1\).*bogus into a memory size"
    ):
        build_arpa(text, out, memory="bogus")
    assert not out.exists() and os.listdir(tmp_path) == ["text.txt"]


def test_command_line_writes_the_arpa_and_its_lexicon(tmp_path, capsys):
    lmplz_or_skip()
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    arpa, lexicon = tmp_path / "lm.arpa", tmp_path / "lexicon.txt"
    argv = ["--text", str(text), "--out", str(arpa), "--order", "3", "--lexicon", str(lexicon)]
    assert ngram.main([*argv, "--memory", "50M"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lexicon_words"] == 9
    assert "ngram 3=" in arpa.read_text()
    spelled = dict(line.split("\t") for line in lexicon.read_text().splitlines())
    assert spelled["CAT"] == "C A T |" and set(spelled) == set(arpa_unigrams(arpa))
    assert math.isfinite(read_arpa(arpa)[3][("THE", "CAT", "SAT")][0])
