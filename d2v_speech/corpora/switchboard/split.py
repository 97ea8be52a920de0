"""The Switchboard train/dev split: whole conversations in a seeded, filesystem-independent order.

Conversations are ordered by ``sha256(f"{seed}:{conversation}")`` (:func:`stable_order`); dev
takes the first ``dev_conversations`` (default 1 %, at least 1); conversations sharing a caller
with dev are left out of train (unless that empties train); ``train_hours`` keeps whole train
conversations in the same order until the budget is met; ``max_utt`` keeps at most that many
rows per identical text in each split (:func:`take_conversations`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from speechbrain.utils.logger import get_logger

from d2v_speech.corpora.switchboard.conversations import Conversation

logger = get_logger(__name__)

DEV_FRACTION = 0.01


def stable_order(names: Iterable[str], seed: int) -> list[str]:
    """Names sorted by sha256("<seed>:<name>"): a seeded shuffle that ignores input order."""
    return sorted(names, key=lambda n: (hashlib.sha256(f"{seed}:{n}".encode()).hexdigest(), n))


def _dev_count(requested: int | None, available: int) -> int:
    if available < 2:
        raise ValueError(
            f"a train/dev split needs at least 2 usable conversations, found {available}"
        )
    count = max(1, round(DEV_FRACTION * available)) if requested is None else requested
    if not 1 <= count < available:
        raise ValueError(
            f"dev_conversations={count} must be between 1 and {available - 1} "
            f"({available} usable conversations)"
        )
    return count


@dataclass
class Selection:
    """The rows of one split and how they were chosen."""

    rows: list[dict]
    conversations: list[str]
    seconds: float
    capped: int


def take_conversations(
    order: list[str],
    conversations: dict[str, Conversation],
    max_utt: int | None,
    budget_seconds: float | None = None,
) -> Selection:
    """Whole conversations in ``order`` (until the budget is met), capping repeated texts."""
    seen: Counter = Counter()
    rows, chosen, capped, seconds = [], [], 0, 0.0
    for name in order:
        if budget_seconds is not None and seconds >= budget_seconds:
            break
        chosen.append(name)
        for row in conversations[name].rows:
            seen[row["wrd"]] += 1
            if max_utt is not None and seen[row["wrd"]] > max_utt:
                capped += 1
                continue
            rows.append(row)
            seconds += row["duration"]
    return Selection(rows, chosen, seconds, capped)


def split_train_dev(
    conversations: dict[str, Conversation],
    seed: int,
    dev_conversations: int | None,
    train_hours: float | None,
    max_utt: int | None,
    exclude_dev_callers: bool,
) -> tuple[Selection, Selection, dict]:
    """Dev = first conversations in stable order; train = the rest (see the module doc)."""
    order = stable_order(conversations, seed)
    dev_names = order[: _dev_count(dev_conversations, len(order))]
    rest = order[len(dev_names) :]
    dev_callers = {caller for name in dev_names for caller in conversations[name].callers}
    sharing = [name for name in rest if dev_callers & set(conversations[name].callers)]
    excluded = 0
    if exclude_dev_callers and sharing and len(sharing) < len(rest):
        rest = [name for name in rest if name not in sharing]
        excluded = len(sharing)
    elif exclude_dev_callers and sharing:
        logger.warning("Every train conversation shares a caller with dev; they are kept.")
    budget = None if train_hours is None else train_hours * 3600.0
    train = take_conversations(rest, conversations, max_utt, budget)
    dev = take_conversations(dev_names, conversations, max_utt)
    available_hours = sum(conversations[n].seconds for n in rest) / 3600.0
    if train_hours is not None and train.seconds < budget:
        logger.warning(
            "train_hours=%s requested but only %.2f h are available; all of it is used.",
            train_hours,
            train.seconds / 3600.0,
        )
    info = {
        "seed": seed,
        "dev_conversations": dev_names,
        "train_conversations": train.conversations,
        "conversations_usable": len(order),
        "train_conversations_available": len(rest),
        "train_hours_available": round(available_hours, 4),
        "train_hours_requested": train_hours,
        "train_hours_met": train_hours is None or train.seconds >= budget,
        "excluded_for_dev_callers": excluded,
        "dev_callers_overlap_train": len(sharing) > excluded,
    }
    return train, dev, info
