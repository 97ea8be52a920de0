"""A fine-tuned CTC model as a Hugging Face speech-recognition directory.

``transformers.pipeline("automatic-speech-recognition", model=DIR)`` loads what this writes,
offline: ``config.json`` and the weights of a ``Data2VecAudioForCTC``, the tokenizer files of a
``Wav2Vec2CTCTokenizer`` (``vocab.json`` in our unit order, the CTC blank as its pad token, ``|``
as the word delimiter) and ``preprocessor_config.json`` of a ``Wav2Vec2FeatureExtractor`` with the
model's waveform normalisation. ``load_ctc_model(DIR)`` reads it back for decoding or further
fine-tuning. SentencePiece vocabularies have no Hugging Face CTC tokenizer and are refused.

The directory also gets its model card, ``DIR/README.md`` (`d2v_speech.checkpoints.model_card`,
which ``from_pretrained`` and the pipeline ignore): the model, what the run was trained on (its
hyperparams.yaml and checkpoint when the source is one of our fine-tuning runs), its test
WER / CER table from the run's results.json, its config, and how to load it in each tool.

    python -m d2v_speech.asr.hf_export results/finetune/tiny_1h/1234 exported_hf/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.model_io import find_finetuned_checkpoint, load_ctc_model
from d2v_speech.asr.vocabulary import WORD_BOUNDARY, LetterVocabulary
from d2v_speech.checkpoints import (
    CheckpointError,
    LoadedCheckpoint,
    export_huggingface,
    read_training_run,
    render_model_card,
    write_model_card,
)
from d2v_speech.data.pipelines import SAMPLE_RATE

__all__ = ["export_hf_asr", "main"]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")


def _tokenizer_files(vocabulary: LetterVocabulary) -> dict[str, dict]:
    """vocab.json, tokenizer_config.json and special_tokens_map.json of a Wav2Vec2CTCTokenizer."""
    tokens = vocabulary.tokens
    specials = {"pad_token": tokens[vocabulary.blank_index]}  # HF's CTC blank is its pad token
    for name, token in (("unk_token", "<unk>"), ("bos_token", "<s>"), ("eos_token", "</s>")):
        if token in tokens and token != specials["pad_token"]:
            specials[name] = token
    config = {
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
        "word_delimiter_token": WORD_BOUNDARY,
        "do_lower_case": False,
        "replace_word_delimiter_char": " ",
        **specials,
    }
    return {
        "vocab.json": {token: index for index, token in enumerate(tokens)},
        "tokenizer_config.json": config,
        "special_tokens_map.json": specials,
    }


def export_hf_asr(model: CTCModel, directory: str | Path, source: str | Path | None = None) -> Path:
    """Write ``model`` (encoder, CTC head, vocabulary, normalisation) as a pipeline directory,
    with its model card; `source` (where the model was loaded from) names the run in the card."""
    vocabulary = model.vocabulary
    if not isinstance(vocabulary, LetterVocabulary):
        kind = type(vocabulary).__name__ if vocabulary is not None else "no vocabulary"
        raise CheckpointError(
            f"cannot export a model with {kind} for the Hugging Face pipeline: its CTC tokenizer "
            "(Wav2Vec2CTCTokenizer) takes single characters only"
        )
    if not vocabulary.uppercase:
        raise CheckpointError("only upper-case letter vocabularies export (do_lower_case=False)")
    directory = export_huggingface(model.encoder.model, directory, ctc_head=model.head.proj)
    for name, content in _tokenizer_files(vocabulary).items():
        _write_json(directory / name, content)
    _write_json(
        directory / "preprocessor_config.json",
        {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor",
            "feature_size": 1,
            "sampling_rate": SAMPLE_RATE,
            "padding_value": 0.0,
            "padding_side": "right",
            "do_normalize": bool(model.normalize),
            "return_attention_mask": True,
        },
    )
    write_model_card(directory, _model_card(model, directory, source))
    return directory


def _model_card(model: CTCModel, directory: Path, source: str | Path | None) -> str:
    """The directory's README.md; the run's records when `source` is our fine-tuning output."""
    finetuned = find_finetuned_checkpoint(source) if source is not None else None
    run = read_training_run(finetuned) if finetuned is not None else None
    checkpoint = LoadedCheckpoint.from_model(
        model.encoder.model, ctc_head=model.head.proj, normalize=bool(model.normalize)
    )
    command = None if source is None else f"python -m d2v_speech.asr.hf_export {source} {directory}"
    return render_model_card(
        checkpoint,
        "hf",
        directory,
        source=source,
        run=run,
        vocabulary=model.vocabulary.tokens,
        info={key: value for key, value in model.info.items() if value not in (None, "")},
        command=command,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m d2v_speech.asr.hf_export SRC DST``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m d2v_speech.asr.hf_export",
        description="Export a fine-tuned CTC model as a Hugging Face speech-recognition directory.",
    )
    parser.add_argument("src", help="fine-tuning output folder, CKPT+* folder or model.ckpt")
    parser.add_argument("dst", help="directory to write")
    args = parser.parse_args(argv)
    try:
        export_hf_asr(load_ctc_model(args.src), args.dst, source=args.src)
    except (CheckpointError, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        if args.src not in message:
            message = f"{args.src}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst} (transformers.pipeline('automatic-speech-recognition', model=DST))")
    print(f"wrote {Path(args.dst) / 'README.md'} (its model card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
