"""What the embedded corpora say: Debian fortunes normalised like LibriSpeech transcripts.

Both generators draw their sentences from :func:`load_sentences`; the n-gram LM text
(``d2v_speech.lm.lm_text``) reads the same fortunes.

A LibriSpeech transcript holds upper-case letters A-Z, apostrophes and single spaces, with numbers
written out as words. :func:`normalize_transcript` turns one fortune entry into such a line, or
returns ``None`` when the entry cannot be read aloud unambiguously (abbreviations, acronyms,
symbols, dialogue, decimals, ...), because the synthesised audio must say exactly what the
transcript says.
"""

import re
from collections.abc import Iterator
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MAX_SPELLED_NUMBER = 10**12 - 1

# Characters a readable fortune may contain; anything else (symbols, markup, control) drops it.
_ALLOWED_CHARS = re.compile(r"^[A-Za-z0-9 \t\n.,;:!?'\"()\-]*$")
_ABBREVIATION = re.compile(
    r"\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|prof|gen|col|capt|lt|sgt|rev|hon|inc|ltd|co|mt|no|vol|"
    r"pp|ca|cf|ie|eg|esq|dept|approx|fig|ft|oz|lb|lbs|min|sec|hr|hrs|jan|feb|mar|apr|aug|sep|"
    r"sept|oct|nov|dec|ave|blvd|rd)\.",
    re.IGNORECASE,
)
_INITIALS = re.compile(r"\b[A-Za-z]\.(?:\s*[A-Za-z]\.)*")
_SPEAKER_LABEL = re.compile(r"^\s*[A-Za-z][\w. ]{0,24}:\s", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^\s*--")
_CARDINAL = re.compile(r"^\d{1,3}(?:,\d{3})+$|^\d+$")
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$", re.IGNORECASE)
_EDGE_PUNCTUATION = ".,;:!?\"()'"
_WORD = re.compile(r"^[A-Z]+(?:'[A-Z]+)*$")


def spell_cardinal(number: int) -> str:
    """Spell a non-negative integer in lower-case English words without "and" or hyphens.

    Example: ``spell_cardinal(1234)`` gives ``"one thousand two hundred thirty four"``.
    """
    if not 0 <= number <= MAX_SPELLED_NUMBER:
        raise ValueError(f"can only spell integers in [0, {MAX_SPELLED_NUMBER}], got {number}")
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + spell_cardinal(rest))
    for scale, name in _SCALES:
        if number >= scale:
            head, rest = divmod(number, scale)
            words = spell_cardinal(head) + " " + name
            return words if rest == 0 else words + " " + spell_cardinal(rest)
    raise AssertionError("unreachable")


def spell_ordinal(number: int) -> str:
    """Spell an ordinal: ``21`` -> ``"twenty first"``, ``100`` -> ``"one hundredth"``."""
    words = spell_cardinal(number).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def spell_year(year: int) -> str:
    """Read a year in 1100..1999 in pairs, as English speakers do ("nineteen eighty four")."""
    if not 1100 <= year <= 1999:
        raise ValueError(f"spell_year handles 1100..1999, got {year}")
    century, rest = divmod(year, 100)
    if rest == 0:
        return spell_cardinal(century) + " hundred"
    tail = spell_cardinal(rest) if rest >= 10 else "oh " + spell_cardinal(rest)
    return spell_cardinal(century) + " " + tail


def _spell_number_token(token: str) -> str | None:
    """Words for a token made of digits (cardinal, year or ordinal); None if it is anything else."""
    ordinal = _ORDINAL.match(token)
    if ordinal:
        value = int(ordinal.group(1))
        return spell_ordinal(value) if value <= MAX_SPELLED_NUMBER else None
    if not _CARDINAL.match(token):
        return None
    value = int(token.replace(",", ""))
    if value > MAX_SPELLED_NUMBER:
        return None
    # A bare four-digit number in this range is almost always a year in prose.
    if len(token) == 4 and 1100 <= value <= 1999:
        return spell_year(value)
    return spell_cardinal(value)


def _strip_attribution(entry: str) -> str:
    """Drop a trailing ``-- Author`` attribution block."""
    kept = []
    for line in entry.splitlines():
        if _ATTRIBUTION.match(line):
            break
        kept.append(line)
    return "\n".join(kept)


def normalize_transcript(entry: str) -> str | None:
    """LibriSpeech-style transcript of one fortune entry, or None if the entry is unsuitable.

    The result holds upper-case A-Z, apostrophes and single spaces; digits are spelled out.
    """
    text = _strip_attribution(entry).strip()
    if not text or not _ALLOWED_CHARS.match(text):
        return None
    if _ABBREVIATION.search(text) or _INITIALS.search(text) or _SPEAKER_LABEL.search(text):
        return None
    words = []
    for raw in text.replace("--", " ").replace("-", " ").split():
        token = raw.strip(_EDGE_PUNCTUATION)
        if not token:
            continue
        if any(char.isdigit() for char in token):
            spelled = _spell_number_token(token)
            if spelled is None:
                return None
            words.extend(spelled.upper().split())
            continue
        # Acronyms and shouting are read letter by letter by some voices and not by others.
        if len(token) > 1 and token.isupper():
            return None
        word = token.upper()
        if not _WORD.match(word):
            return None
        words.append(word)
    return " ".join(words)


def iter_fortune_entries(fortune_dir: Path = FORTUNE_DIR) -> Iterator[str]:
    """Yield the raw entries of every plain-text fortune file, files in sorted name order.

    Plain files are those without a suffix (``.dat`` are indices, ``.u8`` are UTF-8 copies).
    Files that are not valid ASCII/UTF-8 are read with replacement characters, which the
    normaliser then rejects.
    """
    fortune_dir = Path(fortune_dir)
    if not fortune_dir.is_dir():
        raise FileNotFoundError(
            f"fortune folder {fortune_dir} not found (install the Debian packages "
            "'fortunes' and 'fortunes-min')"
        )
    files = sorted(p for p in fortune_dir.iterdir() if p.is_file() and not p.suffix)
    if not files:
        raise FileNotFoundError(f"no plain-text fortune files in {fortune_dir}")
    for path in files:
        content = path.read_bytes().decode("utf-8", errors="replace")
        entry_lines: list[str] = []
        for line in content.splitlines():
            if line.strip() == "%":
                yield "\n".join(entry_lines)
                entry_lines = []
            else:
                entry_lines.append(line)
        if entry_lines:
            yield "\n".join(entry_lines)


def load_sentences(
    fortune_dir: Path = FORTUNE_DIR, min_words: int = 4, max_words: int = 35
) -> list[str]:
    """Unique normalised transcripts with ``min_words..max_words`` words, sorted alphabetically.

    Sorting makes the list independent of file-system order; callers shuffle it with their seed.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    sentences = set()
    for entry in iter_fortune_entries(fortune_dir):
        transcript = normalize_transcript(entry)
        if transcript and min_words <= len(transcript.split()) <= max_words:
            sentences.add(transcript)
    return sorted(sentences)
