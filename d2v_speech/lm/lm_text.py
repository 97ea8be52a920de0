"""LM training text for the embedded corpus: every fortune sentence except the dev/test ones.

The stand-in for LibriSpeech's `librispeech-lm-norm.txt`, which leaves out the books of the
dev and test sets: a fortune entry (normalised like the transcripts) is kept unless it equals or
contains (as a run of whole words) a transcript of a held-out split, so no evaluation sentence
leaks into the LM.

    python -m d2v_speech.lm.lm_text --data_folder data/MiniLibriSpeech --out results/lm/lm.txt
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.corpora.corpus_scan import TRANSCRIPT_SUFFIX, read_transcripts
from d2v_speech.synthetic.fortune_sentences import FORTUNE_DIR, load_sentences

__all__ = ["HELD_OUT_SPLITS", "read_split_transcripts", "write_lm_text"]

HELD_OUT_SPLITS = ("dev-clean", "dev-other", "test-clean", "test-other")


def read_split_transcripts(split_folder: str | Path) -> list[str]:
    """Texts of every `<spk>-<chapter>.trans.txt` line (`ID TEXT`) under a split folder.

    Read with the corpus scanner's `read_transcripts`; any bad line stops with its file and line.
    """
    split_folder = Path(split_folder)
    if not split_folder.is_dir():
        raise FileNotFoundError(f"held-out split folder {split_folder} not found")
    transcripts = []
    for path in sorted(split_folder.rglob(f"*{TRANSCRIPT_SUFFIX}")):
        entries, problems = read_transcripts(path)
        if problems:
            raise ValueError(f"{problems[0].file}: {problems[0].detail}")
        transcripts += entries.values()
    if not transcripts:
        raise ValueError(f"held-out split folder {split_folder} has no *.trans.txt transcript")
    return transcripts


def _contains_any(sentence: str, held_out: set[str], lengths: Mapping[str, set[int]]) -> bool:
    """Whether some run of whole words of `sentence` (or all of it) is in `held_out`.

    `lengths` maps a first word to the word counts of the held-out texts starting with it.
    """
    words = sentence.split()
    for start, word in enumerate(words):
        for length in lengths.get(word, ()):
            if " ".join(words[start : start + length]) in held_out:
                return True
    return False


def write_lm_text(
    data_folder: str | Path,
    out_path: str | Path,
    fortune_dir: str | Path = FORTUNE_DIR,
    held_out_splits: Sequence[str] = HELD_OUT_SPLITS,
) -> dict[str, int]:
    """Write one sentence per line; returns lines, words, excluded_lines, held_out_transcripts.

    Sentences are all normalised fortune entries (any length, sorted) that neither equal nor
    contain a transcript of `held_out_splits` (folders under `data_folder`, each must exist).
    """
    data_folder = Path(data_folder)
    held_out: set[str] = set()
    for split in held_out_splits:
        held_out.update(read_split_transcripts(data_folder / split))
    # a sentence contains a transcript iff one of its word runs of that length equals it
    lengths: dict[str, set[int]] = {}
    for text in held_out:
        words = text.split()
        lengths.setdefault(words[0], set()).add(len(words))
    kept, excluded = [], 0
    for sentence in load_sentences(Path(fortune_dir), min_words=1, max_words=10**6):
        if _contains_any(sentence, held_out, lengths):
            excluded += 1
        else:
            kept.append(sentence)
    if not kept:
        raise ValueError(f"every fortune sentence of {fortune_dir} overlaps a held-out transcript")
    write_text_atomic(out_path, "".join(line + "\n" for line in kept))
    return {
        "lines": len(kept),
        "words": sum(len(sentence.split()) for sentence in kept),
        "excluded_lines": excluded,
        "held_out_transcripts": len(held_out),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True, help="the embedded corpus root")
    parser.add_argument("--out", required=True, help="text file to write")
    parser.add_argument("--fortune_dir", default=str(FORTUNE_DIR))
    parser.add_argument("--held_out_splits", nargs="+", default=list(HELD_OUT_SPLITS))
    args = parser.parse_args(argv)
    counts = write_lm_text(args.data_folder, args.out, args.fortune_dir, args.held_out_splits)
    print(json.dumps({"out": args.out, **counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
