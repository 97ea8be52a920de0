"""``python -m d2v_speech.synthetic.librispeech``: runs `generate.main` (usage there)."""

from d2v_speech.synthetic.librispeech.generate import main

main()
