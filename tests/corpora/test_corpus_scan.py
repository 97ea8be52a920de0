"""Transcript parsing, utterance identities and audio checks of the LibriSpeech-layout scanner."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v_speech.corpora.audio_checks import AudioProblem, inspect_audio
from d2v_speech.corpora.corpus_scan import read_transcripts, utterance_identity


def test_read_transcripts_flags_each_bad_line(tmp_path):
    path = tmp_path / "1-2.trans.txt"
    lines = [
        "1-2-0000 HELLO  there",
        "",
        "1-2-0001 CAF\u00c9 AU LAIT",
        "1-2-0002 FIFTY 50",
        "1-2-0000 AGAIN",
        "1-2-0003   ",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    entries, problems = read_transcripts(path)
    assert entries == {"1-2-0000": "HELLO THERE", "1-2-0001": "", "1-2-0002": "", "1-2-0003": ""}
    assert [(p.kind, p.detail.split(":")[0]) for p in problems] == [
        ("invalid_transcript", "line 3 (1-2-0001)"),
        ("invalid_transcript", "line 4 (1-2-0002)"),
        ("duplicate_id", "line 5 (1-2-0000)"),
        ("empty_transcript", "line 6 (1-2-0003)"),
    ]
    assert all(p.file == str(path) for p in problems)


def test_utterance_identity_for_librispeech_and_other_names(tmp_path):
    folder = tmp_path / "small"
    assert utterance_identity(folder / "103" / "1240" / "103-1240-0007.flac", folder) == (
        "103-1240-0007",
        "103",
    )
    book = folder / "100" / "sea_fairies" / "01_baum_64kb.flac"
    assert utterance_identity(book, folder) == ("100-sea_fairies-01_baum_64kb", "100")


def test_inspect_audio_reports_nan_samples_only_when_decoding(tmp_path):
    path = tmp_path / "nan.wav"
    samples = np.zeros(1600, dtype=np.float32)
    samples[100] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    assert inspect_audio(path).frames == 1600
    with pytest.raises(AudioProblem, match="NaN") as caught:
        inspect_audio(path, decode=True)
    assert caught.value.kind == "non_finite_audio" and caught.value.path == str(path)


def test_inspect_audio_names_missing_and_empty_files(tmp_path):
    with pytest.raises(AudioProblem) as caught:
        inspect_audio(tmp_path / "absent.flac")
    assert caught.value.kind == "unreadable_audio" and "absent.flac" in str(caught.value)
    empty = Path(tmp_path / "empty.wav")
    sf.write(empty, np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioProblem) as caught:
        inspect_audio(empty)
    assert caught.value.kind == "empty_audio"
