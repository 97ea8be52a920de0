"""A tiny generated mini Switchboard: LDC layout, SPHERE headers, text files vs audio, bytes."""

import csv
import filecmp
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_switchboard_markup import MS98_TOKEN, STM_TOKEN

from d2v_speech.corpora.switchboard.sphere import read_sphere_header
from d2v_speech.synthetic.switchboard import generate_mini_switchboard, render
from d2v_speech.synthetic.voices import (
    SEEN_ESPEAK_ACCENTS,
    SEEN_FLITE_VOICES,
    UNSEEN_ESPEAK_ACCENTS,
)

TINY = {
    "conversations": 2,
    "eval_conversations": 1,
    "seed": 3,
    "train_seconds": (15.0, 15.0),
    "eval_seconds": (15.0, 15.0),
    "progress": False,
}
SR = 8000
MS98_LINE = re.compile(r"^(sw\d{4})([AB])-ms98-a-(\d{4}) (\d+\.\d{6}) (\d+\.\d{6}) (\S.*)$")
STM_LINE = re.compile(
    r"^((sw|en)_\d{4}) ([AB]) \1_\3 (\d+\.\d{2}) (\d+\.\d{2}) <O,(sw|en),([FM]),\6-\7> (\S.*)$"
)
PEM_LINE = re.compile(r"^((?:sw|en)_\d{4}) ([AB]) unknown_speaker (\d+\.\d{2}) (\d+\.\d{2})$")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("msw") / "MiniSwitchboard"
    generate_mini_switchboard(out, jobs=2, **TINY)
    return out


@pytest.fixture(scope="module")
def manifest(corpus) -> dict:
    return json.loads((corpus / "mini_switchboard.json").read_text())


def _ms98_files(corpus: Path) -> list[Path]:
    return sorted((corpus / "swb_ms98_transcriptions").glob("*/*/*-ms98-a-trans.text"))


def _train_audio(corpus: Path, ms98_name: str) -> Path:
    (path,) = corpus.glob(f"LDC97S62/swb1_d*/data/sw0{ms98_name[2:]}.sph")
    return path


def _stm_lines(corpus: Path) -> list[str]:
    stm = corpus / "LDC2002T43/2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm"
    return stm.read_text().splitlines()


# --------------------------------------------------------------------------- layout and audio
def test_ldc_layout(corpus):
    names = {p.name for p in corpus.iterdir()}
    assert names == {
        "LDC97S62",
        "LDC2002S09",
        "LDC2002T43",
        "swb_ms98_transcriptions",
        "mini_switchboard.json",
        ".mini_switchboard_complete.json",
        ".mini_switchboard.lock",
    }
    swbd = corpus / "LDC97S62"
    assert sorted(p.name for p in swbd.iterdir()) == ["docs", *(f"swb1_d{i}" for i in range(1, 5))]
    assert all((swbd / f"swb1_d{i}" / "data").is_dir() for i in range(1, 5))
    assert sorted(p.name for p in (swbd / "docs").iterdir()) == [
        "caller_tab.csv",
        "conv_tab.csv",
        "swb1_all.dvd.tbl",
    ]
    train = sorted(swbd.glob("swb1_d*/data/*.sph"))
    assert len(train) == 2 and all(re.fullmatch(r"sw0\d{4}\.sph", p.name) for p in train)
    ms98 = _ms98_files(corpus)
    assert len(ms98) == 4
    for path in ms98:  # NN/NNNN/swNNNN{A,B}-ms98-a-trans.text
        number = path.parent.name
        assert path.parent.parent.name == number[:2]
        assert path.name[:6] == f"sw{number}"
    hub5 = sorted(p.name for p in (corpus / "LDC2002S09/hub5e_00/english").iterdir())
    assert len(hub5) == 3 and hub5[1] == "hub5e_00.pem"
    assert re.fullmatch(r"en_\d{4}\.sph", hub5[0]) and re.fullmatch(r"sw_\d{4}\.sph", hub5[2])
    reference = corpus / "LDC2002T43/2000_hub5_eng_eval_tr/reference"
    assert {p.name for p in reference.iterdir()} == {
        "hub5e00.english.000405.stm",
        "en20000405_hub5.glm",
    }


def test_sphere_headers_are_two_channel_8khz_ulaw(corpus):
    files = sorted(corpus.rglob("*.sph"))
    assert len(files) == 4
    for path in files:
        header = read_sphere_header(path)
        assert header["channel_count"] == 2
        assert header["sample_rate"] == 8000
        assert header["sample_coding"] == "ulaw"
        assert header["sample_count"] == sf.info(str(path)).frames
        assert path.read_bytes()[:8] == b"NIST_1A\n"


def test_ms98_lines_parse_and_tile_each_side(corpus):
    for path in _ms98_files(corpus):
        lines = path.read_text().split("\n")
        assert lines[-1] == "", "ends with a newline"
        frames = sf.info(str(_train_audio(corpus, path.name[:6]))).frames
        previous_end, previous_silence = 0.0, False
        for number, line in enumerate(lines[:-1], start=1):
            match = MS98_LINE.match(line)
            assert match, line
            stem, side, index, begin, end, text = match.groups()
            assert path.name == f"{stem}{side}-ms98-a-trans.text"
            assert int(index) == number
            assert float(begin) == previous_end  # no gap, no overlap
            assert float(end) > float(begin)
            silence = text == "[silence]"
            assert not (silence and previous_silence), "silence segments are merged"
            if not silence:
                assert all(MS98_TOKEN.match(token) for token in text.split()), text
            previous_end, previous_silence = float(end), silence
        assert previous_end == frames / SR


def test_audio_energy_matches_ms98_segments(corpus):
    speech_segments = 0
    for path in _ms98_files(corpus):
        audio, rate = sf.read(str(_train_audio(corpus, path.name[:6])))
        own = 0 if path.name[6] == "A" else 1
        for line in path.read_text().splitlines():
            _, begin, end, text = line.split(maxsplit=3)
            start, stop = round(float(begin) * rate), round(float(end) * rate)
            mine, other = _rms(audio[start:stop, own]), _rms(audio[start:stop, 1 - own])
            if text == "[silence]":
                assert mine < 0.005, line
            else:
                speech_segments += 1
                assert mine > 8 * other, line
    assert speech_segments >= 4


def test_audio_energy_matches_stm_segments(corpus):
    folder = corpus / "LDC2002S09/hub5e_00/english"
    for line in _stm_lines(corpus):
        if line.startswith(";;"):
            continue
        name, side, _, begin, end = line.split()[:5]
        audio, rate = sf.read(str(folder / f"{name}.sph"))
        own = "AB".index(side)
        piece = audio[round(float(begin) * rate) : round(float(end) * rate)]
        assert _rms(piece[:, own]) > 8 * _rms(piece[:, 1 - own]), line


# --------------------------------------------------------------------------- Hub5'00 files
def test_stm_and_pem_parse_and_agree(corpus):
    lines = _stm_lines(corpus)
    header = [line for line in lines if line.startswith(";;")]
    assert header and lines[: len(header)] == header, "comment/label lines come first"
    assert any(line.startswith(';; LABEL "sw"') for line in header)
    segments = []
    for line in lines[len(header) :]:
        match = STM_LINE.match(line)
        assert match, line
        name, prefix, side, begin, end, corpus_label, _, words = match.groups()
        assert prefix == corpus_label
        assert float(begin) < float(end)
        frames = sf.info(str(corpus / "LDC2002S09/hub5e_00/english" / f"{name}.sph")).frames
        assert float(end) <= frames / SR + 0.01
        if words != "IGNORE_TIME_SEGMENT_IN_SCORING":
            assert all(STM_TOKEN.match(token) for token in words.split()), words
        segments.append((name, side, float(begin), float(end)))
    assert segments == sorted(segments)
    assert {name[:3] for name, *_ in segments} == {"sw_", "en_"}
    assert sum("IGNORE_TIME_SEGMENT_IN_SCORING" in line for line in lines) >= 2
    pem = (corpus / "LDC2002S09/hub5e_00/english/hub5e_00.pem").read_text().splitlines()
    pem_segments = []
    for line in pem:
        if line.startswith(";;"):
            continue
        name, side, begin, end = PEM_LINE.match(line).groups()
        pem_segments.append((name, side, float(begin), float(end)))
    assert pem_segments == segments


# --------------------------------------------------------------------------- speakers
def _conv_tab(corpus: Path) -> dict[int, tuple[int, int]]:
    table = {}
    with open(corpus / "LDC97S62/docs/conv_tab.csv", newline="") as handle:
        for row in csv.reader(handle):
            fields = [value.strip().strip('"') for value in row]
            table[int(fields[0])] = (int(fields[2]), int(fields[3]))
    return table


def test_conv_tab_callers_recur_and_match_files(corpus, manifest):
    table = _conv_tab(corpus)
    audio = {int(p.stem[3:]) for p in corpus.glob("LDC97S62/swb1_d*/data/*.sph")}
    assert set(table) == audio
    pairs = [frozenset(callers) for callers in table.values()]
    assert all(len(pair) == 2 for pair in pairs) and len(set(pairs)) == len(pairs)
    uses = Counter(caller for callers in table.values() for caller in callers)
    assert max(uses.values()) >= 2, "some caller talks in two conversations"
    for conversation in manifest["conversations"]:
        if conversation["part"] == "train":
            callers = tuple(s["caller"] for s in conversation["speakers"])
            assert table[int(conversation["name"][3:])] == callers
    with open(corpus / "LDC97S62/docs/caller_tab.csv", newline="") as handle:
        sexes = {int(r[0]): r[3].strip().strip('"') for r in csv.reader(handle)}
    assert set(sexes) == set(uses) and set(sexes.values()) <= {"MALE", "FEMALE"}
    for line in (corpus / "LDC97S62/docs/swb1_all.dvd.tbl").read_text().splitlines():
        disc, name = line.split()
        assert (corpus / "LDC97S62" / disc / "data" / name).is_file()


def test_eval_voices_are_disjoint_from_training(manifest):
    voices = {part: set() for part in ("train", "swbd", "callhome")}
    for conversation in manifest["conversations"]:
        for speaker in conversation["speakers"]:
            voices[conversation["part"]].add(speaker["voice"])
    assert not voices["train"] & (voices["swbd"] | voices["callhome"])
    assert not voices["swbd"] & voices["callhome"]
    for voice in voices["train"]:
        assert voice.split("/")[1] in SEEN_ESPEAK_ACCENTS + SEEN_FLITE_VOICES
    for voice in voices["swbd"] | voices["callhome"]:
        assert voice.split("/")[1] in UNSEEN_ESPEAK_ACCENTS + ("slt",)


def test_dictionary_covers_every_ms98_token(corpus):
    lines = (corpus / "swb_ms98_transcriptions/sw-ms98-dict.text").read_text().splitlines()
    assert lines[0].startswith("#")
    entries = dict(line.split(" ", 1) for line in lines if not line.startswith("#"))
    assert entries["[silence]"] == "sil" and entries["i"] == "ay"
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", phones) for phones in entries.values())
    for path in _ms98_files(corpus):
        for line in path.read_text().splitlines():
            for token in line.split()[3:]:
                assert token.startswith("<") or token in entries, token


# --------------------------------------------------------------------------- stamp, bytes
def test_rerun_is_fast_noop(corpus, manifest):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    started = time.perf_counter()
    again = generate_mini_switchboard(corpus, jobs=2, **TINY)
    assert time.perf_counter() - started < 10.0
    assert again == manifest
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == before


def test_same_seed_gives_identical_bytes_for_any_jobs(corpus, tmp_path):
    other = tmp_path / "again"
    generate_mini_switchboard(other, jobs=1, **TINY)
    mine = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert mine == theirs
    for relative in mine:
        assert filecmp.cmp(corpus / relative, other / relative, shallow=False), relative


def test_interrupted_run_resumes_without_rendering_finished_conversations(
    corpus, tmp_path, monkeypatch
):
    real_lay_out = render.lay_out
    calls = []

    def interrupted_lay_out(spec, rng):
        calls.append(spec.name)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real_lay_out(spec, rng)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(render, "lay_out", interrupted_lay_out)
    with pytest.raises(KeyboardInterrupt):
        generate_mini_switchboard(out, jobs=1, **TINY)
    assert sorted(p.name for p in out.iterdir()) == [
        ".mini_switchboard.lock",
        ".mini_switchboard_staging",
    ]
    assert len(list(out.rglob("*.sph"))) == 2
    finished = calls[:2]
    calls.clear()
    monkeypatch.setattr(
        render, "lay_out", lambda spec, rng: calls.append(spec.name) or real_lay_out(spec, rng)
    )
    generate_mini_switchboard(out, jobs=1, **TINY)
    assert len(calls) == 2 and not set(calls) & set(finished)
    assert not (out / ".mini_switchboard_staging").exists()
    for path in corpus.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(corpus)).read_bytes() == path.read_bytes(), path


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="conversations"):
        generate_mini_switchboard("/nonexistent", conversations=0)
    with pytest.raises(ValueError, match="train_seconds"):
        generate_mini_switchboard("/nonexistent", train_seconds=(30.0, 20.0))
    with pytest.raises(ValueError, match="seed"):
        generate_mini_switchboard("/nonexistent", seed=-1)
