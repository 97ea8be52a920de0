"""CTC fine-tuning, decoding, scoring and transcription on top of the data2vec encoder."""
