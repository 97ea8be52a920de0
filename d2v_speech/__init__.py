"""d2v_speech: data2vec and data2vec-aqc self-supervised speech learning on SpeechBrain."""

__version__ = "0.1.0"
