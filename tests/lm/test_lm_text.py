"""LM text of the embedded corpus: fortune sentences minus every held-out (dev/test) transcript."""

import json

import pytest

from d2v_speech.lm.lm_text import main, read_split_transcripts, write_lm_text

FORTUNES = [
    "Hello there, my friend.",  # equals a dev-clean transcript
    "Once the cat sat on a mat\nand then it slept.",  # contains a test-other transcript
    "Bathe cat sat quietly.",  # shares letters ("the cat sat" inside "bathe cat sat"), not words
    "Nothing is here.",
    "Twenty 3rd of us.",  # digits are spelled out before comparing
    "Forty two.",
    "Sit!",
]
NORMALISED = {
    "HELLO THERE MY FRIEND",
    "ONCE THE CAT SAT ON A MAT AND THEN IT SLEPT",
    "BATHE CAT SAT QUIETLY",
    "NOTHING IS HERE",
    "TWENTY THIRD OF US",
    "FORTY TWO",
    "SIT",
}
HELD_OUT = {
    "dev-clean": ["HELLO THERE MY FRIEND", "SOMETHING ELSE"],
    "dev-other": ["FORTY TWO"],
    "test-clean": ["SOMETHING ELSE"],  # repeated across splits: counted once
    "test-other": ["THE CAT SAT"],
}


@pytest.fixture
def fortune_dir(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "quotes").write_text("\n%\n".join(FORTUNES) + "\n%\n")
    (folder / "quotes.dat").write_bytes(b"\x00\x01")  # an index file: ignored
    return folder


def make_corpus(root, held_out=HELD_OUT):
    for split, texts in held_out.items():
        chapter = root / split / "19" / "198"
        chapter.mkdir(parents=True)
        lines = [f"19-198-{i:04d} {text}" for i, text in enumerate(texts)]
        (chapter / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def naive_kept(sentences, held_out):
    """Reference: keep a sentence unless some held-out text is a run of its whole words."""
    kept = []
    for sentence in sorted(sentences):
        padded = f" {sentence} "
        if not any(f" {text} " in padded for texts in held_out.values() for text in texts):
            kept.append(sentence)
    return kept


def test_held_out_sentences_and_lines_containing_them_are_left_out(tmp_path, fortune_dir):
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "lm" / "lm.txt"
    counts = write_lm_text(corpus, out, fortune_dir=fortune_dir)
    expected = ["BATHE CAT SAT QUIETLY", "NOTHING IS HERE", "SIT", "TWENTY THIRD OF US"]
    assert out.read_text().splitlines() == expected == naive_kept(NORMALISED, HELD_OUT)
    assert counts == {
        "lines": 4,
        "words": 4 + 3 + 1 + 4,
        "excluded_lines": 3,
        "held_out_transcripts": 4,
    }
    assert [p.name for p in out.parent.iterdir()] == ["lm.txt"]  # no temporary file left


def test_only_the_named_splits_are_held_out(tmp_path, fortune_dir):
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "lm.txt"
    counts = write_lm_text(corpus, out, fortune_dir=fortune_dir, held_out_splits=["dev-other"])
    expected = naive_kept(NORMALISED, {"dev-other": HELD_OUT["dev-other"]})
    assert out.read_text().splitlines() == expected
    assert "FORTY TWO" not in expected and len(expected) == 6
    assert counts["excluded_lines"] == 1 and counts["held_out_transcripts"] == 1


def test_a_missing_split_is_an_error_naming_it(tmp_path, fortune_dir):
    held_out = {k: v for k, v in HELD_OUT.items() if k != "test-other"}
    corpus = make_corpus(tmp_path / "corpus", held_out)
    out = tmp_path / "lm.txt"
    with pytest.raises(FileNotFoundError, match="test-other"):
        write_lm_text(corpus, out, fortune_dir=fortune_dir)
    assert not out.exists()
    (corpus / "test-other").mkdir()
    with pytest.raises(ValueError, match="test-other.*no \\*.trans.txt"):
        write_lm_text(corpus, out, fortune_dir=fortune_dir)


def test_transcript_reader_rejects_lines_without_text(tmp_path):
    chapter = tmp_path / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 A  B\n\n1-2-0001\n")
    with pytest.raises(ValueError, match="1-2.trans.txt: line 3"):
        read_split_transcripts(tmp_path / "dev-clean")
    (chapter / "1-2.trans.txt").write_text("1-2-0000 A  B\n\n")
    assert read_split_transcripts(tmp_path / "dev-clean") == ["A B"]


def test_command_line(tmp_path, fortune_dir, capsys):
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "lm.txt"
    args = ["--data_folder", str(corpus), "--out", str(out), "--fortune_dir", str(fortune_dir)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lines"] == 4 and printed["out"] == str(out)
    assert out.read_text().splitlines()[0] == "BATHE CAT SAT QUIETLY"
