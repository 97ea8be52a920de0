"""``python -m d2v_speech.corpora.librispeech``: runs `command_line.main` (usage there)."""

import sys

from d2v_speech.corpora.librispeech.command_line import main

sys.exit(main())
