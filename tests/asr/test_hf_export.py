"""A fine-tuned model exported for Hugging Face's speech-recognition pipeline, checked with
transformers' own pipeline against d2v_speech.transcribe."""

import csv
import json

import pytest
import soundfile as sf
from conftest import overfit, small_pre_ln_config

import d2v_speech
from d2v_speech.asr.hf_export import export_hf_asr, main
from d2v_speech.asr.model_io import load_ctc_model, save_ctc_model
from d2v_speech.asr.vocabulary import SentencePieceVocabulary
from d2v_speech.checkpoints import CheckpointError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def post_ln_run(short_set, tmp_path_factory):
    # Hugging Face's Data2VecAudio has post-LN layers only
    config = small_pre_ln_config(layer_norm_first=False)
    return overfit(short_set, tmp_path_factory.mktemp("post_ln"), config, updates=40)


@pytest.fixture(scope="module")
def rows(short_set):
    with open(short_set, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))[:8]


def test_the_pipeline_transcribes_like_d2v_speech(post_ln_run, rows, tmp_path):
    out, model = post_ln_run
    saved = save_ctc_model(model, out / "exported" / "model.ckpt")
    assert main([str(saved), str(tmp_path / "hf")]) == 0
    ours = d2v_speech.transcribe([row["wav"] for row in rows], saved)
    assert sum(bool(text) for text in ours) >= 4, ours  # the model says something
    pipe = transformers.pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"))
    theirs = [pipe(sf.read(row["wav"], dtype="float32")[0])["text"] for row in rows]
    # the HF tokenizer keeps two spaces where a blank separates two word delimiters
    assert [" ".join(text.split()) for text in theirs] == ours
    tokenizer = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer["pad_token"] == "<s>" and tokenizer["word_delimiter_token"] == "|"


def test_the_export_reads_back_for_decoding_and_fine_tuning(post_ln_run, rows, tmp_path):
    _, model = post_ln_run
    directory = export_hf_asr(model, tmp_path / "hf")
    again = load_ctc_model(directory)
    assert again.vocabulary == model.vocabulary and again.normalize == model.normalize
    saved = save_ctc_model(model, tmp_path / "ours" / "model.ckpt")
    paths = [row["wav"] for row in rows]
    assert d2v_speech.transcribe(paths, directory) == d2v_speech.transcribe(paths, saved)


def test_bad_exports_and_imports_stop_with_one_line(post_ln_run, tmp_path):
    _, model = post_ln_run
    directory = export_hf_asr(model, tmp_path / "hf")
    vocab = json.loads((directory / "vocab.json").read_text())
    del vocab["Z"]
    (directory / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(CheckpointError, match="vocab.json has 31 units but the CTC head 32"):
        load_ctc_model(directory)
    spm = SentencePieceVocabulary.__new__(SentencePieceVocabulary)  # only its type matters here
    model.vocabulary, letters = spm, model.vocabulary
    try:
        with pytest.raises(CheckpointError, match="SentencePieceVocabulary .* single characters"):
            export_hf_asr(model, tmp_path / "spm")
    finally:
        model.vocabulary = letters
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
