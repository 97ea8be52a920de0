"""LibriSpeech / Libri-light preparation: CSVs match the files; every bad input is named."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v_speech.corpora.librispeech.command_line import main as prepare_main
from d2v_speech.corpora.librispeech.prepare import (
    DEFAULT_SPLITS,
    OPTIONS_NAME,
    SUMMARY_NAME,
    prepare_librilight_finetuning,
    prepare_librispeech,
)

HEADER = ["ID", "duration", "wav", "spk_id", "wrd"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == HEADER
        return list(reader)


def _transcripts(folder: Path) -> dict[str, str]:
    texts = {}
    for trans in folder.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            uttid, text = line.split(" ", 1)
            texts[uttid] = text
    return texts


@pytest.fixture(scope="module")
def prepared(tiny_corpus, tmp_path_factory):
    save = tmp_path_factory.mktemp("prepared")
    ls = prepare_librispeech(tiny_corpus, save, progress=False)
    ll = prepare_librilight_finetuning(
        tiny_corpus / "librispeech_finetuning", save, subset_10m=2, progress=False
    )
    return save, ls, ll


@pytest.mark.parametrize("split", DEFAULT_SPLITS)
def test_split_csv_rows_match_files(tiny_corpus, prepared, split):
    save, summary, _ = prepared
    rows = _rows(save / f"{split}.csv")
    flacs = {p.stem: p for p in (tiny_corpus / split).rglob("*.flac")}
    texts = _transcripts(tiny_corpus / split)
    assert [row["ID"] for row in rows] == sorted(flacs)
    for row in rows:
        path = flacs[row["ID"]]
        assert row["wav"] == "$data_root/" + path.relative_to(tiny_corpus).as_posix()
        assert float(row["duration"]) == pytest.approx(sf.info(path).duration, abs=1e-6)
        assert row["spk_id"] == path.parent.parent.name
        assert row["wrd"] == texts[row["ID"]]
    assert summary["csvs"][f"{split}.csv"]["utterances"] == len(rows)
    assert summary["problems"] == 0


def test_librilight_sets_nest_and_subsets_are_disjoint(tiny_corpus, prepared):
    save, _, ll_summary = prepared
    ll = tiny_corpus / "librispeech_finetuning"
    ids = {
        name: {row["ID"] for row in _rows(save / f"{name}.csv")}
        for name in ("train_10m", "train_1h", "train_10h")
    }
    subsets = [{p.stem for p in (ll / "1h" / str(k)).rglob("*.flac")} for k in range(6)]
    nine_hours = {p.stem for p in (ll / "9h").rglob("*.flac")}
    assert ids["train_10m"] == subsets[2]
    assert ids["train_10m"] < ids["train_1h"] < ids["train_10h"]
    assert ids["train_1h"] == set().union(*subsets)
    assert ids["train_10h"] == ids["train_1h"] | nine_hours
    assert sum(len(s) for s in subsets) == len(ids["train_1h"])
    for row in _rows(save / "train_10h.csv"):
        assert row["wav"].startswith("$ll_root/")
        assert (ll / row["wav"][len("$ll_root/") :]).is_file()
    assert ll_summary["csvs"]["train_10m.csv"]["options"]["subset_10m"] == 2


def test_csvs_load_in_speechbrain_with_both_placeholders(tiny_corpus, prepared):
    from speechbrain.dataio.dataio import load_data_csv

    save, _, _ = prepared
    roots = {"data_root": str(tiny_corpus), "ll_root": str(tiny_corpus / "librispeech_finetuning")}
    for name in ("test-clean.csv", "train_10m.csv"):
        data = load_data_csv(save / name, replacements=roots)
        for item in data.values():
            assert Path(item["wav"]).is_file()
            assert isinstance(item["duration"], float)


def test_rerun_skips_up_to_date_and_redoes_changed_options(tiny_corpus, prepared):
    save, _, _ = prepared
    csv_path = save / "dev-clean.csv"
    before = csv_path.stat().st_mtime_ns
    again = prepare_librispeech(tiny_corpus, save, splits=["dev-clean"], progress=False)
    assert again["up_to_date"] == ["dev-clean.csv"] and again["prepared"] == []
    assert again["csvs"]["dev-clean.csv"]["utterances"] == len(_rows(csv_path))
    assert csv_path.stat().st_mtime_ns == before
    shortest = min(float(row["duration"]) for row in _rows(csv_path))
    changed = prepare_librispeech(
        tiny_corpus, save, splits=["dev-clean"], min_duration=shortest + 1e-3, progress=False
    )
    assert changed["prepared"] == ["dev-clean.csv"]
    assert changed["csvs"]["dev-clean.csv"]["filtered_by_duration"] >= 1
    assert all(float(row["duration"]) > shortest for row in _rows(csv_path))
    forced = prepare_librispeech(
        tiny_corpus, save, splits=["dev-clean"], force=True, progress=False
    )
    assert forced["prepared"] == ["dev-clean.csv"]
    assert json.loads((save / OPTIONS_NAME).read_text())["dev-clean.csv"]["min_duration"] is None


def _write_tone(path: Path, rate: int = 16000, channels: int = 1, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.3 * np.sin(np.arange(int(rate * seconds)) * 0.1)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data, rate, format="FLAC", subtype="PCM_16")


@pytest.fixture
def bad_corpus(tmp_path) -> Path:
    """dev-clean/1/2 with two good utterances and one of each kind of bad input."""
    chapter = tmp_path / "LS" / "dev-clean" / "1" / "2"
    _write_tone(chapter / "1-2-0000.flac")
    _write_tone(chapter / "1-2-0001.flac", seconds=1.25)
    (chapter / "1-2-0002.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    _write_tone(chapter / "1-2-0003.flac", rate=8000)
    _write_tone(chapter / "1-2-0004.flac", channels=2)
    _write_tone(chapter / "1-2-0005.flac")
    _write_tone(chapter / "1-2-0007.flac")
    lines = [
        "1-2-0000 HELLO WORLD",
        "1-2-0001 IT'S A NICE DAY",
        "1-2-0002 CORRUPT FILE",
        "1-2-0003 EIGHT KILOHERTZ",
        "1-2-0004 TWO CHANNELS",
        "1-2-0005",
        "1-2-0006 NO AUDIO FOR THIS LINE",
    ]
    (chapter / "1-2.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "LS"


def test_every_bad_input_is_skipped_named_and_counted(bad_corpus, tmp_path, caplog):
    chapter = bad_corpus / "dev-clean" / "1" / "2"
    save = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        result = prepare_librispeech(bad_corpus, save, splits=["dev-clean"], progress=False)
    rows = _rows(save / "dev-clean.csv")
    assert [(row["ID"], row["wrd"]) for row in rows] == [
        ("1-2-0000", "HELLO WORLD"),
        ("1-2-0001", "IT'S A NICE DAY"),
    ]
    assert [float(row["duration"]) for row in rows] == [0.5, 1.25]
    expected = {
        ("unreadable_audio", chapter / "1-2-0002.flac"),
        ("wrong_sample_rate", chapter / "1-2-0003.flac"),
        ("not_mono", chapter / "1-2-0004.flac"),
        ("empty_transcript", chapter / "1-2.trans.txt"),
        ("transcript_without_audio", chapter / "1-2.trans.txt"),
        ("audio_without_transcript", chapter / "1-2-0007.flac"),
    }
    problems = result["csvs"]["dev-clean.csv"]["problems"]
    assert {(p["kind"], Path(p["file"])) for p in problems} == expected
    assert result["problems"] == len(expected)
    stored = json.loads((save / SUMMARY_NAME).read_text())["dev-clean.csv"]
    assert stored["problems"] == problems
    assert stored["problem_counts"]["wrong_sample_rate"] == 1
    for kind, path in expected:
        assert any(kind in msg and str(path) in msg for msg in caplog.messages), (kind, path)
    details = {p["kind"]: p["detail"] for p in problems}
    assert "1-2-0005" in details["empty_transcript"]
    assert "1-2-0006" in details["transcript_without_audio"]
    assert "8000 Hz" in details["wrong_sample_rate"]


def test_unlabelled_split_keeps_audio_without_transcripts(bad_corpus, tmp_path):
    result = prepare_librispeech(
        bad_corpus,
        tmp_path / "out",
        splits=["dev-clean"],
        require_transcripts=False,
        progress=False,
    )
    rows = {row["ID"]: row["wrd"] for row in _rows(tmp_path / "out" / "dev-clean.csv")}
    assert rows == {
        "1-2-0000": "HELLO WORLD",
        "1-2-0001": "IT'S A NICE DAY",
        "1-2-0005": "",
        "1-2-0007": "",
    }
    kinds = {p["kind"] for p in result["csvs"]["dev-clean.csv"]["problems"]}
    assert "audio_without_transcript" not in kinds and "unreadable_audio" in kinds


def test_truncated_flac_body_is_caught_by_default_and_passes_only_without_verification(tmp_path):
    chapter = tmp_path / "LS" / "dev-clean" / "1" / "2"
    _write_tone(chapter / "1-2-0000.flac", seconds=2.0)
    data = (chapter / "1-2-0000.flac").read_bytes()
    (chapter / "1-2-0000.flac").write_bytes(data[: len(data) // 2])
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HALF A FILE\n")
    full = prepare_librispeech(
        tmp_path / "LS", tmp_path / "b", splits=["dev-clean"], progress=False
    )
    assert full["csvs"]["dev-clean.csv"]["utterances"] == 0
    assert [p["kind"] for p in full["csvs"]["dev-clean.csv"]["problems"]] == ["corrupt_audio"]
    quick = prepare_librispeech(
        tmp_path / "LS", tmp_path / "a", splits=["dev-clean"], verify_audio=False, progress=False
    )
    assert quick["csvs"]["dev-clean.csv"]["utterances"] == 1  # the header alone looks fine


def test_changed_files_are_noticed_and_only_the_good_files_listed(tmp_path, caplog):
    chapter = tmp_path / "LS" / "dev-clean" / "1" / "2"
    for k in range(3):
        _write_tone(chapter / f"1-2-000{k}.flac", seconds=1.0)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 A\n1-2-0001 B\n1-2-0002 C\n")
    save = tmp_path / "csv"

    def ids():
        return [row["ID"] for row in _rows(save / "dev-clean.csv")]

    first = prepare_librispeech(tmp_path / "LS", save, splits=["dev-clean"], progress=False)
    assert first["prepared"] == ["dev-clean.csv"] and ids() == ["1-2-0000", "1-2-0001", "1-2-0002"]
    caplog.clear()
    again = prepare_librispeech(tmp_path / "LS", save, splits=["dev-clean"], progress=False)
    assert again["up_to_date"] == ["dev-clean.csv"] and "up to date" in caplog.text
    # a file deleted and another truncated after preparation: the old CSV is not reused
    (chapter / "1-2-0002.flac").unlink()
    data = (chapter / "1-2-0001.flac").read_bytes()
    (chapter / "1-2-0001.flac").write_bytes(data[: len(data) // 2])
    caplog.clear()
    redone = prepare_librispeech(tmp_path / "LS", save, splits=["dev-clean"], progress=False)
    assert redone["prepared"] == ["dev-clean.csv"] and ids() == ["1-2-0000"]
    assert "its source files changed (4 -> 3 files" in caplog.text
    kinds = sorted(p["kind"] for p in redone["csvs"]["dev-clean.csv"]["problems"])
    assert kinds == ["corrupt_audio", "transcript_without_audio"]
    # the damaged file is fixed: noticed again, listed again
    _write_tone(chapter / "1-2-0001.flac", seconds=1.0)
    fixed = prepare_librispeech(tmp_path / "LS", save, splits=["dev-clean"], progress=False)
    assert fixed["prepared"] == ["dev-clean.csv"] and ids() == ["1-2-0000", "1-2-0001"]


def test_short_clips_are_dropped_and_silent_or_clipped_audio_is_kept_with_a_warning(tmp_path):
    chapter = tmp_path / "LS" / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    rate = 16000
    square = np.where(np.sin(2 * np.pi * 200 * np.arange(rate) / rate) >= 0, 32767, -32767)
    clips = {
        "1-2-0000": (0.3 * np.sin(np.arange(rate) / 7.0) * 32767).astype(np.int16),  # speech-like
        "1-2-0001": np.zeros(160, dtype=np.int16),  # 10 ms: under the CNN's receptive field
        "1-2-0002": np.zeros(rate, dtype=np.int16),  # all zero
        "1-2-0003": square.astype(np.int16),  # full-scale square wave
        "1-2-0004": np.full(rate, 1000, dtype=np.int16),  # constant
    }
    for uttid, samples in clips.items():
        sf.write(chapter / f"{uttid}.flac", samples, rate, subtype="PCM_16")
    (chapter / "1-2.trans.txt").write_text("".join(f"{u} WORDS\n" for u in clips))
    result = prepare_librispeech(
        tmp_path / "LS", tmp_path / "csv", splits=["dev-clean"], progress=False
    )
    summary = result["csvs"]["dev-clean.csv"]
    assert summary["utterances"] == 4 and summary["problem_counts"] == {"too_short": 1}
    assert summary["warning_counts"] == {"silent": 1, "clipped": 1, "constant": 1}
    warned = {Path(w["file"]).stem: w["kind"] for w in summary["warnings"]}
    assert warned == {"1-2-0002": "silent", "1-2-0003": "clipped", "1-2-0004": "constant"}


def test_missing_folders_raise_unless_optional(bad_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="test-other"):
        prepare_librispeech(
            bad_corpus, tmp_path / "out", splits=["dev-clean", "test-other"], progress=False
        )
    result = prepare_librispeech(
        bad_corpus,
        tmp_path / "out",
        splits=["dev-clean", "test-other"],
        optional_splits=["test-other"],
        progress=False,
    )
    assert result["missing_splits"] == ["test-other"]
    assert not (tmp_path / "out" / "test-other.csv").exists()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_librispeech(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="9h"):
        (bad_corpus / "ll" / "1h" / "0").mkdir(parents=True)
        for k in range(1, 6):
            (bad_corpus / "ll" / "1h" / str(k)).mkdir()
        prepare_librilight_finetuning(bad_corpus / "ll", tmp_path / "out", progress=False)


def test_bad_arguments_are_rejected(bad_corpus, tmp_path):
    with pytest.raises(ValueError, match="subset_10m"):
        prepare_librilight_finetuning(bad_corpus, tmp_path, subset_10m=6)
    with pytest.raises(ValueError, match="min_duration"):
        prepare_librispeech(
            bad_corpus, tmp_path, splits=["dev-clean"], min_duration=5.0, max_duration=1.0
        )
    with pytest.raises(ValueError, match="splits"):
        prepare_librispeech(bad_corpus, tmp_path, splits=[])
    assert prepare_librispeech(tmp_path / "nowhere", tmp_path, skip_prep=True)["skipped_prep"]


def test_cli_prepares_everything_present(tiny_corpus, tmp_path, capsys):
    assert prepare_main(["--data_folder", str(tiny_corpus), "--save_folder", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == sorted(
        [f"{s}.csv" for s in DEFAULT_SPLITS]
        + ["train-other-500.csv", "train_10m.csv", "train_1h.csv", "train_10h.csv"]
    )
    assert "0 problem(s)" in capsys.readouterr().out
