"""Word n-gram language models for CTC decoding: LM training text, KenLM ARPA, lexicon, tuning.

- `lm_text.write_lm_text`: the LM text of the embedded corpus, without dev/test sentences;
- `ngram.build_arpa`, `ngram.write_lexicon`: a KenLM ARPA (`lmplz`) and the letter lexicon;
- `tuning.tune_lm_weights`: grid search of the LM weight and word score on a dev set.

Decoding itself is `d2v_speech.asr.decoding.LexiconDecoder`.
"""
