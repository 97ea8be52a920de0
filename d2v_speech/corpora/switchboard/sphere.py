"""NIST SPHERE files (Switchboard, Hub5'00): header parsing, shorten detection, writing.

libsndfile (through soundfile) decodes plain PCM, mu-law and A-law SPHERE files, with sample
offsets, but not the shorten-compressed ("embedded-shorten") variant that some LDC copies
use. Those are caught from the header, before any decoding, with an error naming the file
and the remedy. Segments are read by `d2v_speech.corpora.switchboard.segments.read_segment`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf

from d2v_speech.data.pipelines import AudioReadError

SPHERE_MAGIC = b"NIST_1A"
CHANNEL_INDEX = {"A": 0, "B": 1}


class SphereError(AudioReadError):
    """A SPHERE file that cannot be used; the message names the file and the problem."""


def read_sphere_header(path: str | Path) -> dict[str, int | str]:
    """The header fields of a SPHERE file, e.g. {"sample_rate": 8000, "channel_count": 2, ...}.

    Integer fields (`-i`) become ints, the others stay strings.
    """
    with open(path, "rb") as handle:
        magic = handle.readline().strip()
        if magic != SPHERE_MAGIC:
            raise SphereError(f"{path}: not a NIST SPHERE file (starts with {magic[:16]!r})")
        try:
            header_size = int(handle.readline().strip())
        except ValueError as err:
            raise SphereError(f"{path}: malformed SPHERE header size") from err
        body = handle.read(header_size - handle.tell())
    fields: dict[str, int | str] = {}
    for line in body.decode("ascii", errors="replace").splitlines():
        parts = line.split(None, 2)
        if not parts or parts[0] == "end_head":
            break
        if len(parts) == 3:
            name, kind, value = parts
            fields[name] = int(value) if kind == "-i" else value
    return fields


def is_shorten(header: dict[str, int | str]) -> bool:
    """True for shorten-compressed sample data, which libsndfile cannot decode."""
    return "shorten" in str(header.get("sample_coding", "")).lower()


@functools.lru_cache(maxsize=4096)
def check_decodable(path: str) -> dict[str, int | str]:
    """Raise SphereError (naming the file and the remedy) if soundfile cannot decode it.

    Cached per path, since a conversation file is read once per segment.
    """
    header = read_sphere_header(path)
    if is_shorten(header):
        raise SphereError(
            f"{path}: shorten-compressed SPHERE ({header.get('sample_coding')}), which libsndfile "
            "cannot decode. Convert the corpus once, e.g. "
            f"`sph2pipe -f sph -p {path} out.sph` for every file (sph2pipe ships with Kaldi and "
            "LDC), and point the preparation at the converted copy."
        )
    return header


def write_sphere(path: str | Path, samples: np.ndarray, sample_rate: int, coding: str = "ULAW"):
    """Write float samples (S, C) in [-1, 1] as a SPHERE file; coding is ULAW, ALAW or PCM_16."""
    sf.write(str(path), samples, sample_rate, format="NIST", subtype=coding)
