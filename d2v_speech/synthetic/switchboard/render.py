"""Render conversations into staging (in worker processes), resuming what a past run finished."""

from __future__ import annotations

import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from d2v_speech.atomic_files import json_text, read_json, write_text_atomic
from d2v_speech.corpora.switchboard.sphere import write_sphere
from d2v_speech.synthetic.switchboard.conversations import Conversation, lay_out, mix_channels
from d2v_speech.synthetic.switchboard.corpus_layout import PARTS_DIR, SAMPLE_RATE, SIDES
from d2v_speech.synthetic.switchboard.planning import ConversationSpec, speaker_sex


def _result_path(staging: Path, spec: ConversationSpec) -> Path:
    return staging / PARTS_DIR / f"{spec.name}.json"


def _segments(conversation: Conversation) -> list[dict]:
    return [
        {
            "channel": SIDES[event.channel],
            "start": event.start,
            "stop": event.stop,
            "text": " ".join(token.written for token in event.tokens),
            "tags": [token.tag for token in event.tokens],
        }
        for event in sorted(conversation.events, key=lambda e: (e.channel, e.start))
    ]


def render_conversation(task: tuple[ConversationSpec, str, int]) -> dict:
    """Pool worker: write one conversation's .sph into staging; return its segments.

    A conversation finished by an interrupted run is not rendered again.
    """
    spec, staging_text, seed = task
    staging = Path(staging_text)
    done = read_json(_result_path(staging, spec))
    if done and (staging / spec.sph_path).exists():
        return done
    rng = np.random.default_rng([seed, spec.index])
    conversation = lay_out(spec, rng)
    samples = mix_channels(conversation, spec.part, rng)
    path = staging / spec.sph_path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.part")
    write_sphere(temporary, samples, SAMPLE_RATE, "ULAW")
    os.replace(temporary, path)
    result = {
        "name": spec.name,
        "part": spec.part,
        "index": spec.index,
        "samples": conversation.samples,
        "sexes": {side: speaker_sex(s) for side, s in zip(SIDES, spec.speakers)},
        "segments": _segments(conversation),
    }
    write_text_atomic(_result_path(staging, spec), json_text(result))
    return result


def render_all(
    specs: list[ConversationSpec], staging: Path, seed: int, jobs: int, progress: bool
) -> list[dict]:
    """Every conversation's result (see :func:`render_conversation`), in the order of ``specs``."""
    tasks = [(spec, str(staging), seed) for spec in specs]
    results: list[dict | None] = [None] * len(specs)
    bar = tqdm(total=len(tasks), desc="conversations", unit="conv", disable=not progress)
    if jobs == 1:
        outputs = map(render_conversation, tasks)
        for result in outputs:
            results[result["index"]] = result
            bar.update()
    else:
        with Pool(jobs) as pool:
            for result in pool.imap_unordered(render_conversation, tasks):
                results[result["index"]] = result
                bar.update()
    bar.close()
    return results
