"""``python -m d2v_speech.data.mini_switchboard``: see the package docstring."""

from d2v_speech.data.mini_switchboard.generate import main

main()
