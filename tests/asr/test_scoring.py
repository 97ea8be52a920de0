"""WER against SpeechBrain's ErrorRateStats, CER against a naive edit distance, result files."""

import csv
import json

import pytest
from speechbrain.utils.metric_stats import ErrorRateStats

from d2v_speech.asr.scoring import score, write_hypotheses, write_results

REFERENCES = ["THE CAT SAT ON THE MAT", "HELLO WORLD", "A B C D", "ONE MORE TIME"]
HYPOTHESES = ["THE CAT SAT ON MAT", "HELLO WORD WIDE", "", "ONE MORE TIME"]


def edit_distance(a, b):
    """Levenshtein distance by the textbook dynamic programme."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def test_wer_matches_speechbrain_error_rate_stats():
    stats = ErrorRateStats()
    stats.append(
        [str(i) for i in range(len(REFERENCES))],
        [h.split() for h in HYPOTHESES],
        [r.split() for r in REFERENCES],
    )
    sb_summary = stats.summarize()
    rates = score(REFERENCES, HYPOTHESES)
    assert rates.wer == pytest.approx(sb_summary["WER"])
    assert rates.word_insertions == sb_summary["insertions"]
    assert rates.word_deletions == sb_summary["deletions"]
    assert rates.word_substitutions == sb_summary["substitutions"]
    assert rates.words == sum(len(r.split()) for r in REFERENCES)


def test_cer_is_character_edit_distance_over_reference_characters():
    rates = score(REFERENCES, HYPOTHESES)
    errors = sum(edit_distance(r, h) for r, h in zip(REFERENCES, HYPOTHESES))
    characters = sum(len(r) for r in REFERENCES)
    assert rates.char_errors == errors
    assert rates.characters == characters
    assert rates.cer == pytest.approx(100 * errors / characters)


def test_empty_sets_and_references_are_refused():
    with pytest.raises(ValueError, match="empty test set"):
        score([], [])
    with pytest.raises(ValueError, match=r"references \[1\] are empty"):
        score(["A", " "], ["A", "B"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="every reference is empty"):
        score(["", " "], ["A", "B"], allow_empty_references=True)


def test_empty_references_count_insertions_when_allowed():
    references = ["THE CAT SAT", "", "HELLO"]
    hypotheses = ["THE CAT", "UM YES", "HELLO"]
    rates = score(references, hypotheses, allow_empty_references=True)
    word_errors = sum(edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses))
    assert rates.words == 4
    assert rates.word_insertions == 2 and rates.word_deletions == 1
    assert rates.wer == pytest.approx(100 * word_errors / 4)
    char_errors = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    assert rates.cer == pytest.approx(100 * char_errors / (len("THE CAT SAT") + len("HELLO")))


def test_result_files(tmp_path):
    ids = [f"utt{i}" for i in range(len(REFERENCES))]
    path = write_hypotheses(tmp_path / "hyp_test.tsv", ids, REFERENCES, HYPOTHESES)
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["ID"] for r in rows] == ids
    assert [int(r["errors"]) for r in rows] == [
        edit_distance(r.split(), h.split()) for r, h in zip(REFERENCES, HYPOTHESES)
    ]
    assert rows[2]["HYP"] == "" and rows[1]["REF"] == "HELLO WORLD"

    rates = score(REFERENCES, HYPOTHESES)
    json_path, md_path = write_results(tmp_path, {"test-clean": rates}, {"subset_10m": 3})
    content = json.loads(json_path.read_text())
    assert content["info"] == {"subset_10m": 3}
    assert content["sets"]["test-clean"]["wer"] == pytest.approx(rates.wer)
    table = md_path.read_text()
    assert f"| test-clean | 4 | {rates.words} | {rates.wer:.2f} | {rates.cer:.2f} |" in table
    assert "- subset_10m: 3" in table
