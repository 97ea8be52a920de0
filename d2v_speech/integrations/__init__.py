"""Our encoder inside other toolkits.

- `speechbrain_lobe`: `Data2VecEncoder`, a SpeechBrain lobe with the interface of SpeechBrain's
  Hugging Face wav2vec2 lobe, that a recipe YAML names with
  `!new:d2v_speech.integrations.speechbrain_lobe.Data2VecEncoder`.

Nothing is imported here: import the module you need (each may pull in its toolkit).
"""
