#!/usr/bin/env python3
"""Prepare Switchboard-1 (ms98) and Hub5'00 as SpeechBrain CSVs.

    python recipes/Switchboard/prepare.py --data_folder data/MiniSwitchboard \
        --save_folder results/swbd_prepared [--train_hours 30] [--force]

See d2v_speech.corpora.switchboard.prepare and docs/switchboard.md.
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import sys

from d2v_speech.corpora.switchboard.prepare import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
