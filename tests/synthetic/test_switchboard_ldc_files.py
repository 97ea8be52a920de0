"""Text formats of the mini Switchboard: ms98 silence tiling, STM times, GLM rule syntax."""

import re

from d2v_speech.synthetic.switchboard.ldc_files import _centiseconds, glm_text, ms98_lines

GLM_RULE = re.compile(r"^(\S+)\s+=> (.+) / \[ \] __ \[ \]$")


def test_ms98_lines_fill_silence_exactly():
    segments = [
        {"start": 800, "stop": 4000, "text": "uh-huh"},
        {"start": 8001, "stop": 9000, "text": "yeah"},
    ]
    assert ms98_lines("sw2001", "B", segments, 12000) == [
        "sw2001B-ms98-a-0001 0.000000 0.100000 [silence]\n",
        "sw2001B-ms98-a-0002 0.100000 0.500000 uh-huh\n",
        "sw2001B-ms98-a-0003 0.500000 1.000125 [silence]\n",
        "sw2001B-ms98-a-0004 1.000125 1.125000 yeah\n",
        "sw2001B-ms98-a-0005 1.125000 1.500000 [silence]\n",
    ]


def test_stm_times_round_outward_to_centiseconds():
    assert _centiseconds(8001, round_up=True) == "1.01"
    assert _centiseconds(8001, round_up=False) == "1.00"
    assert _centiseconds(80, round_up=True) == "0.01"


def test_glm_rules_follow_nist_syntax():
    hesitations, alternations = set(), {}
    for line in glm_text().splitlines():
        if not line or line.startswith(";;"):
            continue
        if line.startswith("*"):
            assert re.match(r"^\* \w+ (=\s*'.*'|\".*\")$", line), line
            continue
        word, right = GLM_RULE.match(line).groups()
        if right == "%HESITATION":
            hesitations.add(word)
        else:
            inner = re.fullmatch(r"\[\{(.+)\}\]", right).group(1)
            alternations[word] = [a.strip() for a in inner.split("/")]
    assert {"UH", "UM"} <= hesitations
    assert alternations["I'M"] == ["I'M", "I AM"]
    assert all(options[0] == word for word, options in alternations.items())
