"""A small synthetic LibriSpeech + Libri-light in their exact layouts (the design is in
:mod:`d2v_speech.synthetic.librispeech.generate`; ``planning`` decides the files).

Usage::

    python -m d2v_speech.synthetic.librispeech --out data/MiniLibriSpeech [--hours 2.0] ...
"""

from d2v_speech.synthetic.librispeech.generate import generate_corpus, main

__all__ = ["generate_corpus", "main"]
