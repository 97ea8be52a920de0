"""`python -m d2v_speech.checkpoints`: see `command_line`."""

import sys

from d2v_speech.checkpoints.command_line import main

sys.exit(main())
