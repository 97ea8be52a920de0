"""The embedded corpora: synthetic stand-ins for real corpora, written in their exact layouts so
that the real preparations in ``d2v_speech.corpora`` run on them unchanged.

- ``librispeech``: LibriSpeech + Libri-light (``python -m d2v_speech.synthetic.librispeech``).
- ``switchboard``: Switchboard-1 + ms98 + Hub5'00 in the LDC layout
  (``python -m d2v_speech.synthetic.switchboard``).

Both generators share one set of helpers: ``fortune_sentences`` (what is said), ``voices`` (who
says it), ``tts`` (espeak-ng / flite), ``acoustics`` (rooms, noise, band limits) and ``staging``
(resumable staging folder, lock, settings stamp). Output bytes depend only on the settings, the
seed and the tool versions.
"""
