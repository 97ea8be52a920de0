"""Switchboard-1 (LDC97S62 + ms98 transcripts) and Hub5'00: preparation into SpeechBrain CSVs
(``prepare.prepare_switchboard``, run by ``recipes/Switchboard/prepare.py``), one step per module
(see ``docs/switchboard.md``), and the audio readers that fine-tuning uses too: ``sphere`` (NIST
SPHERE headers, shorten detection, writing) and ``segments`` (one channel's segment of a
conversation at 16 kHz)."""
