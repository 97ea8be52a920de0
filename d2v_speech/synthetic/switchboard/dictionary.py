"""``sw-ms98-dict.text``: a pronunciation (flite's t2p) for every token of the ms98 transcripts."""

from __future__ import annotations

import math
import subprocess

MS98_PHONES = {
    "[silence]": "sil",
    "[noise]": "nsn",
    "[laughter]": "lau",
    "[vocalized-noise]": "spn",
}


def _pronunciations(words: list[str]) -> dict[str, str]:
    """word -> phones without stress (flite's t2p), one call for all words.

    Words are separated by full stops, which t2p renders as pauses between them.
    """
    if not words:
        return {}
    result = subprocess.run(
        ["t2p", ". ".join(words) + "."], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"t2p failed: {result.stderr.strip()[-300:]}")
    groups = [g.split() for g in " ".join(result.stdout.split()).split("pau")]
    groups = [[phone.rstrip("012") for phone in g] for g in groups if g]
    if len(groups) != len(words):
        return {word: _pronunciations_one(word) for word in words}
    return dict(zip(words, (" ".join(g) for g in groups)))


def _pronunciations_one(word: str) -> str:
    result = subprocess.run(["t2p", word], capture_output=True, text=True, check=False)
    phones = [p.rstrip("012") for p in result.stdout.split() if p != "pau"]
    return " ".join(phones) or "spn"


def _said_word(token: str) -> tuple[str, float, bool]:
    """(word whose phones to use, fraction of them said, from its start) of an ms98 token."""
    if token.startswith("[laughter-"):
        return token[len("[laughter-") : -1], 1.0, True
    if token.startswith("{"):
        return token[1:-1], 1.0, True
    if token == "them_1":
        return "em", 1.0, True
    if token.endswith("-") and "[" in token:  # th[e]-
        head, rest = token[:-2].split("[")
        return head + rest, len(head) / len(head + rest), True
    if token.startswith("-["):  # -[th]at
        missing, tail = token[2:].split("]")
        return missing + tail, len(tail) / len(missing + tail), False
    return token.replace("-", " "), 1.0, True


def _share(phones: str, fraction: float, from_start: bool) -> str:
    """The first or last ``fraction`` of the phones (at least one), as the audio is cut."""
    items = phones.split()
    count = max(1, math.ceil(fraction * len(items) - 1e-9))
    return " ".join(items[:count] if from_start else items[len(items) - count :])


def dictionary_text(tokens: set[str]) -> str:
    """``sw-ms98-dict.text``: comment lines, then "word phones" sorted (noises -> sil/nsn/...).

    A partial word gets the share of its full word's phones that its audio keeps.
    """
    words = sorted((tokens - set(MS98_PHONES)) | {"i"})
    said = {word: _said_word(word) for word in words}
    phones = _pronunciations(sorted({full for full, _, _ in said.values()}))
    entries = {
        word: _share(phones[full], share, start) for word, (full, share, start) in said.items()
    }
    entries.update(MS98_PHONES)
    lines = [
        "# sw-ms98-dict.text: pronunciations of the mini Switchboard transcripts",
        "# (from flite's t2p, stress removed; not the ISIP dictionary)",
        "#",
    ]
    lines += [f"{word} {entries[word]}" for word in sorted(entries)]
    return "\n".join(lines) + "\n"
