"""Speaker table: enough training voices, held-out voices never used in training."""

import numpy as np

from d2v_speech.synthetic.voices import (
    ESPEAK_PITCH_RANGE,
    ESPEAK_WPM_RANGE,
    build_speakers,
    read_speaker_table,
    write_speaker_table,
)


def test_speaker_table_separates_seen_and_held_out_voices():
    speakers = build_speakers(np.random.default_rng(0))
    seen = [s for s in speakers if s.group == "seen"]
    dev_other = [s for s in speakers if s.group == "dev-other"]
    test_other = [s for s in speakers if s.group == "test-other"]
    assert len(seen) >= 40
    assert len({s.speaker_id for s in speakers}) == len(speakers)
    assert len({s.voice_key for s in speakers}) == len(speakers)
    seen_accents = {s.voice for s in seen}
    seen_variants = {s.variant for s in seen if s.engine == "espeak-ng"}
    for held_out in dev_other + test_other:
        assert held_out.voice not in seen_accents
        assert held_out.variant == "" or held_out.variant not in seen_variants
    assert not {s.voice_key for s in dev_other} & {s.voice_key for s in test_other}


def test_speaker_settings_are_seeded_and_in_range():
    first = build_speakers(np.random.default_rng(5))
    assert first == build_speakers(np.random.default_rng(5))
    assert first != build_speakers(np.random.default_rng(6))
    for speaker in first:
        if speaker.engine == "espeak-ng":
            assert ESPEAK_PITCH_RANGE[0] <= speaker.pitch <= ESPEAK_PITCH_RANGE[1]
            assert ESPEAK_WPM_RANGE[0] <= speaker.speed <= ESPEAK_WPM_RANGE[1]
        assert 0 < speaker.gain < 1


def test_speaker_table_round_trip(tmp_path):
    speakers = build_speakers(np.random.default_rng(0))[:3]
    path = tmp_path / "speakers.csv"
    write_speaker_table(speakers, {speakers[0].speaker_id: ["dev-clean", "train-clean-100"]}, path)
    rows = read_speaker_table(path)
    by_id = {int(row["speaker_id"]): row for row in rows}
    assert by_id[speakers[0].speaker_id]["splits"] == "dev-clean train-clean-100"
    assert by_id[speakers[1].speaker_id]["splits"] == ""
    assert float(by_id[speakers[2].speaker_id]["pitch"]) == speakers[2].pitch
