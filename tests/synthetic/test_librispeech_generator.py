"""The embedded corpus: LibriSpeech/Libri-light layout, determinism, disjointness, speakers."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v_speech.synthetic.librispeech import generate, planning
from d2v_speech.synthetic.librispeech.generate import (
    FINETUNING_DIR,
    LIBRISPEECH_SPLITS,
    LOCK_NAME,
    STAGING_NAME,
    STAMP_NAME,
    generate_corpus,
    is_complete,
)

UTT_NAME = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")
TRANS_LINE = re.compile(r"^(\d+-\d+-\d{4}) ([A-Z']+(?: [A-Z']+)*)$")
LIBRILIGHT_FOLDERS = [f"{FINETUNING_DIR}/1h/{k}/{c}" for k in range(6) for c in ("clean", "other")]
LIBRILIGHT_FOLDERS += [f"{FINETUNING_DIR}/9h/clean", f"{FINETUNING_DIR}/9h/other"]
ALL_FOLDERS = list(LIBRISPEECH_SPLITS) + [generate.OTHER_POOL] + LIBRILIGHT_FOLDERS


def _size(corpus: Path) -> dict:
    """hours and seed the shared tiny corpus was generated with (from its corpus.json)."""
    summary = json.loads((corpus / "corpus.json").read_text())
    return {"hours": summary["hours"], "seed": summary["seed"]}


def _read_folder(folder: Path) -> dict[str, tuple[str, Path]]:
    """uttid -> (transcript, audio path), asserting the LibriSpeech layout on the way."""
    utterances = {}
    for speaker_dir in sorted(folder.iterdir()):
        assert speaker_dir.is_dir() and speaker_dir.name.isdigit(), speaker_dir
        for chapter_dir in sorted(speaker_dir.iterdir()):
            assert chapter_dir.is_dir() and chapter_dir.name.isdigit(), chapter_dir
            trans_name = f"{speaker_dir.name}-{chapter_dir.name}.trans.txt"
            flacs = sorted(p for p in chapter_dir.iterdir() if p.suffix == ".flac")
            assert sorted(p.name for p in chapter_dir.iterdir()) == sorted(
                [trans_name] + [p.name for p in flacs]
            )
            lines = (chapter_dir / trans_name).read_text(encoding="utf-8").split("\n")
            assert lines[-1] == "", "trans.txt ends with a newline"
            ids = []
            for line in lines[:-1]:
                match = TRANS_LINE.match(line)
                assert match, line
                ids.append(match.group(1))
                utterances[match.group(1)] = (
                    match.group(2),
                    chapter_dir / f"{match.group(1)}.flac",
                )
            assert ids == sorted(ids)
            assert ids == [p.stem for p in flacs]
            for flac in flacs:
                speaker, chapter, _ = UTT_NAME.match(flac.name).groups()
                assert (speaker, chapter) == (speaker_dir.name, chapter_dir.name)
    return utterances


@pytest.fixture(scope="module")
def corpus_index(tiny_corpus):
    return {folder: _read_folder(tiny_corpus / folder) for folder in ALL_FOLDERS}


@pytest.fixture(scope="module")
def speaker_table(tiny_corpus):
    with open(tiny_corpus / "speakers.csv", newline="") as handle:
        return {row["speaker_id"]: row for row in csv.DictReader(handle)}


def test_layout_has_every_split_and_no_leftovers(tiny_corpus, corpus_index):
    expected_top = set(LIBRISPEECH_SPLITS) | {
        generate.OTHER_POOL,  # corpus v3: half the pool has the 'other' acoustics
        FINETUNING_DIR,
        "speakers.csv",
        "corpus.json",
        STAMP_NAME,
        LOCK_NAME,
    }
    assert {p.name for p in tiny_corpus.iterdir()} == expected_top
    ll = tiny_corpus / FINETUNING_DIR
    assert sorted(p.name for p in ll.iterdir()) == ["1h", "9h"]
    assert sorted(p.name for p in (ll / "1h").iterdir()) == [str(k) for k in range(6)]
    for folder in ALL_FOLDERS:
        assert corpus_index[folder], f"{folder} is empty"
    assert not list(tiny_corpus.rglob("*.part"))


def test_utterance_ids_are_unique_across_the_corpus(corpus_index):
    ids = [uttid for folder in ALL_FOLDERS for uttid in corpus_index[folder]]
    assert len(ids) == len(set(ids))


def test_no_sentence_in_two_splits(corpus_index):
    owner = {}
    for folder in ALL_FOLDERS:
        for text, _ in corpus_index[folder].values():
            assert owner.setdefault(text, folder) == folder, (
                f"{text!r} in {owner[text]} and {folder}"
            )
    for folder in ALL_FOLDERS:
        if folder != "train-clean-100":
            texts = [text for text, _ in corpus_index[folder].values()]
            assert len(texts) == len(set(texts)), folder


def test_audio_is_16k_mono_with_plausible_duration(corpus_index):
    for folder in ALL_FOLDERS:
        for uttid, (text, path) in corpus_index[folder].items():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
            seconds_per_word = info.duration / len(text.split())
            assert 0.12 < seconds_per_word < 0.8, (uttid, info.duration, text)
            assert 0.5 < info.duration < 20.0, uttid


def test_silence_is_trimmed_on_clean_audio(corpus_index):
    # Raw TTS output has 200-350 ms of silence at one end; trimming keeps at most 50 ms + a frame.
    for folder in ("train-clean-100", "test-clean"):
        for uttid, (_, path) in corpus_index[folder].items():
            samples, rate = sf.read(path, dtype="float64")
            frame = rate // 100
            rms = [
                np.sqrt(np.mean(samples[i : i + frame] ** 2))
                for i in range(0, len(samples) - frame + 1, frame)
            ]
            loud = [i for i, value in enumerate(rms) if value > 0.01 * max(rms)]
            assert loud[0] * 10 <= 60, (uttid, "leading silence ms", loud[0] * 10)
            assert (len(rms) - 1 - loud[-1]) * 10 <= 60, (uttid, "trailing silence")


def test_corpus_json_sizes_match_files(tiny_corpus, corpus_index):
    summary = json.loads((tiny_corpus / "corpus.json").read_text())
    tiny_hours = summary["hours"]
    for folder in ALL_FOLDERS:
        seconds = sum(sf.info(path).duration for _, path in corpus_index[folder].values())
        assert summary["folders"][folder]["utterances"] == len(corpus_index[folder])
        assert summary["folders"][folder]["hours"] == pytest.approx(seconds / 3600, abs=1e-4)
    # corpus v3: a pool of 5 x hours, half clean and half 'other'
    for folder in ("train-clean-100", generate.OTHER_POOL):
        pool_hours = summary["folders"][folder]["hours"]
        assert 2.5 * tiny_hours * 0.7 < pool_hours < 2.5 * tiny_hours * 1.3
    one_hour = sum(summary["librilight_subsets"][f"1h/{k}"]["utterances"] for k in range(6))
    assert summary["librilight_subsets"]["1h"]["utterances"] == one_hour


def test_held_out_voices_never_in_training_and_clean_eval_voices_are(corpus_index, speaker_table):
    def voices(folders):
        keys = set()
        for folder in folders:
            for uttid in corpus_index[folder]:
                row = speaker_table[uttid.split("-")[0]]
                keys.add((row["engine"], row["voice"], row["variant"]))
        return keys

    training = voices(["train-clean-100", generate.OTHER_POOL] + LIBRILIGHT_FOLDERS)
    training_accents = {voice for _, voice, _ in training}
    for split in ("dev-other", "test-other"):
        held_out = voices([split])
        assert not held_out & training
        assert not {voice for _, voice, _ in held_out} & training_accents
    assert not voices(["dev-other"]) & voices(["test-other"])
    pool = voices(["train-clean-100"])
    assert voices(["test-clean"]) <= pool
    assert voices(["dev-clean"]) <= pool
    assert voices(LIBRILIGHT_FOLDERS) <= pool


def test_speaker_table_lists_every_speaker_with_its_splits(corpus_index, speaker_table):
    for folder in ALL_FOLDERS:
        for uttid in corpus_index[folder]:
            assert folder in speaker_table[uttid.split("-")[0]]["splits"].split()


def test_generation_is_byte_identical_whatever_the_job_count(tiny_corpus, tmp_path):
    other = tmp_path / "again"
    generate_corpus(other, **_size(tiny_corpus), jobs=1, progress=False)
    files = sorted(p.relative_to(tiny_corpus) for p in tiny_corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for relative in files:
        assert (tiny_corpus / relative).read_bytes() == (other / relative).read_bytes(), relative


def test_rerun_with_same_settings_is_a_no_op(tiny_corpus):
    stamp = tiny_corpus / STAMP_NAME
    flac = next(tiny_corpus.rglob("*.flac"))
    before = (stamp.stat().st_mtime_ns, flac.stat().st_mtime_ns)
    summary = generate_corpus(tiny_corpus, **_size(tiny_corpus), jobs=2, progress=False)
    assert summary == json.loads((tiny_corpus / "corpus.json").read_text())
    assert (stamp.stat().st_mtime_ns, flac.stat().st_mtime_ns) == before
    settings = json.loads(stamp.read_text())
    assert is_complete(tiny_corpus, settings)
    assert not is_complete(tiny_corpus, {**settings, "seed": settings["seed"] + 1})


def test_interrupted_generation_does_not_look_complete_and_resumes(
    tiny_corpus, tmp_path, monkeypatch
):
    real_render = generate.render_utterance
    calls = {"n": 0}

    def failing_render(*args):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real_render(*args)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(generate, "render_utterance", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(out, **_size(tiny_corpus), jobs=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, STAGING_NAME]
    assert len(list((out / STAGING_NAME).rglob("*.flac"))) == 10
    monkeypatch.setattr(generate, "render_utterance", real_render)
    generate_corpus(out, **_size(tiny_corpus), jobs=1, progress=False)
    assert not (out / STAGING_NAME).exists()
    for path in tiny_corpus.rglob("*.flac"):
        assert (out / path.relative_to(tiny_corpus)).read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": 0}, "hours"),
        ({"seed": -1}, "seed"),
        ({"jobs": 0}, "jobs"),
        ({"hours": 500.0}, "sentences"),
        ({"pool_hours": -1.0}, "pool_hours"),
        ({"other_pool_fraction": 1.0}, "other_pool_fraction"),
    ],
)
def test_bad_settings_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_corpus(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def _generate_quietly(out: str, size: dict) -> str:
    return json.dumps(generate_corpus(out, jobs=1, progress=False, **size), sort_keys=True)


def test_concurrent_generators_into_one_folder_take_turns(tiny_corpus, tmp_path):
    import multiprocessing

    out = tmp_path / "shared"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        summaries = pool.starmap(_generate_quietly, [(str(out), _size(tiny_corpus))] * 2)
    assert summaries[0] == summaries[1]
    for path in tiny_corpus.rglob("*.flac"):
        assert (out / path.relative_to(tiny_corpus)).read_bytes() == path.read_bytes()


def test_a_larger_pool_with_other_acoustics_leaves_every_other_set_as_it_was():
    sentences = generate.load_sentences(Path(generate.FORTUNE_DIR))
    plain = planning.plan_corpus(sentences, 0.5, 3)
    big = planning.plan_corpus(sentences, 0.5, 3, pool_hours=2.0, other_pool_fraction=0.5)
    pool = planning.POOL_FOLDERS

    def held(plan):
        return [
            (u.relative_path, u.text, u.degraded, u.speaker) for u in plan if u.folder not in pool
        ]

    assert held(plain) == held(big)
    clean = [u for u in big if u.folder == "train-clean-100"]
    other = [u for u in big if u.folder == generate.OTHER_POOL]
    words = [
        sum(len(u.text.split()) for u in us) * planning.SECONDS_PER_WORD for us in (clean, other)
    ]
    assert all(0.9 * 3600 <= w <= 1.1 * 3600 for w in words)  # 1 h each, as planned
    assert not any(u.degraded for u in clean) and all(u.degraded for u in other)
    assert not {u.text for u in clean} & {u.text for u in other}
    assert not ({u.text for u in clean} | {u.text for u in other}) & {t for _, t, _, _ in held(big)}
    assert {u.speaker.group for u in other} == {"seen"}


def test_pool_only_voices_speak_in_the_pool_alone_and_never_as_a_held_out_voice():
    from d2v_speech.synthetic import voices

    sentences = generate.load_sentences(Path(generate.FORTUNE_DIR))
    pool = planning.POOL_FOLDERS
    base = planning.plan_corpus(sentences, 0.5, 3, pool_hours=2.0, other_pool_fraction=0.5)
    plan = planning.plan_corpus(
        sentences, 0.5, 3, pool_hours=2.0, other_pool_fraction=0.5, pool_voices=40
    )

    def held(plan):
        return [
            (u.relative_path, u.text, u.degraded, u.speaker) for u in plan if u.folder not in pool
        ]

    assert held(plan) == held(base)  # labelled, dev and test sets unchanged
    extra = {u.speaker for u in plan if u.speaker.group == "pool"}
    assert len(extra) == 40
    assert {u.folder for u in plan if u.speaker.group == "pool"} == set(pool)
    held_out = {
        (s.voice, s.variant) for s in voices.build_speakers(np.random.default_rng(0))
        if s.group in ("dev-other", "test-other")
    }  # fmt: skip
    accents = {accent for accent, _ in held_out}
    variants = {variant for _, variant in held_out}
    for speaker in extra:
        assert speaker.voice in voices.SEEN_ESPEAK_ACCENTS and speaker.voice not in accents
        assert speaker.variant not in variants and not speaker.variant.startswith("klatt")
    ids = [u.speaker.speaker_id for u in plan]
    assert len({s.speaker_id for s in {u.speaker for u in plan}}) == len(set(ids))  # no clash
    # every pool voice speaks a fair share: round-robin over training and pool-only voices
    counts = np.bincount(np.unique(ids, return_inverse=True)[1])
    pool_counts = [
        sum(1 for u in plan if u.speaker == s and u.folder == "train-clean-100") for s in extra
    ]
    assert max(pool_counts) - min(pool_counts) <= 2 and counts.min() >= 1
    with pytest.raises(ValueError, match="pool_voices must be between 0 and 270"):
        voices.build_pool_speakers(271, np.random.default_rng(0), set())


def test_an_other_pool_is_written_prepared_and_removed_when_asked_no_more(tmp_path):
    from d2v_speech.corpora.librispeech.prepare import prepare_librispeech

    out = tmp_path / "corpus"
    summary = generate_corpus(out, hours=0.02, seed=0, jobs=2, progress=False,
                              pool_hours=0.04, other_pool_fraction=0.5)  # fmt: skip
    folders = summary["folders"]
    assert folders[generate.OTHER_POOL]["degraded_acoustics"] is True
    assert folders["train-clean-100"]["degraded_acoustics"] is False
    assert summary["pool"] == {"pool_hours": 0.04, "other_pool_fraction": 0.5, "pool_voices": 200}
    prepare_librispeech(out, tmp_path / "csv", splits=["train-other-500"], progress=False)
    rows = (tmp_path / "csv" / "train-other-500.csv").read_text().splitlines()
    assert len(rows) - 1 == folders[generate.OTHER_POOL]["utterances"]
    generate_corpus(out, hours=0.02, seed=0, jobs=2, progress=False, other_pool_fraction=0.0)
    assert not (out / generate.OTHER_POOL).exists()


def test_recipes_use_a_complete_corpus_of_any_size_unless_given_hours(tmp_path, monkeypatch):
    from d2v_speech.training.pretrain_setup import ensure_embedded_corpus

    monkeypatch.chdir(tmp_path)
    out = Path("data/MiniLibriSpeech")
    generate_corpus(out, hours=0.02, seed=0, jobs=2, progress=False, pool_hours=0.03)
    stamp = (out / STAMP_NAME).read_text()
    ensure_embedded_corpus("data/MiniLibriSpeech")  # the default size would be 2 h: kept as is
    assert (out / STAMP_NAME).read_text() == stamp
    assert json.loads((out / "corpus.json").read_text())["pool"]["pool_hours"] == 0.03
