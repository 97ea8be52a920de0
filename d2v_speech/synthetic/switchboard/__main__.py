"""``python -m d2v_speech.synthetic.switchboard``: see the package docstring."""

from d2v_speech.synthetic.switchboard.generate import main

main()
