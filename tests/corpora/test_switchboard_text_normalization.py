"""Switchboard normalisation: every rule against hand-written expected strings."""

import pytest

from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.corpora.switchboard.text_normalization import (
    GlmRules,
    TranscriptError,
    apply_hyphen_rule,
    is_ignored_segment,
    normalize_for_scoring,
    normalize_ms98,
    normalize_stm,
    parse_glm,
)

MS98_CASES = [
    ("[silence]", ""),
    ("hi [noise] there [laughter] you [vocalized-noise]", "HI THERE YOU"),
    ("<b_aside> come here <e_aside>", "COME HERE"),
    ("[laughter-yes] i do", "YES I DO"),
    ("[laughter-um-hum]", "UMHUM"),
    ("th[e]- the dog", "THE DOG"),
    ("-[th]at is it", "IS IT"),
    ("i- i really do", "I REALLY DO"),
    ("it [it'n/isn't] fair", "IT IT'N FAIR"),
    ("[lem[guini]-/linguini] please", "PLEASE"),
    ("{yuppiedom} is here", "YUPPIEDOM IS HERE"),
    ("them_1 and them_1's", "THEM AND THEM'S"),
    ("uh-huh um-hum huh-uh hum-um uh-oh", "UHHUH UMHUM HUHUH HUMUM UHOH"),
    ("a t-shirt for twenty-five", "A T SHIRT FOR TWENTY FIVE"),
    ("don't y'all 'cause", "DON'T Y'ALL 'CAUSE"),
    ("time finished summer thumb", "TIME FINISHED SUMMER THUMB"),
]


@pytest.mark.parametrize(("text", "expected"), MS98_CASES)
def test_ms98_rules(text, expected):
    assert normalize_ms98(text) == expected


def test_ms98_keep_partial_keeps_the_spoken_part():
    text = "th[e]- -[th]at i- [lem[guini]-/linguini] ammu[n]it- [laughter-b[ut]-] -[40]1k"
    assert normalize_ms98(text, keep_partial=True) == "TH AT I LEM AMMUIT B"
    assert normalize_ms98(text) == ""


@pytest.mark.parametrize("bad", ["foo[bar", "hello!", "a_b", "[unknown-marker/]", "'"])
def test_ms98_unknown_markup_is_an_error_naming_the_token(bad):
    with pytest.raises(TranscriptError, match="cannot normalise token"):
        normalize_ms98(f"ok {bad}")


def test_ms98_output_is_encodable_by_the_letter_vocabulary():
    vocabulary = LetterVocabulary()
    for text, expected in MS98_CASES:
        assert vocabulary.decode(vocabulary.encode(normalize_ms98(text))) == expected


def test_hyphen_rule():
    assert apply_hyphen_rule("UH-HUH") == ["UHHUH"]
    assert apply_hyphen_rule("MM-HMM") == ["MMHMM"]
    assert apply_hyphen_rule("T-SHIRT") == ["T", "SHIRT"]
    assert apply_hyphen_rule("UH-THIS") == ["UH", "THIS"]
    assert apply_hyphen_rule("HELLO") == ["HELLO"]


STM_CASES = [
    ("HE IS A POLICE OFFICER", "HE IS A POLICE OFFICER"),
    ("(%HESITATION) I THINK SO", "I THINK SO"),
    ("<B_ASIDE> COME HERE <E_ASIDE>", "COME HERE"),
    ("WE (WE-) WENT", "WE WENT"),
    ("((YEAH)) RIGHT", "RIGHT"),
    ("(( YEAH RIGHT )) OKAY", "OKAY"),
    ("WE- WENT -ING THERE", "WENT THERE"),
    ("%HESITATION YES [LAUGHTER]", "YES"),
    ("{UH-HUH / UM-HUM} OKAY", "UHHUH OKAY"),
    ("{@ / UH} OKAY", "OKAY"),
    ("UH-HUH T-SHIRT", "UHHUH T SHIRT"),
    ("SUMMER TIME FINISHED", "SUMMER TIME FINISHED"),
]


@pytest.mark.parametrize(("text", "expected"), STM_CASES)
def test_stm_rules(text, expected):
    assert normalize_stm(text) == expected


def test_stm_ignored_segments_and_unbalanced_parentheses():
    assert is_ignored_segment("IGNORE_TIME_SEGMENT_IN_SCORING")
    assert not is_ignored_segment("IGNORE THIS")
    assert normalize_stm("IGNORE_TIME_SEGMENT_IN_SCORING") == ""
    with pytest.raises(TranscriptError, match="unbalanced parentheses"):
        normalize_stm("(UH I THINK")


SCORING_CASES = [
    # whole-word rules: no word is cut apart (SpeechBrain turns TIME into TI AME)
    ("time finished summer thumb didn't umbrella", "TIME FINISHED SUMMER THUMB DIDN'T UMBRELLA"),
    ("uh i um think eh mm hm ah huh ha er so", "I THINK SO"),
    ("uh-huh um-hum yes", "UHHUH UMHUM YES"),
    ("<UNK> [laughter] %HESITATION hello", "HELLO"),
    ("hello, u.s. world.", "HELLO US WORLD"),
    ("t-shirt we- -ing", "T SHIRT"),
]


@pytest.mark.parametrize(("text", "expected"), SCORING_CASES)
def test_scoring_normalisation(text, expected):
    assert normalize_for_scoring(text) == expected


def test_scoring_is_the_same_function_for_reference_and_hypothesis():
    reference = normalize_stm("(%HESITATION) UH-HUH I SAW A T-SHIRT")
    hypothesis = "uh uh-huh i saw a t shirt"
    assert (
        normalize_for_scoring(reference)
        == normalize_for_scoring(hypothesis)
        == ("UHHUH I SAW A T SHIRT")
    )


GLM_TEXT = """;; a small GLM in the NIST1 format
* name "test.glm"
* case_sensitive = 'F'
UH          => %HESITATION      / [ ] __ [ ]
HMM         => %HESITATION      / [ ] __ [ ]
'CAUSE      => BECAUSE ;; per AHD
MR          => MISTER           / [ ] __ [ ]
MR.         => MISTER           / [ ] __ [ ]
ALL RIGHT   => ALRIGHT          / [ ] __ [ ]
[I'D]       => [{I HAD / I WOULD}] / [ ] __ [ ]
[GONNA]     => [{GOING TO / @}] / [ ] __ [ ]
[[SILENCE]] => @                / [ ] __ [ ]
"""


def test_glm_parse_and_csv_round_trip(tmp_path):
    path = tmp_path / "test.glm"
    path.write_text(GLM_TEXT)
    rules = parse_glm(path)
    assert rules.hesitations == {"UH", "HMM"}
    # multi-word left sides and non-words (MR., [SILENCE]) are left out
    assert rules.mappings == {"'CAUSE": "BECAUSE", "MR": "MISTER"}
    assert rules.alternations == {"I'D": ("I HAD", "I WOULD"), "GONNA": ("GOING TO", "")}
    assert GlmRules.from_csv(rules.to_csv(tmp_path / "glm.csv")) == rules


def test_scoring_with_glm(tmp_path):
    path = tmp_path / "test.glm"
    path.write_text(GLM_TEXT)
    rules = parse_glm(path)
    text = "hmm 'cause mr smith i'd go"
    assert normalize_for_scoring(text) == "HMM 'CAUSE MR SMITH I'D GO"
    assert normalize_for_scoring(text, rules) == "BECAUSE MISTER SMITH I'D GO"
    assert normalize_for_scoring(text, rules, use_alternations=True) == (
        "BECAUSE MISTER SMITH I HAD GO"
    )
