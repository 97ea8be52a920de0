"""Output vocabularies of the CTC head: letters (fairseq `dict.ltr.txt` order) or SentencePiece.

Both put the CTC blank at index 0, as fairseq (`<s>`) and Hugging Face (`<pad>`) do, so a head
trained here exchanges rows with theirs unchanged.

Letter vocabulary (32 units): ``<s> <pad> </s> <unk> | E T A O N I H S R D L U M W C F G Y P B V
K ' X J Q Z``; words are separated and ended by ``|``: "HI YOU" -> ``H I | Y O U |``.

Example
-------
>>> vocab = LetterVocabulary()
>>> ids = vocab.encode("HI YOU")
>>> ids, vocab.decode(ids)
([11, 10, 4, 22, 8, 16, 4], 'HI YOU')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FAIRSEQ_LETTERS",
    "FAIRSEQ_SPECIALS",
    "LetterVocabulary",
    "SentencePieceVocabulary",
    "VocabularyError",
    "count_characters",
    "normalize_transcript",
    "vocabulary_from_state",
]

#: fairseq Dictionary specials in index order; `<s>` (0) is the CTC blank
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
#: letters of the LibriSpeech `dict.ltr.txt` in its order (by frequency)
FAIRSEQ_LETTERS = tuple("|ETAONIHSRDLUMWCFGYPBVK'XJQZ")
WORD_BOUNDARY = "|"
BLANK_INDEX = 0


class VocabularyError(ValueError):
    """Text that the vocabulary cannot encode; the message lists the offending characters."""


def normalize_transcript(text: str, uppercase: bool = True) -> str:
    """Single spaces, no leading/trailing space, upper case (LibriSpeech transcript style)."""
    text = " ".join(text.split())
    return text.upper() if uppercase else text


def count_characters(text: str) -> int:
    """Letters plus one word boundary per word: the length of the letter CTC target.

    The denominator of the per-character CTC loss (nats/char), whatever the vocabulary.
    """
    words = text.split()
    return sum(len(word) for word in words) + len(words)


class LetterVocabulary:
    """Characters with a word-boundary unit; index 0 is the CTC blank.

    Parameters
    ----------
    tokens : sequence of str, optional
        Units in index order; default: fairseq specials then `FAIRSEQ_LETTERS` (32 units).
        Units written `<...>` are specials: never produced by `encode`, dropped by `decode`.
    uppercase : bool
        Upper-case text before encoding (and references before scoring).
    """

    kind = "letters"

    def __init__(self, tokens: Sequence[str] | None = None, uppercase: bool = True):
        tokens = list(FAIRSEQ_SPECIALS + FAIRSEQ_LETTERS if tokens is None else tokens)
        if len(set(tokens)) != len(tokens):
            duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"vocabulary has duplicate units: {duplicates}")
        if WORD_BOUNDARY not in tokens:
            raise ValueError(f"vocabulary needs the word boundary unit {WORD_BOUNDARY!r}")
        if tokens[BLANK_INDEX] not in ("<s>", "<pad>", "<blank>"):
            raise ValueError(
                f"index {BLANK_INDEX} must be the CTC blank (<s>, <pad> or <blank>), "
                f"got {tokens[BLANK_INDEX]!r}"
            )
        bad = [t for t in tokens if not _is_special(t) and len(t) != 1]
        if bad:
            raise ValueError(f"letter units must be single characters or <specials>, got {bad}")
        self.tokens = tokens
        self.uppercase = uppercase
        self.blank_index = BLANK_INDEX
        self.space_token = WORD_BOUNDARY
        self._index = {token: index for index, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LetterVocabulary) and self.to_state() == other.to_state()

    def normalize(self, text: str) -> str:
        """The transcript as it is encoded and scored."""
        return normalize_transcript(text, self.uppercase)

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of `text` (after `normalize`) that have no unit, sorted."""
        # a literal "|" in a transcript would be read back as a word break, so it is unknown too
        known = {t for t in self.tokens if not _is_special(t)} - {WORD_BOUNDARY} | {" "}
        return sorted(set(self.normalize(text)) - known)

    def encode(self, text: str) -> list[int]:
        """Text -> unit ids, each word followed by `|`; raises VocabularyError for unknown chars."""
        unknown = self.unknown_characters(text)
        if unknown:
            raise VocabularyError(f"characters outside the vocabulary {unknown} in {text!r}")
        ids = []
        for word in self.normalize(text).split(" "):
            if word:
                ids.extend(self._index[char] for char in word)
                ids.append(self._index[WORD_BOUNDARY])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Unit ids (already CTC-collapsed, no blanks) -> words separated by single spaces."""
        chars = []
        for index in ids:
            token = self.tokens[int(index)]
            if not _is_special(token):
                chars.append(" " if token == WORD_BOUNDARY else token)
        return " ".join("".join(chars).split())

    def decoder_tokens(self) -> list[str]:
        """Unit strings for a beam-search decoder: specials empty, `|` kept as the space unit."""
        return ["" if _is_special(t) else t for t in self.tokens]

    # ------------------------------------------------------------ persistence
    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens), "uppercase": self.uppercase}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LetterVocabulary:
        return cls(tokens=list(state["tokens"]), uppercase=bool(state.get("uppercase", True)))

    def write_dict(self, path: str | Path) -> Path:
        """Write a fairseq `dict.ltr.txt` (non-special units, one `UNIT COUNT` line each)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{t} {len(self.tokens) - i}" for i, t in enumerate(self.tokens) if not _is_special(t)
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_fairseq_dict(cls, path: str | Path) -> LetterVocabulary:
        """Read a fairseq `dict.ltr.txt`; the four fairseq specials come first, as in fairseq."""
        tokens = list(FAIRSEQ_SPECIALS)
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: expected 'UNIT COUNT', got {line!r}")
            tokens.append(fields[0])
        return cls(tokens)

    @classmethod
    def from_hf_vocab(cls, vocab: Mapping[str, int]) -> LetterVocabulary:
        """From a Hugging Face `vocab.json` mapping ({"<pad>": 0, ..., "|": 4, "E": 5, ...})."""
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [index for _, index in ordered] != list(range(len(ordered))):
            raise ValueError("vocab.json ids must be 0..V-1 without gaps")
        return cls([token for token, _ in ordered])


class SentencePieceVocabulary:
    """SentencePiece units for CTC: index 0 is the blank, piece id i is index i + 1.

    Train one with `train` (through SpeechBrain's `SentencePiece`), or load a `.model` file.
    The serialized model travels in the fine-tuned checkpoint, so no file is needed to decode.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, uppercase: bool = True):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor()
        self.processor.LoadFromSerializedProto(model_proto)
        self.model_proto = bytes(model_proto)
        self.uppercase = uppercase
        self.blank_index = BLANK_INDEX
        self.space_token = " "
        pieces = [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]
        self._known_chars = {c for piece in pieces for c in piece.replace("\u2581", " ")}

    @classmethod
    def train(
        cls,
        model_dir: str | Path,
        vocab_size: int,
        annotation_csv: str | Path,
        model_type: str = "unigram",
        uppercase: bool = True,
    ) -> SentencePieceVocabulary:
        """Train on the `wrd` column of a prepared CSV (skipped when the model already exists)."""
        from speechbrain.tokenizers.SentencePiece import SentencePiece

        tokenizer = SentencePiece(
            model_dir=str(model_dir),
            vocab_size=vocab_size,
            annotation_train=str(annotation_csv),
            annotation_read="wrd",
            model_type=model_type,
            character_coverage=1.0,
        )
        return cls.from_model_file(tokenizer.prefix_model_file + ".model", uppercase)

    @classmethod
    def from_model_file(cls, path: str | Path, uppercase: bool = True) -> SentencePieceVocabulary:
        return cls(Path(path).read_bytes(), uppercase)

    def __len__(self) -> int:
        return self.processor.get_piece_size() + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentencePieceVocabulary) and self.to_state() == other.to_state()

    def normalize(self, text: str) -> str:
        return normalize_transcript(text, self.uppercase)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(self.normalize(text)) - self._known_chars - {" "})

    def encode(self, text: str) -> list[int]:
        unknown = self.unknown_characters(text)
        if unknown:
            raise VocabularyError(f"characters outside the vocabulary {unknown} in {text!r}")
        return [piece + 1 for piece in self.processor.encode_as_ids(self.normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [int(i) - 1 for i in ids if int(i) != self.blank_index]
        return " ".join(self.processor.decode_ids(pieces).split())

    def decoder_tokens(self) -> list[str]:
        """Pieces as strings (`▁` marks a word start, as SpeechBrain's beam search expects)."""
        return [""] + [self.processor.id_to_piece(i) for i in range(len(self) - 1)]

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_proto": self.model_proto, "uppercase": self.uppercase}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SentencePieceVocabulary:
        return cls(bytes(state["model_proto"]), bool(state.get("uppercase", True)))


def vocabulary_from_state(state: Mapping[str, Any]) -> LetterVocabulary | SentencePieceVocabulary:
    """Rebuild a vocabulary saved with `to_state()` (as stored in fine-tuned checkpoints)."""
    kinds = {
        LetterVocabulary.kind: LetterVocabulary,
        SentencePieceVocabulary.kind: SentencePieceVocabulary,
    }
    kind = state.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown vocabulary kind {kind!r}; expected one of {sorted(kinds)}")
    return kinds[kind].from_state(state)


def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("<") and token.endswith(">")
