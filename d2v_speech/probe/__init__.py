"""Frozen-encoder probes (SUPERB / MP3S style): a learned weighted sum of the encoder's layers
feeds a small head, so the encoder's representations are scored without fine-tuning it."""
