#!/usr/bin/env python3
"""Score a fine-tuned CTC model: WER and CER on test-clean / test-other (or any prepared CSV).

    python recipes/LibriSpeech/evaluate.py results/finetune/10m/1234
    python recipes/LibriSpeech/evaluate.py model_dir --data_folder=/data/LibriSpeech \
        --test_splits test-clean test-other --test_csv my_set.csv --beam_size 50 --kenlm 4gram.arpa

The checkpoint is our fine-tuning output folder (best dev WER), a CKPT+ folder or model.ckpt,
a fairseq fine-tuned .pt, or a Hugging Face Data2VecAudioForCTC folder. Writes hyp_<set>.tsv
(per utterance), results.json and results.md into --output_folder (default: <checkpoint>/eval
for folders, next to a file otherwise).
"""

import argparse
import sys
from pathlib import Path

import torch
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.decoding import BeamSearchDecoder, GreedyDecoder
from d2v_speech.asr.evaluation import evaluate_sets
from d2v_speech.asr.finetune_setup import build_test_sets
from d2v_speech.asr.model_io import load_ctc_model
from d2v_speech.checkpoints import CheckpointError
from d2v_speech.data.librispeech import prepare_librispeech
from d2v_speech.training.pretrain_setup import ensure_embedded_corpus

logger = get_logger(__name__)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="fine-tuned model (see above)")
    parser.add_argument("--data_folder", default="data/MiniLibriSpeech", help="LibriSpeech root")
    parser.add_argument("--test_splits", nargs="*", default=["test-clean", "test-other"])
    parser.add_argument("--test_csv", nargs="*", default=[], help="more prepared CSVs to score")
    parser.add_argument("--output_folder", help="where results go")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--beam_size", type=int, help="CTC prefix beam search (default: greedy)")
    parser.add_argument("--kenlm", help="n-gram LM (ARPA / KenLM binary) for beam search")
    parser.add_argument("--lm_weight", type=float, default=0.5, help="alpha")
    parser.add_argument("--word_score", type=float, default=1.0, help="beta")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    checkpoint = Path(args.checkpoint)
    output = (
        Path(args.output_folder)
        if args.output_folder
        else (checkpoint / "eval" if checkpoint.is_dir() else checkpoint.parent / "eval")
    )
    model = load_ctc_model(checkpoint).to(args.device)
    prepared = output / "prepared"
    if args.test_splits:
        ensure_embedded_corpus(args.data_folder)
        prepare_librispeech(args.data_folder, prepared, splits=args.test_splits)
    hparams = {
        "prepared_folder": str(prepared),
        "data_folder": args.data_folder,
        "librilight_folder": str(Path(args.data_folder) / "librispeech_finetuning"),
        "test_splits": args.test_splits,
        "test_csvs": args.test_csv,
    }
    if args.beam_size is None and args.kenlm is None:
        decoder, decoder_name = GreedyDecoder(model.vocabulary), "greedy"
    else:
        decoder = BeamSearchDecoder(
            model.vocabulary, args.beam_size or 50, args.kenlm, args.lm_weight, args.word_score
        )
        decoder_name = f"beam {args.beam_size or 50}" + (
            f" + LM {args.kenlm}" if args.kenlm else ""
        )
    results = evaluate_sets(
        model,
        build_test_sets(hparams, model),
        decoder,
        output,
        args.device,
        args.batch_size,
        info={**model.info, "checkpoint": str(checkpoint), "decoder": decoder_name},
    )
    for name, rates in results.items():
        print(f"{name}: WER {rates.wer:.2f} %  CER {rates.cer:.2f} %  ({rates.utterances} utts)")
    print(f"results: {output / 'results.md'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        # bad input: the message says what is wrong; a traceback would only hide it
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
