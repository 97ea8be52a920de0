"""The LDC text files: ms98 transcripts, STM/PEM/GLM of Hub5'00, conv_tab and caller_tab."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.synthetic.switchboard.corpus_layout import (
    DISCS,
    GLM_NAME,
    HUB5_AUDIO,
    HUB5_REFERENCE,
    MS98_ROOT,
    PEM_NAME,
    SAMPLE_RATE,
    SIDES,
    STM_NAME,
    SWBD_ROOT,
)
from d2v_speech.synthetic.switchboard.dictionary import dictionary_text
from d2v_speech.synthetic.switchboard.markup import choose
from d2v_speech.synthetic.switchboard.planning import ConversationSpec, speaker_sex
from d2v_speech.synthetic.voices import Speaker

GLM_HESITATIONS = ("AH", "EH", "ER", "HM", "HUH", "MM", "UH", "UM")
GLM_CONTRACTIONS = (
    ("CAN'T", "CAN NOT"),
    ("DIDN'T", "DID NOT"),
    ("DON'T", "DO NOT"),
    ("I'M", "I AM"),
    ("IT'S", "IT IS / IT HAS"),
    ("THAT'S", "THAT IS / THAT HAS"),
    ("THEY'RE", "THEY ARE"),
    ("WE'RE", "WE ARE"),
    ("YOU'RE", "YOU ARE"),
)
DIALECT_AREAS = ("NORTH MIDLAND", "SOUTH MIDLAND", "NORTHERN", "SOUTHERN", "WESTERN", "NYC")


def ms98_stem(spec: ConversationSpec) -> str:
    """The ms98 name of a training conversation: sw2001 (no leading zero)."""
    return f"sw{spec.number}"


def ms98_path(spec: ConversationSpec, side: str) -> str:
    """``swb_ms98_transcriptions/20/2001/sw2001A-ms98-a-trans.text``."""
    number = str(spec.number)
    return f"{MS98_ROOT}/{number[:2]}/{number}/{ms98_stem(spec)}{side}-ms98-a-trans.text"


def _seconds_text(samples: int) -> str:
    """Exact: a sample at 8 kHz is a multiple of 0.000125 s, which 6 decimals hold."""
    return f"{samples / SAMPLE_RATE:.6f}"


def ms98_lines(stem: str, side: str, segments: list[dict], total: int) -> list[str]:
    """One side's transcript: its segments with ``[silence]`` segments tiling the gaps."""
    spans, now = [], 0
    for segment in sorted(segments, key=lambda s: s["start"]):
        if segment["start"] > now:
            spans.append((now, segment["start"], "[silence]"))
        spans.append((segment["start"], segment["stop"], segment["text"]))
        now = segment["stop"]
    if now < total:
        spans.append((now, total, "[silence]"))
    return [
        f"{stem}{side}-ms98-a-{number:04d} {_seconds_text(start)} {_seconds_text(stop)} {text}\n"
        for number, (start, stop, text) in enumerate(spans, start=1)
    ]


def _centiseconds(samples: int, round_up: bool) -> str:
    per = SAMPLE_RATE // 100
    value = -(-samples // per) if round_up else samples // per
    return f"{value // 100}.{value % 100:02d}"


def stm_lines(result: dict) -> list[tuple[tuple, str, str]]:
    """(sort key, STM line, PEM line) of each segment of a Hub5'00 conversation.

    Times are outward-rounded to 1/100 s, as in the NIST files.
    """
    corpus = "sw" if result["part"] == "swbd" else "en"
    lines = []
    for segment in result["segments"]:
        side, name = segment["channel"], result["name"]
        sex = result["sexes"][side]
        begin = _centiseconds(segment["start"], round_up=False)
        end = _centiseconds(segment["stop"], round_up=True)
        labels = f"<O,{corpus},{sex},{corpus}-{sex}>"
        stm = f"{name} {side} {name}_{side} {begin} {end} {labels} {segment['text']}\n"
        pem = f"{name} {side} unknown_speaker {begin} {end}\n"
        lines.append(((name, side, segment["start"]), stm, pem))
    return lines


STM_HEADER = """;; Reference transcripts of the synthetic Hub5'00 (mini Switchboard) evaluation set.
;; Words in parentheses are optionally deletable; (X-) is a fragment.
;;
;; CATEGORY "0" "" ""
;; LABEL "O" "Overall" "Overall"
;;
;; CATEGORY "1" "Hub5 Corpus" ""
;; LABEL "sw" "Switchboard" "Switchboard conversations"
;; LABEL "en" "CallHome" "CallHome English conversations"
;;
;; CATEGORY "2" "Sex" ""
;; LABEL "F" "Female" "Female Talkers"
;; LABEL "M" "Male" "Male Talkers"
;;
;; CATEGORY "3" "Corpus/Sex" ""
;; LABEL "sw-F" "Switchboard Female" "Female Switchboard Talkers"
;; LABEL "sw-M" "Switchboard Male" "Male Switchboard Talkers"
;; LABEL "en-F" "CallHome Female" "Female CallHome Talkers"
;; LABEL "en-M" "CallHome Male" "Male CallHome Talkers"
"""


def glm_text() -> str:
    """A small GLM in NIST1 syntax: hesitation rules and a few contraction alternations."""
    lines = [
        f";;  File: {GLM_NAME}",
        ";;  Desc: transcript filtering rules for the synthetic Hub5'00 set (a small subset",
        ";;        of the NIST Hub4-E/Hub5-E rules).",
        ";;",
        f'* name "{GLM_NAME}"',
        '* desc "the GLM file of the mini Switchboard Hub5 set"',
        "* format = 'NIST1'",
        "* max_nrules = '100'",
        "* copy_no_hit = 'T'",
        "* case_sensitive = 'F'",
        "",
        ";;  Hesitation mappings",
    ]
    lines += [f"{word:<9} => %HESITATION / [ ] __ [ ]" for word in GLM_HESITATIONS]
    lines += ["", ";;  CONTRACTIONIZER rules: a contraction matches its expansions"]
    for contraction, expansions in GLM_CONTRACTIONS:
        lines.append(f"{contraction:<9} => [{{{contraction} / {expansions}}}] / [ ] __ [ ]")
    return "\n".join(lines) + "\n"


def conv_tab_line(spec: ConversationSpec, caller_of: dict[int, int], rng) -> str:
    """``2001,"Y", 1020, 1044, 303, 0, 910304, 1218, 1222``.

    Columns 0-4 are those tools read (conversation, active, caller on side A, caller on side B,
    topic); the rest (class, talk day yymmdd, start and stop hhmm) are plausible values.
    """
    caller_a, caller_b = (caller_of[s.speaker_id] for s in spec.speakers)
    topic = int(rng.integers(301, 380))
    day = f"91{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    start = int(rng.integers(8, 22)) * 100 + int(rng.integers(0, 55))
    return f'{spec.number},"Y", {caller_a}, {caller_b}, {topic}, 0, {day}, {start}, {start + 4}\n'


def caller_tab_line(speaker: Speaker, caller: int, rng) -> str:
    """``1000, 32, "N", "FEMALE", 1954, "SOUTH MIDLAND", 2, 0, "CASH", 15, "N", "", 2, "UNK"``.

    Columns: caller, pin, target, sex, birth year, dialect area, education, ti, payment type,
    amount paid, con, remarks, calls deleted, speaker partition. Only sex follows the voice.
    """
    sex = "FEMALE" if speaker_sex(speaker) == "F" else "MALE"
    pin = int(rng.integers(1, 1000))
    born = int(rng.integers(1930, 1972))
    dialect = choose(rng, DIALECT_AREAS)
    education = int(rng.integers(1, 4))
    return (
        f'{caller}, {pin}, "N", "{sex}", {born}, "{dialect}", {education}, 0, "CASH", 15, '
        f'"N", "", 0, "UNK"\n'
    )


MS98_README = """AAREADME.text: synthetic stand-in for the ISIP Switchboard (ms98) transcriptions.

NN/NNNN/swNNNN{A,B}-ms98-a-trans.text hold one line per segment:
  <side>-ms98-a-<number> <start s> <end s> <words>
The segments of a side tile it from 0 to the end of the audio; [silence] fills the gaps.
sw-ms98-dict.text gives the pronunciation of every token (flite t2p, not the ISIP lexicon).
Word-level alignments (*-word.text) are not included.
"""


def write_training_text(
    specs: list[ConversationSpec],
    results: list[dict],
    caller_of: dict[int, int],
    staging: Path,
    seed: int,
) -> None:
    """ms98 transcripts, dictionary, README and the docs tables of LDC97S62."""
    rng = np.random.default_rng([seed, len(specs), 1])
    tokens: set[str] = set()
    train = [(s, r) for s, r in zip(specs, results) if s.part == "train"]
    for spec, result in train:
        for side in SIDES:
            own = [seg for seg in result["segments"] if seg["channel"] == side]
            lines = ms98_lines(ms98_stem(spec), side, own, result["samples"])
            write_text_atomic(staging / ms98_path(spec, side), "".join(lines))
            tokens.update(word for seg in own for word in seg["text"].split())
    tokens = {t for t in tokens if not t.startswith("<")}
    write_text_atomic(staging / MS98_ROOT / "sw-ms98-dict.text", dictionary_text(tokens))
    write_text_atomic(staging / MS98_ROOT / "AAREADME.text", MS98_README)
    docs = staging / SWBD_ROOT / "docs"
    conv_tab = "".join(conv_tab_line(spec, caller_of, rng) for spec, _ in train)
    write_text_atomic(docs / "conv_tab.csv", conv_tab)
    speakers = {s.speaker_id: s for spec, _ in train for s in spec.speakers}
    callers = sorted((caller_of[i], speakers[i]) for i in speakers)
    write_text_atomic(
        docs / "caller_tab.csv", "".join(caller_tab_line(s, c, rng) for c, s in callers)
    )
    table = "".join(f"{spec.disc} {spec.name}.sph\n" for spec, _ in train)
    write_text_atomic(docs / "swb1_all.dvd.tbl", table)
    for disc in DISCS:
        (staging / SWBD_ROOT / disc / "data").mkdir(parents=True, exist_ok=True)


def write_eval_text(results: list[dict], staging: Path) -> None:
    """The STM, PEM and GLM of the Hub5'00 set."""
    lines = sorted(line for r in results if r["part"] != "train" for line in stm_lines(r))
    reference = staging / HUB5_REFERENCE
    write_text_atomic(reference / STM_NAME, STM_HEADER + "".join(stm for _, stm, _ in lines))
    write_text_atomic(reference / GLM_NAME, glm_text())
    pem = ";; Hub5'00 (mini Switchboard) scored segments: file side speaker begin end\n"
    write_text_atomic(
        staging / HUB5_AUDIO / PEM_NAME, pem + "".join(pem_line for _, _, pem_line in lines)
    )
