#!/usr/bin/env python3
"""Score a fine-tuned CTC model: WER and CER on test-clean / test-other (or any prepared CSV).

    python recipes/LibriSpeech/evaluate.py results/finetune/10m/1234
    python recipes/LibriSpeech/evaluate.py model_dir --lm results/lm/4gram.arpa --tune_on dev-clean
    python recipes/LibriSpeech/evaluate.py model_dir --data_folder=/data/LibriSpeech \
        --test_splits test-clean test-other --test_csv my_set.csv --beam_size 50 --kenlm 4gram.arpa

Decoders: greedy (default); `--lm` (ARPA or KenLM binary): lexicon beam search with the word
n-gram LM (flashlight-text), the lexicon written from the ARPA's words unless `--lexicon` is
given, LM weight and word score tuned on `--tune_on` (grid `--lm_weights` x `--word_scores`,
written to lm_tuning.json) or set with `--lm_weight`/`--word_score`; `--beam_size`/`--kenlm`
alone: SpeechBrain's prefix beam search (its LM needs requirements-lm.txt).

The checkpoint is our fine-tuning output folder (best dev WER), a CKPT+ folder or model.ckpt,
a fairseq fine-tuned .pt, or a Hugging Face Data2VecAudioForCTC folder. Writes hyp_<set>.tsv
(per utterance), results.json and results.md into --output_folder (default: <checkpoint>/eval
for folders, next to a file otherwise).
"""

# isort: off
import d2v_speech.openmp  # noqa: F401  (before torch: OpenMP threads sleep when they wait)

# isort: on
import argparse
import json
import sys
from pathlib import Path

import torch
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.decoding import BeamSearchDecoder, GreedyDecoder, LexiconDecoder
from d2v_speech.asr.evaluation import collect_log_probs, evaluate_sets
from d2v_speech.asr.model_io import load_ctc_model
from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.checkpoints import CheckpointError
from d2v_speech.corpora.librispeech.prepare import prepare_librispeech
from d2v_speech.lm.ngram import arpa_unigrams, is_arpa, write_lexicon
from d2v_speech.lm.tuning import tune_lm_weights
from d2v_speech.training.finetune_setup import build_test_sets, csv_replacements
from d2v_speech.training.pretrain_setup import ensure_embedded_corpus

logger = get_logger(__name__)

# defaults of the two LM decoders: (lm_weight, word_score)
LEXICON_WEIGHTS = (2.0, 0.0)
PREFIX_BEAM_WEIGHTS = (0.5, 1.0)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="fine-tuned model (see above)")
    parser.add_argument("--data_folder", default="data/MiniLibriSpeech", help="LibriSpeech root")
    parser.add_argument("--test_splits", nargs="*", default=["test-clean", "test-other"])
    parser.add_argument("--test_csv", nargs="*", default=[], help="more prepared CSVs to score")
    parser.add_argument("--output_folder", help="where results go")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--beam_size", type=int, help="beam width (default: greedy; 50 with --lm)")
    parser.add_argument("--lm", help="word n-gram LM (ARPA / KenLM binary): lexicon beam search")
    parser.add_argument("--lexicon", help="lexicon for --lm (default: the ARPA's words)")
    parser.add_argument("--tune_on", help="split to tune --lm's weights on, e.g. dev-clean")
    parser.add_argument("--lm_weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--word_scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--kenlm", help="n-gram LM (ARPA / KenLM binary) for prefix beam search")
    parser.add_argument("--lm_weight", type=float, help="LM weight (alpha); default 2 / 0.5")
    parser.add_argument("--word_score", type=float, help="word score (beta); default 0 / 1")
    args = parser.parse_args(argv)
    if args.lm and args.kenlm:
        parser.error("--lm (lexicon decoder) and --kenlm (prefix beam search) exclude each other")
    if (args.lexicon or args.tune_on) and not args.lm:
        parser.error("--lexicon and --tune_on need --lm")
    if args.tune_on and (args.lm_weight is not None or args.word_score is not None):
        parser.error(
            "--tune_on chooses the LM weight and word score: drop --lm_weight/--word_score"
        )
    return args


def lexicon_for(args, vocabulary, output: Path) -> Path:
    """The --lexicon file, or one written next to the results from the ARPA's unigrams."""
    if args.lexicon:
        return Path(args.lexicon)
    if not Path(args.lm).is_file():
        raise FileNotFoundError(f"LM file {args.lm} not found")
    if not is_arpa(args.lm):
        raise ValueError(f"--lm {args.lm} is a KenLM binary: give its word list as --lexicon")
    path = output / "lexicon.txt"
    written = write_lexicon(arpa_unigrams(args.lm), vocabulary, path)
    logger.info("wrote a lexicon of %d words to %s", written, path)
    return path


def tune(args, model, base: LexiconDecoder, tune_set, output: Path) -> LexiconDecoder:
    """Grid-search the LM weight and word score on `tune_set`; write lm_tuning.json."""
    collected = collect_log_probs(
        model, tune_set, args.device, args.batch_size, description=args.tune_on
    )
    lm_weight, word_score, table = tune_lm_weights(
        collected.log_probs,
        collected.references,
        base.with_weights,
        args.lm_weights,
        args.word_scores,
    )
    report = {
        "split": args.tune_on,
        "utterances": len(collected.ids),
        "lm": args.lm,
        "beam_size": base.beam_size,
        "best": {"lm_weight": lm_weight, "word_score": word_score},
        "grid": table,
    }
    write_text_atomic(output / "lm_tuning.json", json.dumps(report, indent=2) + "\n")
    logger.info("tuned on %s: lm_weight %g, word_score %g", args.tune_on, lm_weight, word_score)
    return base.with_weights(lm_weight, word_score)


def build_decoder(args, model, output: Path, prepared: Path, replacements: dict):
    """(decoder, run information for the result files); --tune_on reads its split's CSV in
    `prepared`, with the CSV path placeholders `replacements`."""
    vocabulary = model.vocabulary
    if args.lm:
        default_weight, default_score = LEXICON_WEIGHTS
        decoder = LexiconDecoder(
            vocabulary,
            lexicon_for(args, vocabulary, output),
            args.lm,
            beam_size=args.beam_size or 50,
            lm_weight=default_weight if args.lm_weight is None else args.lm_weight,
            word_score=default_score if args.word_score is None else args.word_score,
        )
        if args.tune_on:
            tune_set = build_test_sets(
                model,
                replacements=replacements,
                prepared_folder=prepared,
                test_splits=[args.tune_on],
            )[args.tune_on]
            decoder = tune(args, model, decoder, tune_set, output)
        info = {
            "decoder": f"lexicon beam {decoder.beam_size} + n-gram LM",
            "lm": args.lm,
            "lexicon": decoder.lexicon_path,
            "lm_weight": decoder.lm_weight,
            "word_score": decoder.word_score,
            "lm_weights_tuned_on": args.tune_on or "not tuned",
        }
        return decoder, info
    if args.beam_size is None and args.kenlm is None:
        return GreedyDecoder(vocabulary), {"decoder": "greedy"}
    default_weight, default_score = PREFIX_BEAM_WEIGHTS
    lm_weight = default_weight if args.lm_weight is None else args.lm_weight
    word_score = default_score if args.word_score is None else args.word_score
    decoder = BeamSearchDecoder(vocabulary, args.beam_size or 50, args.kenlm, lm_weight, word_score)
    name = f"beam {args.beam_size or 50}" + (f" + LM {args.kenlm}" if args.kenlm else "")
    return decoder, {"decoder": name}


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
    splits = list(dict.fromkeys(args.test_splits + ([args.tune_on] if args.tune_on else [])))
    if splits:
        ensure_embedded_corpus(args.data_folder)
        prepare_librispeech(args.data_folder, prepared, splits=splits)
    replacements = csv_replacements(
        args.data_folder, str(Path(args.data_folder) / "librispeech_finetuning")
    )
    decoder, decoder_info = build_decoder(args, model, output, prepared, replacements)
    test_sets = build_test_sets(
        model,
        replacements=replacements,
        prepared_folder=prepared,
        test_splits=args.test_splits,
        test_csvs=args.test_csv,
    )
    results = evaluate_sets(
        model,
        test_sets,
        decoder,
        output,
        args.device,
        args.batch_size,
        info={**model.info, "checkpoint": str(checkpoint), **decoder_info},
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
