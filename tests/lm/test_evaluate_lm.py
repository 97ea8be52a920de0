"""evaluate.py with --lm: the lexicon written from the ARPA, the weights tuned on dev."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.model_io import save_ctc_model
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.lm.ngram import arpa_unigrams
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig

REPO = Path(__file__).resolve().parents[2]
WORDS = ["A", "I", "AN", "AT", "IT", "TEA", "EAT", "NET", "TEN", "TENT"]
ARPA_HEAD = ["\\data\\", f"ngram 1={len(WORDS) + 3}", f"ngram 2={len(WORDS)}", "", "\\1-grams:"]


@pytest.fixture(scope="module")
def evaluate_module():
    spec = importlib.util.spec_from_file_location(
        "evaluate_recipe", REPO / "recipes/LibriSpeech/evaluate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random micro CTC model, a two-split corpus of noise, and a bigram ARPA of WORDS."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lm_eval")
    torch.manual_seed(0)
    config = EncoderConfig(
        conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2,
        embed_dim=16,
        num_layers=1,
        num_heads=2,
        ffn_dim=32,
        pos_conv_depth=1,
        pos_conv_kernel=5,
        pos_conv_groups=2,
        layerdrop=0.0,
    )
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(config),
        len(vocabulary),
        vocabulary=vocabulary,
        mask_prob=0.0,
        mask_channel_prob=0.0,
    )
    with torch.no_grad():  # push the head towards the letters of WORDS and the boundary
        model.head.proj.bias[[vocabulary.tokens.index(c) for c in "AEINT|"]] += 4.0
    checkpoint = save_ctc_model(model, root / "model.ckpt")
    rng = np.random.default_rng(0)
    data = root / "corpus"
    for split, count in (("dev-clean", 4), ("test-clean", 3)):
        chapter = data / split / "7" / "70"
        chapter.mkdir(parents=True)
        lines = []
        for index in range(count):
            audio = 0.1 * rng.standard_normal(16000 + 1600 * index).astype("float32")
            sf.write(chapter / f"7-70-{index:04d}.flac", audio, 16000)
            lines.append(f"7-70-{index:04d} {' '.join(rng.choice(WORDS, 3))}")
        (chapter / "7-70.trans.txt").write_text("\n".join(lines) + "\n")
    arpa = root / "lm.arpa"
    body = ["-99\t<s>\t0", "-1\t</s>", "-3\t<unk>"] + [f"-1.2\t{w}\t0" for w in WORDS]
    bigrams = ["", "\\2-grams:"] + [f"-1.1\t<s> {w}" for w in WORDS]
    arpa.write_text("\n".join(ARPA_HEAD + body + bigrams + ["", "\\end\\", ""]))
    return checkpoint, data, arpa


def test_lm_decoding_tunes_on_dev_and_records_the_choice(evaluate_module, setup, tmp_path):
    checkpoint, data, arpa = setup
    out = tmp_path / "eval"
    argv = [str(checkpoint), f"--data_folder={data}", "--test_splits", "test-clean"]
    argv += [f"--output_folder={out}", "--lm", str(arpa), "--tune_on", "dev-clean"]
    argv += ["--lm_weights", "0", "1", "--word_scores", "-2", "3", "--beam_size", "8"]
    assert evaluate_module.main(argv) == 0
    tuning = json.loads((out / "lm_tuning.json").read_text())
    assert tuning["split"] == "dev-clean" and tuning["utterances"] == 4
    grid = [(row["lm_weight"], row["word_score"]) for row in tuning["grid"]]
    assert grid == [(0.0, -2.0), (0.0, 3.0), (1.0, -2.0), (1.0, 3.0)]
    best = min(tuning["grid"], key=lambda row: (row["wer"], row["cer"]))
    assert tuning["best"] == {"lm_weight": best["lm_weight"], "word_score": best["word_score"]}
    info = json.loads((out / "results.json").read_text())["info"]
    assert info["decoder"] == "lexicon beam 8 + n-gram LM" and info["lm"] == str(arpa)
    assert (info["lm_weight"], info["word_score"]) == (best["lm_weight"], best["word_score"])
    assert info["lm_weights_tuned_on"] == "dev-clean"
    lexicon = (out / "lexicon.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lexicon] == arpa_unigrams(arpa) == WORDS
    with open(out / "hyp_test-clean.tsv", encoding="utf-8") as handle:
        hypotheses = [row["HYP"] for row in csv.DictReader(handle, delimiter="\t")]
    assert len(hypotheses) == 3
    assert {word for hyp in hypotheses for word in hyp.split()} <= set(WORDS)


def test_fixed_weights_and_bad_combinations(evaluate_module, setup, tmp_path):
    checkpoint, data, arpa = setup
    out = tmp_path / "eval"
    base = [str(checkpoint), f"--data_folder={data}", "--test_splits", "test-clean"]
    base += [f"--output_folder={out}"]
    assert evaluate_module.main([*base, "--lm", str(arpa), "--lm_weight", "0.7"]) == 0
    info = json.loads((out / "results.json").read_text())["info"]
    assert (info["lm_weight"], info["word_score"]) == (0.7, 0.0)
    assert info["lm_weights_tuned_on"] == "not tuned" and not (out / "lm_tuning.json").exists()
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n")
    with pytest.raises(ValueError, match="KenLM binary: give its word list as --lexicon"):
        evaluate_module.main([*base, "--lm", str(binary)])
    for extra in (["--tune_on", "dev-clean"], ["--lm", str(arpa), "--kenlm", str(arpa)]):
        with pytest.raises(SystemExit):
            evaluate_module.main([*base, *extra])
    tuned = ["--lm", str(arpa), "--tune_on", "dev-clean", "--word_score", "1"]
    with pytest.raises(SystemExit):
        evaluate_module.main([*base, *tuned])
