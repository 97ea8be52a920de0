"""LibriSpeech and the Libri-light fine-tuning sets: ``prepare`` (``prepare_librispeech``,
``prepare_librilight_finetuning``) and its ``command_line``
(``python -m d2v_speech.corpora.librispeech``)."""
