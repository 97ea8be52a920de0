"""Switchboard / Hub5'00 preparation on tiny hand-made trees in the real LDC layout."""

import csv
import hashlib
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v_speech.corpora.switchboard.prepare import (
    OPTIONS_NAME,
    SUMMARY_NAME,
    main,
    prepare_switchboard,
)
from d2v_speech.corpora.switchboard.segments import read_segment
from d2v_speech.corpora.switchboard.sphere import SphereError, write_sphere
from d2v_speech.corpora.switchboard.text_normalization import GlmRules

RATE = 8000
HEADER = ["ID", "duration", "wav", "start", "stop", "channel", "spk_id", "wrd"]
SECONDS = 4.0
CALLERS = {
    2001: ("1000", "1001"),
    2002: ("1002", "1003"),
    2003: ("1000", "1004"),
    2004: ("1005", "1006"),
    2005: ("1007", "1008"),
    2006: ("1009", "1001"),
}
NUMBER_WORDS = "zero one two three four five six seven eight nine".split()
SW2001 = {
    "A": [
        "sw2001A-ms98-a-0001 0.000000 0.500000 [silence]",
        # 1.001 * 8000 = 8007.999...: rounding gives 8008, truncation would give 8007
        "sw2001A-ms98-a-0002 0.500000 1.001000 hi uh-huh [laughter-yes] th[e]- t-shirt",
        "sw2001A-ms98-a-0003 1.001000 2.977625 [noise] {yuppiedom} them_1 -[th]at okay",
        "sw2001A-ms98-a-0004 2.977625 3.500000 [laughter]",
    ],
    "B": [
        "sw2001B-ms98-a-0001 0.000000 1.250000 uh-huh",
        "sw2001B-ms98-a-0002 1.250000 3.990000 <b_aside> i think so <e_aside> [it'n/isn't]",
    ],
}
SW2001_ROWS = [
    ["sw2001A-ms98-a-0002", "0.501", "4000", "8008", "A", "1000", "HI UHHUH YES T SHIRT"],
    ["sw2001A-ms98-a-0003", "1.976625", "8008", "23821", "A", "1000", "YUPPIEDOM THEM OKAY"],
    ["sw2001B-ms98-a-0001", "1.25", "0", "10000", "B", "1001", "UHHUH"],
    ["sw2001B-ms98-a-0002", "2.74", "10000", "31920", "B", "1001", "I THINK SO IT'N"],
]
STM = """;; CATEGORY "0" "" ""
sw_4390 A sw_4390_A 0.00 1.00 <O,sw,F,sw-F>  IGNORE_TIME_SEGMENT_IN_SCORING
sw_4390 A sw_4390_A 1.00 2.50 <O,sw,F,sw-F>  (%HESITATION) I THINK <B_ASIDE> SO (WE-) UH-HUH
sw_4390 B sw_4390_B 0.50 1.75 <O,sw,M,sw-M>  T-SHIRT TIME
en_4156 A en_4156_A 0.25 2.00 <O,en,F,en-F>  HE IS A POLICE OFFICER
en_4156 B en_4156_B 1.00 1.50 <O,en,M,en-M>  (%HESITATION)
"""
GLM = """;; tiny GLM
UH => %HESITATION / [ ] __ [ ]
'CAUSE => BECAUSE ;; per AHD
"""
SWBD_TEST_ROWS = [
    ["sw_4390-A_000100-000250", "1.5", "8000", "20000", "A", "sw_4390_A", "I THINK SO UHHUH"],
    ["sw_4390-B_000050-000175", "1.25", "4000", "14000", "B", "sw_4390_B", "T SHIRT TIME"],
]
CALLHOME_TEST_ROWS = [
    ["en_4156-A_000025-000200", "1.75", "2000", "16000", "A", "en_4156_A", "HE IS A POLICE OFFICER"]
]


def _audio(path: Path, seconds: float, seed: int, rate: int = RATE, channels: int = 2):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (round(seconds * rate), channels))
    write_sphere(path, samples, rate)


def _shorten(path: Path, frames: int) -> None:
    """A SPHERE header announcing shorten-compressed samples (body is not real data)."""
    header = (
        f"NIST_1A\n   1024\nsample_count -i {frames}\nsample_rate -i 8000\n"
        "channel_count -i 2\nsample_coding -s26 ulaw,embedded-shorten-v2.00\nend_head\n"
    )
    path.write_bytes(header.encode().ljust(1024, b" ") + bytes(64))


def _ms98(root: Path, number: int, side: str, lines: list[str]) -> Path:
    folder = root / "swb_ms98_transcriptions" / str(number)[:2] / str(number)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sw{number}{side}-ms98-a-trans.text"
    path.write_text("\n".join(lines) + "\n")
    return path


def _generic_lines(number: int, side: str) -> list[str]:
    return [
        f"sw{number}{side}-ms98-a-0001 0.000000 1.000000 uh-huh",
        f"sw{number}{side}-ms98-a-0002 1.000000 2.500000 talk {NUMBER_WORDS[number % 10]} {side}",
        f"sw{number}{side}-ms98-a-0003 2.500000 {3.0 + (number % 7) / 10:.6f} it is {side}",
    ]


def build_corpus(root: Path, numbers=tuple(CALLERS), with_hub5: bool = True) -> Path:
    """Switchboard in the LDC layout; conversations are created in the order given."""
    for index, number in enumerate(numbers):
        disc = f"swb1_d{1 + index % 4}"
        _audio(root / "LDC97S62" / disc / "data" / f"sw0{number}.sph", SECONDS, number)
        for side in "AB":
            lines = SW2001[side] if number == 2001 else _generic_lines(number, side)
            _ms98(root, number, side, lines)
    docs = root / "LDC97S62" / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rows = [f"{n},Y,{a},{b},303,0,910304,1218,1222, ," for n, (a, b) in sorted(CALLERS.items())]
    (docs / "conv_tab.csv").write_text("\n".join(rows) + "\n")
    if with_hub5:
        english = root / "LDC2002S09" / "hub5e_00" / "english"
        _audio(english / "sw_4390.sph", 3.0, 1)
        _audio(english / "en_4156.sph", 3.0, 2)
        reference = root / "LDC2002T43" / "2000_hub5_eng_eval_tr" / "reference"
        reference.mkdir(parents=True)
        (reference / "hub5e00.english.000405.stm").write_text(STM)
        (reference / "en20000405_hub5.glm").write_text(GLM)
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == HEADER
        return list(reader)


def _order(seed: int) -> list[str]:
    """The documented split order: conversations sorted by sha256("<seed>:<name>")."""
    names = [f"sw0{n}" for n in CALLERS]
    return sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())


def _conversation(row: dict) -> str:
    return "sw0" + row["ID"][2:6]


def _short(row: dict) -> list[str]:
    return [row[k] for k in ("ID", "duration", "start", "stop", "channel", "spk_id", "wrd")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("swbd") / "Switchboard")


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    save = tmp_path_factory.mktemp("prepared")
    result = prepare_switchboard(corpus, save, dev_conversations=1, max_utt=None)
    return save, result


def test_rows_of_one_conversation_are_exact(corpus, prepared):
    save, result = prepared
    rows = _rows(save / "train.csv") + _rows(save / "dev.csv")
    sw2001 = [row for row in rows if row["ID"].startswith("sw2001")]
    assert [_short(row) for row in sorted(sw2001, key=lambda r: r["ID"])] == SW2001_ROWS
    assert {row["wav"] for row in sw2001} == {"$swbd_root/LDC97S62/swb1_d1/data/sw02001.sph"}
    assert result["problems"] == 0
    # two [silence]/[laughter]-only segments, nothing else left out
    assert result["csvs"]["train.csv"]["empty_after_normalisation"] == 2


def test_segments_read_back_the_right_samples(corpus, prepared):
    save, _ = prepared
    rows = _rows(save / "train.csv") + _rows(save / "dev.csv")
    full, _ = sf.read(corpus / "LDC97S62/swb1_d1/data/sw02001.sph", dtype="float32")
    for row in (r for r in rows if r["ID"].startswith("sw2001")):
        path = row["wav"].replace("$swbd_root", str(corpus))
        start, stop = int(row["start"]), int(row["stop"])
        segment, _ = read_segment(path, start, stop, row["channel"])
        np.testing.assert_array_equal(segment, full[start:stop, "AB".index(row["channel"])])


def test_split_is_by_conversation_and_follows_the_stable_order(prepared):
    save, result = prepared
    dev, train = _rows(save / "dev.csv"), _rows(save / "train.csv")
    order = _order(0)
    assert {_conversation(row) for row in dev} == {order[0]}
    dev_callers = set(CALLERS[int(order[0][2:])])
    expected_train = {n for n in order[1:] if not dev_callers & set(CALLERS[int(n[2:])])}
    assert {_conversation(row) for row in train} == expected_train
    assert not dev_callers & {row["spk_id"] for row in train}
    split = result["csvs"]["train.csv"]["split"]
    assert split["dev_conversations"] == [order[0]]
    assert split["excluded_for_dev_callers"] == len(order) - 1 - len(expected_train)


def test_dev_callers_are_excluded_from_train(corpus, tmp_path):
    # find a seed whose dev conversation (sw02001) shares callers with sw02003 and sw02006
    seed = next(s for s in range(200) if _order(s)[0] == "sw02001")
    result = prepare_switchboard(corpus, tmp_path, dev_conversations=1, seed=seed)
    train = {_conversation(row) for row in _rows(tmp_path / "train.csv")}
    assert train == {"sw02002", "sw02004", "sw02005"}
    assert result["csvs"]["train.csv"]["split"]["excluded_for_dev_callers"] == 2
    kept = prepare_switchboard(
        corpus, tmp_path, dev_conversations=1, seed=seed, exclude_dev_callers=False
    )
    train = {_conversation(row) for row in _rows(tmp_path / "train.csv")}
    assert train == {"sw02002", "sw02003", "sw02004", "sw02005", "sw02006"}
    assert kept["csvs"]["train.csv"]["split"]["dev_callers_overlap_train"]


def test_split_does_not_depend_on_file_creation_order(tmp_path):
    forward = build_corpus(tmp_path / "a" / "Switchboard", with_hub5=False)
    backward = build_corpus(
        tmp_path / "b" / "Switchboard", numbers=tuple(reversed(CALLERS)), with_hub5=False
    )
    # the discs differ with the creation order; the rows must not, apart from the wav path
    for root, save in ((forward, tmp_path / "sa"), (backward, tmp_path / "sb")):
        prepare_switchboard(root, save, dev_conversations=2, seed=3)
    for name in ("train.csv", "dev.csv"):
        a = [_short(r) for r in _rows(tmp_path / "sa" / name)]
        b = [_short(r) for r in _rows(tmp_path / "sb" / name)]
        assert a == b and a


def test_train_hours_takes_whole_conversations_in_stable_order(corpus, prepared, tmp_path):
    save, _ = prepared
    full = _rows(save / "train.csv")
    train_order = [n for n in _order(0) if n in {_conversation(r) for r in full}]
    seconds = {
        n: sum(float(r["duration"]) for r in full if _conversation(r) == n) for n in train_order
    }
    budget = (seconds[train_order[0]] + 0.5 * seconds[train_order[1]]) / 3600.0
    result = prepare_switchboard(corpus, tmp_path, dev_conversations=1, train_hours=budget)
    subset = _rows(tmp_path / "train.csv")
    assert {_conversation(r) for r in subset} == set(train_order[:2])
    assert sorted(map(_short, subset)) == sorted(
        _short(r) for r in full if _conversation(r) in train_order[:2]
    )
    split = result["csvs"]["train.csv"]["split"]
    assert split["train_conversations"] == train_order[:2]
    assert split["train_hours_met"] and split["train_hours_requested"] == budget
    too_much = prepare_switchboard(corpus, tmp_path, dev_conversations=1, train_hours=10.0)
    assert not too_much["csvs"]["train.csv"]["split"]["train_hours_met"]
    assert len(_rows(tmp_path / "train.csv")) == len(full)


def test_max_utt_caps_identical_transcripts(corpus, prepared, tmp_path):
    save, _ = prepared
    full = _rows(save / "train.csv")
    counts = Counter(row["wrd"] for row in full)
    assert counts["UHHUH"] > 2
    result = prepare_switchboard(corpus, tmp_path, dev_conversations=1, max_utt=2)
    capped = _rows(tmp_path / "train.csv")
    assert Counter(row["wrd"] for row in capped) == {w: min(c, 2) for w, c in counts.items()}
    # the first two in the split order (conversations in stable order, then by ID) are kept
    rank = {name: index for index, name in enumerate(_order(0))}
    in_order = sorted(full, key=lambda row: (rank[_conversation(row)], row["ID"]))
    first_two = [row["ID"] for row in in_order if row["wrd"] == "UHHUH"][:2]
    assert sorted(row["ID"] for row in capped if row["wrd"] == "UHHUH") == sorted(first_two)
    assert result["csvs"]["train.csv"]["capped_by_max_utt"] == len(full) - len(capped)


def test_duration_limits(corpus, prepared, tmp_path):
    save, _ = prepared
    full = _rows(save / "train.csv")
    result = prepare_switchboard(corpus, tmp_path, dev_conversations=1, min_duration=1.2)
    kept = _rows(tmp_path / "train.csv")
    assert kept == [r for r in full if float(r["duration"]) >= 1.2]
    assert result["csvs"]["train.csv"]["filtered_by_duration"] == len(full) - len(kept)


def test_hub5_csvs(corpus, prepared):
    save, result = prepared
    assert [_short(r) for r in _rows(save / "test_swbd.csv")] == SWBD_TEST_ROWS
    assert [_short(r) for r in _rows(save / "test_callhome.csv")] == CALLHOME_TEST_ROWS
    assert [_short(r) for r in _rows(save / "test_eval2000.csv")] == sorted(
        CALLHOME_TEST_ROWS + SWBD_TEST_ROWS
    )
    wav = _rows(save / "test_swbd.csv")[0]["wav"]
    assert wav == "$swbd_root/LDC2002S09/hub5e_00/english/sw_4390.sph"
    summary = result["csvs"]["test_eval2000.csv"]
    assert summary["ignored_segments"] == 1 and summary["empty_after_normalisation"] == 1
    rules = GlmRules.from_csv(result["glm"])
    assert rules.hesitations == {"UH"} and rules.mappings == {"'CAUSE": "BECAUSE"}


def _problems(result: dict, csv_name: str, kind: str) -> list[dict]:
    return [p for p in result["csvs"][csv_name]["problems"] if p["kind"] == kind]


def test_every_problem_is_named_by_file(corpus, tmp_path, caplog):
    root = tmp_path / "Switchboard"
    shutil.copytree(corpus, root)
    bad = _ms98(root, 2002, "A", _generic_lines(2002, "A") + [
        "sw2002A-ms98-a-0004 abc 3.9 hello",
        "sw2003A-ms98-a-0005 3.0 3.5 wrong side",
        "sw2002A-ms98-a-0006 3.5 3.2 backwards",
        "sw2002A-ms98-a-0007 3.5 3.9 foo[bar",
        "sw2002A-ms98-a-0008 3.5 9.0 past the end",
        "sw2002A-ms98-a-0009 3.5 4.05 clipped",
    ])  # fmt: skip
    _ms98(root, 2007, "A", _generic_lines(2007, "A"))  # no audio
    _audio(root / "LDC97S62/swb1_d2/data/sw02008.sph", SECONDS, 8, rate=16000)
    _ms98(root, 2008, "A", _generic_lines(2008, "A"))
    _audio(root / "LDC97S62/swb1_d3/data/sw02009.sph", SECONDS, 9, channels=1)
    _ms98(root, 2009, "B", _generic_lines(2009, "B"))
    _shorten(root / "LDC97S62/swb1_d4/data/sw02010.sph", round(SECONDS * RATE))
    _ms98(root, 2010, "A", _generic_lines(2010, "A"))
    with caplog.at_level(logging.WARNING):
        result = prepare_switchboard(root, tmp_path / "out", dev_conversations=1, seed=5)
    assert _order(5)[0] != "sw02002"  # so its problems are reported with train.csv
    malformed = _problems(result, "train.csv", "malformed_line")
    assert [p["file"] for p in malformed] == [f"{bad}:{n}" for n in (4, 5, 6)]
    assert "does not belong to sw02002A" in malformed[1]["detail"]
    assert [p["file"] for p in _problems(result, "train.csv", "unnormalisable_text")] == [
        f"{bad}:7"
    ]
    (past_end,) = _problems(result, "train.csv", "segment_past_end")
    assert past_end["file"] == f"{bad}:8" and "sw2002A-ms98-a-0008" in past_end["detail"]
    clipped = [r for r in _rows(tmp_path / "out/train.csv") if r["ID"] == "sw2002A-ms98-a-0009"]
    assert [(r["start"], r["stop"]) for r in clipped] == [("28000", "32000")]
    (missing,) = _problems(result, "train.csv", "missing_audio")
    assert missing["file"].endswith("sw2007A-ms98-a-trans.text")
    (rate,) = _problems(result, "train.csv", "wrong_sample_rate")
    assert rate["file"].endswith("sw02008.sph") and "16000" in rate["detail"]
    (mono,) = _problems(result, "train.csv", "wrong_channel_count")
    assert mono["file"].endswith("sw02009.sph")
    (shortened,) = _problems(result, "train.csv", "shorten_compressed")
    assert shortened["file"].endswith("sw02010.sph") and "sph2pipe" in shortened["detail"]
    assert sum("shorten" in record.getMessage() for record in caplog.records) == 1
    assert result["problems"] == 9


def test_fully_shortened_corpus_gives_one_clear_error(tmp_path):
    root = build_corpus(tmp_path / "Switchboard", with_hub5=False)
    for path in sorted(root.glob("LDC97S62/*/data/*.sph")):
        _shorten(path, round(SECONDS * RATE))
    with pytest.raises(SphereError, match="sph2pipe") as error:
        prepare_switchboard(root, tmp_path / "out")
    assert "all 6 Switchboard" in str(error.value) and "sw02001.sph" in str(error.value)


def test_rerun_is_idempotent_and_force_redoes(corpus, tmp_path):
    first = prepare_switchboard(corpus, tmp_path, dev_conversations=1)
    assert first["prepared"] == sorted(
        ["train.csv", "dev.csv", "test_swbd.csv", "test_callhome.csv", "test_eval2000.csv"]
    )
    contents = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")}
    again = prepare_switchboard(corpus, tmp_path, dev_conversations=1)
    assert again["prepared"] == [] and again["up_to_date"] == sorted(first["prepared"])
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")} == stamps
    assert again["csvs"] == first["csvs"]
    changed = prepare_switchboard(corpus, tmp_path, dev_conversations=2)
    assert changed["prepared"] == ["dev.csv", "train.csv"]
    forced = prepare_switchboard(corpus, tmp_path, dev_conversations=1, force=True)
    assert forced["prepared"] == first["prepared"]
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == contents
    assert (tmp_path / OPTIONS_NAME).exists() and (tmp_path / SUMMARY_NAME).exists()


def test_parts_may_be_absent_or_elsewhere(corpus, tmp_path):
    only_test = tmp_path / "only_test"
    shutil.copytree(corpus / "LDC2002S09", only_test / "LDC2002S09")
    shutil.copytree(corpus / "LDC2002T43", only_test / "LDC2002T43")
    result = prepare_switchboard(only_test, tmp_path / "a")
    assert result["prepared"] == sorted(["test_swbd.csv", "test_callhome.csv", "test_eval2000.csv"])
    assert "ms98" in result["missing_parts"]["train.csv, dev.csv"]
    assert not (tmp_path / "a" / "train.csv").exists()
    # the ms98 folder given separately, outside data_folder
    elsewhere = prepare_switchboard(
        only_test,
        tmp_path / "b",
        swbd_folder=corpus / "LDC97S62",
        ms98_folder=corpus / "swb_ms98_transcriptions",
        dev_conversations=1,
    )
    assert elsewhere["missing_parts"] == {}
    wav = _rows(tmp_path / "b" / "train.csv")[0]["wav"]
    assert os.path.isabs(wav) and Path(wav).is_file()
    with pytest.raises(FileNotFoundError, match="nothing to prepare"):
        prepare_switchboard(tmp_path / "a", tmp_path / "c")
    # a part named explicitly must exist (a typo is not silently a missing part)
    with pytest.raises(FileNotFoundError, match="ms98_folder .*nowhere does not exist"):
        prepare_switchboard(corpus, tmp_path / "d", ms98_folder=tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dev_conversations": 6}, "dev_conversations=6 must be between 1 and 5"),
        ({"dev_conversations": 0}, "dev_conversations must be an integer >= 1"),
        ({"train_hours": 0}, "train_hours must be > 0"),
        ({"max_utt": 0}, "max_utt must be an integer >= 1"),
        ({"min_duration": 2.0, "max_duration": 1.0}, "min_duration 2.0 > max_duration 1.0"),
    ],
)
def test_bad_options_are_named(corpus, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        prepare_switchboard(corpus, tmp_path, **options)


def test_command_line_prints_a_summary(corpus, tmp_path, capsys):
    status = main(
        ["--data_folder", str(corpus), "--save_folder", str(tmp_path), "--dev_conversations", "1"]
    )
    out = capsys.readouterr().out
    assert status == 0
    for name in ("train.csv", "dev.csv", "test_swbd.csv", "test_callhome.csv"):
        rows = len(_rows(tmp_path / name))
        assert any(line.startswith(name) and f" {rows} utts" in line for line in out.splitlines())
    assert "0 problem(s)" in out
    assert main(["--data_folder", str(tmp_path / "none"), "--save_folder", str(tmp_path)]) == 1
