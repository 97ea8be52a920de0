"""``mini_switchboard.json`` (counts, hours, speakers, markup) and the settings that stamp a run."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from d2v_speech.synthetic.switchboard.corpus_layout import PARTS, SAMPLE_RATE, SIDES
from d2v_speech.synthetic.switchboard.planning import ConversationSpec, speaker_sex

GENERATOR_VERSION = "1"


def _part_stats(results: list[dict]) -> dict:
    segments = [seg for r in results for seg in r["segments"]]
    words = sum(
        1
        for seg in segments
        for tag in seg["tags"]
        if tag not in ("noise", "laughter", "hum", "aside", "ignore")
    )
    return {
        "conversations": len(results),
        "sides": 2 * len(results),
        "segments": len(segments),
        "words": words,
        "hours": round(sum(r["samples"] for r in results) / SAMPLE_RATE / 3600.0, 4),
        "speech_hours": round(
            sum(seg["stop"] - seg["start"] for seg in segments) / SAMPLE_RATE / 3600.0, 4
        ),
        "markup": dict(sorted(Counter(t for seg in segments for t in seg["tags"]).items())),
    }


def summarize(
    specs: list[ConversationSpec], results: list[dict], caller_of: dict[int, int], settings: dict
) -> dict:
    """The ``mini_switchboard.json`` content."""
    by_part = {part: [r for r in results if r["part"] == part] for part in PARTS}
    conversations = []
    for spec, result in zip(specs, results):
        voices = [
            {
                "side": side,
                "speaker_id": s.speaker_id,
                "caller": caller_of.get(s.speaker_id),
                "sex": speaker_sex(s),
                "voice": "/".join(v for v in s.voice_key if v),
            }
            for side, s in zip(SIDES, spec.speakers)
        ]
        conversations.append(
            {
                "name": spec.name,
                "part": spec.part,
                "sph": spec.sph_path,
                "seconds": round(result["samples"] / SAMPLE_RATE, 3),
                "speakers": voices,
            }
        )
    return {
        # the generator's name as corpora record it (its package before the move to
        # d2v_speech.synthetic.switchboard), kept so that the same settings give the same bytes
        "generator": "d2v_speech.data.mini_switchboard",
        **settings,
        "sample_rate": SAMPLE_RATE,
        "parts": {part: _part_stats(members) for part, members in by_part.items()},
        "total_hours": round(sum(r["samples"] for r in results) / SAMPLE_RATE / 3600.0, 4),
        "conversations": conversations,
    }


def run_settings(
    specs: list[ConversationSpec],
    caller_of: dict[int, int],
    arguments: dict,
    tools: dict,
    sentences: list[str],
) -> dict:
    """Everything that changes the output bytes; a different value means regenerate."""
    lines = [
        f"{s.name}\t{s.part}\t{s.disc}\t{s.target_seconds}\t{s.speakers}\t{'|'.join(s.sentences)}"
        for s in specs
    ]
    lines.append(json.dumps(sorted(caller_of.items())))
    return {
        "generator_version": GENERATOR_VERSION,
        **arguments,
        "tools": tools,
        "sentences_available": len(sentences),
        "plan_sha256": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest(),
    }
