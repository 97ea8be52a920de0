"""d2v_speech: data2vec and data2vec-aqc self-supervised speech learning on SpeechBrain."""

__version__ = "0.1.0"
__all__ = ["transcribe"]


def __getattr__(name: str):
    # imported on first use: `import d2v_speech` stays light (no torch / SpeechBrain start-up)
    if name == "transcribe":
        from d2v_speech.asr.transcribe import transcribe

        return transcribe
    raise AttributeError(f"module 'd2v_speech' has no attribute {name!r}")
