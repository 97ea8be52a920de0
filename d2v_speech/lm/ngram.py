"""KenLM word n-gram LMs: estimate an ARPA with `lmplz`, list its words, write a letter lexicon.

`lmplz` and `build_binary` come from PATH or from `tools/kenlm/bin` (built by
`tools/build_kenlm.sh`, i.e. `make lm-tools`).

    python -m d2v_speech.lm.ngram --text results/lm/lm.txt --out results/lm/4gram.arpa \
        [--order 4] [--lexicon results/lm/lexicon.txt]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from speechbrain.utils.logger import get_logger

from d2v_speech.atomic_files import write_text_atomic

logger = get_logger(__name__)

__all__ = [
    "KENLM_BIN_DIR",
    "arpa_unigrams",
    "build_arpa",
    "find_kenlm_binary",
    "is_arpa",
    "write_lexicon",
]

KENLM_BIN_DIR = Path(__file__).resolve().parents[2] / "tools" / "kenlm" / "bin"
SENTENCE_MARKERS = ("<s>", "</s>", "<unk>")
STDERR_TAIL_CHARS = 2000


def find_kenlm_binary(name: str) -> Path:
    """Path of a KenLM program (`lmplz`, `build_binary`): PATH first, then tools/kenlm/bin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    local = KENLM_BIN_DIR / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    raise FileNotFoundError(
        f"KenLM program {name!r} is neither on PATH nor in {KENLM_BIN_DIR}: build it with "
        "`tools/build_kenlm.sh` (or `make lm-tools`)"
    )


def build_arpa(
    text_path: str | Path,
    out_path: str | Path,
    order: int = 4,
    memory: str = "10%",
    prune: Sequence[int] | None = None,
) -> Path:
    """Estimate a modified Kneser-Ney `order`-gram ARPA from a text of one sentence per line.

    `memory` is lmplz's `-S` (its default would reserve most of the RAM); `prune` gives
    lmplz's `--prune` thresholds (e.g. (0, 0, 1): drop singleton trigrams and above).
    The ARPA is written to a temporary file and renamed into place when lmplz succeeds.
    """
    text_path, out_path = Path(text_path), Path(out_path)
    if order < 2:
        raise ValueError(f"n-gram order must be at least 2, got {order}")
    if not text_path.is_file() or text_path.stat().st_size == 0:
        raise ValueError(f"LM text {text_path} is missing or empty")
    lmplz = find_kenlm_binary("lmplz")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lmplz.", dir=out_path.parent) as scratch:
        partial = Path(scratch) / out_path.name
        # small corpora lack the count-of-counts modified Kneser-Ney needs: fall back gracefully
        command = [str(lmplz), "-o", str(order), "--discount_fallback", "-S", memory]
        command += ["-T", scratch]
        if prune:
            command += ["--prune", *map(str, prune)]
        with open(text_path, "rb") as source, open(partial, "wb") as target:
            result = subprocess.run(command, stdin=source, stdout=target, stderr=subprocess.PIPE)
        if result.returncode != 0:
            tail = result.stderr.decode("utf-8", errors="replace")[-STDERR_TAIL_CHARS:]
            raise RuntimeError(
                f"lmplz failed (exit {result.returncode}) on {text_path}:\n{tail.strip()}"
            )
        os.replace(partial, out_path)
    return out_path


def _open_binary(path: str | Path) -> BinaryIO:
    """An ARPA file, gzip-compressed (`.gz`, which KenLM also reads) or not."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def is_arpa(path: str | Path) -> bool:
    """Whether `path` is an ARPA text file, maybe gzipped (a KenLM binary is not)."""
    with _open_binary(path) as handle:
        head = handle.read(4096)
    return head.lstrip().startswith(b"\\data\\")


def arpa_unigrams(arpa_path: str | Path) -> list[str]:
    """The words of the `\\1-grams:` section in file order, without `<s>`, `</s>`, `<unk>`."""
    arpa_path = Path(arpa_path)
    words: list[str] = []
    in_unigrams = False
    with _open_binary(arpa_path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.decode("utf-8", errors="replace").strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and (not line or line.startswith("\\")):
                return words
            elif in_unigrams:
                fields = line.split()
                if len(fields) not in (2, 3):
                    raise ValueError(f"{arpa_path}:{number}: not an ARPA unigram line: {line!r}")
                if fields[1] not in SENTENCE_MARKERS:
                    words.append(fields[1])
    if not in_unigrams:
        raise ValueError(f"{arpa_path} has no \\1-grams: section (not an ARPA file?)")
    return words


def write_lexicon(words: Iterable[str], vocabulary: Any, out_path: str | Path) -> int:
    """Write `WORD<TAB>W O R D |` lines for a letter vocabulary; returns the number written.

    Words with a character the vocabulary lacks are skipped (and logged); repeats are
    written once. The spelling uses the vocabulary's normalised (e.g. upper-case) letters.
    """
    if getattr(vocabulary, "kind", None) != "letters":
        raise ValueError(
            f"a lexicon needs a letter vocabulary, got {getattr(vocabulary, 'kind', vocabulary)!r}"
        )
    seen: set[str] = set()
    lines, skipped = [], []
    for word in words:
        if word in seen:
            continue
        seen.add(word)
        if not word or len(word.split()) != 1 or vocabulary.unknown_characters(word):
            skipped.append(word)
            continue
        spelling = " ".join(vocabulary.normalize(word))
        lines.append(f"{word}\t{spelling} {vocabulary.space_token}")
    if skipped:
        logger.info(
            "lexicon: skipped %d words with unknown characters, e.g. %s", len(skipped), skipped[:5]
        )
    write_text_atomic(out_path, "".join(line + "\n" for line in lines))
    return len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", required=True, help="LM text, one sentence per line")
    parser.add_argument("--out", required=True, help="ARPA file to write")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--memory", default="10%", help="lmplz -S")
    parser.add_argument("--prune", type=int, nargs="*", help="lmplz --prune thresholds")
    parser.add_argument("--lexicon", help="also write the letter lexicon of the LM's words")
    args = parser.parse_args(argv)
    arpa = build_arpa(args.text, args.out, args.order, args.memory, args.prune)
    summary: dict[str, Any] = {"arpa": str(arpa)}
    if args.lexicon:
        from d2v_speech.asr.vocabulary import LetterVocabulary

        words = arpa_unigrams(arpa)
        summary["lexicon"] = args.lexicon
        summary["lexicon_words"] = write_lexicon(words, LetterVocabulary(), args.lexicon)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
