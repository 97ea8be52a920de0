"""Switchboard text normalisation: ms98 training transcripts, Hub5'00 STM references, scoring.

Every rule works on whole tokens (anchored patterns), never on substrings, so words such as
TIME, FINISHED or SUMMER are never cut apart. All outputs are upper-case words made of A-Z and
the apostrophe only, i.e. encodable by the default letter vocabulary
(:class:`d2v_speech.asr.vocabulary.LetterVocabulary`).

ms98 training transcripts (:func:`normalize_ms98`), token by token, in this order:

1. ``[silence]``, ``[noise]``, ``[laughter]``, ``[vocalized-noise]`` and ``<...>`` tags
   (``<b_aside>``, ``<e_aside>``) are dropped.
2. ``[laughter-WORD]`` (a word said while laughing) becomes ``WORD``.
3. ``[SPOKEN/INTENDED]`` (mispronunciation) keeps the spoken form, as Kaldi does; the spoken
   form may itself be a partial word (``[lem[guini]-/linguini]``).
4. ``{WORD}`` (coinage) becomes ``WORD``; ``WORD_1`` (pronunciation variant) becomes ``WORD``.
5. Partial words (``th[e]-``, ``-[th]at``, a leading or trailing hyphen such as ``i-``) are
   dropped; with ``keep_partial=True`` their spoken part is kept (``TH``, ``AT``, ``I``) when
   it is made of letters (``-[40]1k`` is dropped either way).
6. Hyphen rule (:func:`apply_hyphen_rule`): a word whose hyphen-separated parts are all
   interjection syllables is joined (``uh-huh`` -> ``UHHUH``, ``um-hum`` -> ``UMHUM``), any
   other hyphenated word is split (``t-shirt`` -> ``T SHIRT``).

Anything else that is not a plain word raises :class:`TranscriptError` naming the token.

Hub5'00 STM references (:func:`normalize_stm`): a segment containing
``IGNORE_TIME_SEGMENT_IN_SCORING`` is not scored (:func:`is_ignored_segment`); ``<...>`` tags,
optionally deletable parenthesised words (``(%HESITATION)``, ``(WE-)``), ``%...`` tokens,
``[...]`` markers and fragments are dropped; ``{A / B}`` alternations keep their first
alternative (``@`` = nothing); then the hyphen rule.

Scoring (:func:`normalize_for_scoring`), applied identically to reference and hypothesis:
upper case; ``<...>``, ``[...]`` and ``%...`` tokens and fragments dropped; hyphen rule;
characters other than A-Z and apostrophe removed; optional GLM mappings
(:func:`parse_glm`); hesitations (:data:`HESITATIONS`, plus the GLM's ``%HESITATION`` rules)
removed.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HESITATIONS",
    "INTERJECTION_SYLLABLES",
    "NOISE_MARKERS",
    "GlmRules",
    "TranscriptError",
    "apply_hyphen_rule",
    "is_ignored_segment",
    "normalize_for_scoring",
    "normalize_ms98",
    "normalize_stm",
    "parse_glm",
]

#: non-speech events of the ms98 transcripts (dropped)
NOISE_MARKERS = frozenset({"[silence]", "[noise]", "[laughter]", "[vocalized-noise]"})
#: parts that make a hyphenated word one interjection (joined, not split)
INTERJECTION_SYLLABLES = frozenset(
    {"UH", "UM", "HUH", "HUM", "MM", "HM", "HMM", "MHM", "OH", "AH", "HA", "EH"}
)
#: hesitations that NIST's Hub5 GLM maps to %HESITATION (optionally deletable when scoring)
HESITATIONS = frozenset(
    {"UH", "UM", "EH", "MM", "HM", "AH", "HUH", "HA", "ER", "OOF", "HEE", "ACH", "EEE", "EW"}
)
IGNORE_MARKER = "IGNORE_TIME_SEGMENT_IN_SCORING"

_WORD = re.compile(r"[A-Z']*[A-Z][A-Z']*")
_TAG = re.compile(r"<[^<>]*>")
_LAUGHTER_WORD = re.compile(r"\[laughter-(.+)\](-?)", re.IGNORECASE)
_MISPRONOUNCED = re.compile(r"\[(.+)/([^/\[\]]+)\](-?)")
_COINAGE = re.compile(r"\{([^{}]+)\}")
# pronunciation variant suffix, at the end or before a clitic: them_1 -> them, them_1's
_VARIANT = re.compile(r"_\d+(?=('[a-z]+)?$)", re.IGNORECASE)
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_SPOKEN_PART = re.compile(r"[a-z'][a-z'\-]*", re.IGNORECASE)
_PARENTHESISED = re.compile(r"\([^()]*\)")
_ALTERNATION = re.compile(r"\{([^{}]*)\}")
_NOT_LETTER_OR_HYPHEN = re.compile(r"[^A-Z'\-]")
# trailing context of a GLM rule, e.g. "/ [ ] __ [ ]"
_GLM_CONTEXT = re.compile(r"\s/\s*\[[^\]]*\]\s*__\s*\[[^\]]*\]\s*$")


class TranscriptError(ValueError):
    """A transcript token that no rule covers; the message names the token and the text."""


def apply_hyphen_rule(word: str) -> list[str]:
    """Join interjection compounds (UH-HUH -> UHHUH), split other hyphenated words.

    ``word`` is upper case and has no leading or trailing hyphen.
    """
    parts = [part for part in word.split("-") if part]
    if len(parts) > 1 and all(part in INTERJECTION_SYLLABLES for part in parts):
        return ["".join(parts)]
    return parts


def _is_fragment(token: str) -> bool:
    return token.startswith("-") or token.endswith("-")


def _finish(tokens: list[str], text: str) -> str:
    """Hyphen rule, upper case and the final A-Z/apostrophe check."""
    words = []
    for token in tokens:
        for word in apply_hyphen_rule(token.upper()):
            if not _WORD.fullmatch(word):
                raise TranscriptError(f"cannot normalise token {token!r} in {text!r}")
            words.append(word)
    return " ".join(words)


def _ms98_token(token: str, keep_partial: bool) -> str | None:
    """One ms98 token -> a word (possibly hyphenated), or None when it is dropped."""
    if token.lower() in NOISE_MARKERS or _TAG.fullmatch(token):
        return None
    match = _LAUGHTER_WORD.fullmatch(token)
    if match:
        token = match.group(1) + match.group(2)
    match = _MISPRONOUNCED.fullmatch(token)
    if match:
        token = match.group(1) + match.group(3)
    match = _COINAGE.fullmatch(token)
    if match:
        token = match.group(1)
    token = _VARIANT.sub("", token)
    if _BRACKETED.fullmatch(token):
        return token  # an unknown [marker]: reported by the final check
    if "[" in token or "]" in token or _is_fragment(token):
        spoken = _BRACKETED.sub("", token)
        if "[" in spoken or "]" in spoken:
            return token  # malformed brackets: reported by the final check
        spoken = spoken.strip("-")
        # a partial word is only kept when its spoken part is made of letters
        return spoken if keep_partial and _SPOKEN_PART.fullmatch(spoken) else None
    return token


def normalize_ms98(text: str, keep_partial: bool = False) -> str:
    """Normalise the words of one ms98 segment (see the module docstring).

    Example: ``"[laughter-yes] th[e]- uh-huh {yuppiedom} them_1 t-shirt [noise]"`` ->
    ``"YES UHHUH YUPPIEDOM THEM T SHIRT"`` (``keep_partial=True`` adds ``TH``).
    """
    tokens = []
    for token in text.split():
        word = _ms98_token(token, keep_partial)
        if word:
            tokens.append(word)
    return _finish(tokens, text)


def is_ignored_segment(text: str) -> bool:
    """True for STM segments that NIST excludes from scoring."""
    return IGNORE_MARKER in text.upper().split()


def _first_alternative(match: re.Match) -> str:
    first = match.group(1).split("/")[0].strip()
    return "" if first == "@" else f" {first} "


def normalize_stm(text: str) -> str:
    """Normalise the words of one Hub5'00 STM segment; "" for an ignored segment."""
    if is_ignored_segment(text):
        return ""
    cleaned = text.replace("((", "(").replace("))", ")")
    cleaned = _TAG.sub(" ", cleaned)
    cleaned = _ALTERNATION.sub(_first_alternative, cleaned)
    previous = None
    while previous != cleaned:  # nested parentheses: innermost first
        previous, cleaned = cleaned, _PARENTHESISED.sub(" ", cleaned)
    if "(" in cleaned or ")" in cleaned:
        raise TranscriptError(f"unbalanced parentheses in {text!r}")
    tokens = [
        token
        for token in cleaned.split()
        if not (token.startswith("%") or _BRACKETED.fullmatch(token) or _is_fragment(token))
    ]
    return _finish(tokens, text)


@dataclass(frozen=True)
class GlmRules:
    """Single-word rules of a NIST GLM (global mapping) file, already normalised.

    ``mappings``: word -> its one replacement (possibly several words), e.g. MR -> MISTER.
    ``alternations``: word -> alternatives, e.g. I'D -> (I HAD, I WOULD); "" stands for @.
    ``hesitations``: words the GLM maps to %HESITATION.
    """

    mappings: dict[str, str] = field(default_factory=dict)
    alternations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hesitations: frozenset[str] = frozenset()

    def to_csv(self, path: str | Path) -> Path:
        """Write ``word,kind,alternatives`` rows (alternatives joined by ``|``)."""
        path = Path(path)
        rows = [(w, "hesitation", "") for w in sorted(self.hesitations)]
        rows += [(w, "mapping", r) for w, r in sorted(self.mappings.items())]
        rows += [(w, "alternation", "|".join(a)) for w, a in sorted(self.alternations.items())]
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(("word", "kind", "alternatives"))
            writer.writerows(rows)
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> GlmRules:
        mappings, alternations, hesitations = {}, {}, set()
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                kind, word, alternatives = row["kind"], row["word"], row["alternatives"]
                if kind == "hesitation":
                    hesitations.add(word)
                elif kind == "mapping":
                    mappings[word] = alternatives
                elif kind == "alternation":
                    alternations[word] = tuple(alternatives.split("|"))
                else:
                    raise ValueError(f"{path}: unknown GLM rule kind {kind!r} for {word!r}")
        return cls(mappings, alternations, frozenset(hesitations))


def _glm_phrase(phrase: str) -> str | None:
    """A GLM side as normalised words ("" for @), or None if it is not plain words."""
    phrase = phrase.strip()
    if phrase.startswith("[") and phrase.endswith("]"):  # GLM's own brackets, one pair
        phrase = phrase[1:-1].strip()
    if phrase == "@":
        return ""
    try:
        return _finish(phrase.split(), phrase)
    except TranscriptError:
        return None


def parse_glm(path: str | Path) -> GlmRules:
    """Read the single-word rules of a NIST GLM file (``LHS => RHS / [ ] __ [ ]``).

    Comments (``;;``), header lines (``*``), multi-word left sides and rules that are not
    plain words after normalisation are left out.
    """
    mappings, alternations, hesitations = {}, {}, set()
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split(";;")[0].strip()
        if not line or line.startswith("*") or "=>" not in line:
            continue
        left, right = (side.strip() for side in line.split("=>", 1))
        right = _GLM_CONTEXT.sub("", " " + right).strip()
        if right.startswith("[") and right.endswith("]"):
            right = right[1:-1].strip()
        word = _glm_phrase(left)
        if not word or " " in word:
            continue
        if right.upper() == "%HESITATION":
            hesitations.add(word)
        elif right.startswith("{") and right.endswith("}"):
            options = [_glm_phrase(option) for option in right[1:-1].split("/")]
            if all(option is not None for option in options):
                alternations[word] = tuple(options)
        else:
            replacement = _glm_phrase(right)
            if replacement is not None and replacement != word:
                mappings[word] = replacement
    return GlmRules(mappings, alternations, frozenset(hesitations))


def normalize_for_scoring(
    text: str, glm: GlmRules | None = None, use_alternations: bool = False
) -> str:
    """Canonical words for WER; apply it identically to reference and hypothesis.

    ``glm`` adds its mappings and hesitations; ``use_alternations`` also maps each word with
    GLM alternatives (mostly contractions) to its first alternative, on both sides.
    """
    words = []
    for token in text.upper().split():
        if _TAG.fullmatch(token) or _BRACKETED.fullmatch(token) or token.startswith("%"):
            continue
        token = _NOT_LETTER_OR_HYPHEN.sub("", token)
        if not _is_fragment(token):
            words.extend(word for word in apply_hyphen_rule(token) if _WORD.fullmatch(word))
    hesitations = HESITATIONS | (glm.hesitations if glm else frozenset())
    result = []
    for word in words:
        if glm is not None:
            if word in glm.hesitations:
                continue
            if word in glm.mappings:
                result.extend(glm.mappings[word].split())
                continue
            if use_alternations and word in glm.alternations:
                result.extend(glm.alternations[word][0].split())
                continue
        result.append(word)
    return " ".join(word for word in result if word not in hesitations)
