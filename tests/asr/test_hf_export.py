"""A fine-tuned model exported for Hugging Face's speech-recognition pipeline, checked with
transformers' own pipeline against d2v_speech.transcribe."""

import csv
import json
import logging

import pytest
import soundfile as sf
import torch
from conftest import micro_config, overfit, small_pre_ln_config

import d2v_speech
from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.hf_export import export_hf_asr, main
from d2v_speech.asr.model_io import build_ctc_model, load_ctc_model, save_ctc_model
from d2v_speech.asr.vocabulary import LetterVocabulary, SentencePieceVocabulary
from d2v_speech.checkpoints import CheckpointError, export_huggingface
from d2v_speech.nn import Data2VecAudioModel

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


# ---------------------------------------------------------------------------- bad inputs
def random_ctc_model() -> CTCModel:
    """A post-LN micro model with a random 32-letter head: enough to export and reload."""
    torch.manual_seed(0)
    vocabulary = LetterVocabulary()
    encoder = Data2VecAudioModel(micro_config(layer_norm_first=False))
    model = CTCModel(
        encoder, len(vocabulary), vocabulary=vocabulary, mask_prob=0.0, mask_channel_prob=0.0
    )
    return model.eval()


def one_line_error(source) -> str:
    with pytest.raises(CheckpointError) as error:
        load_ctc_model(source)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_wrong_format_model_file_stops_with_one_line(tmp_path, capsys):
    bogus = tmp_path / "run" / "model.ckpt"
    bogus.parent.mkdir()
    bogus.write_text("not a model\n")
    assert one_line_error(bogus).startswith(f"{bogus}: a text file, not a PyTorch checkpoint")
    for source in (bogus, bogus.parent):
        assert main([str(source), str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {bogus}: a text file")
    assert not (tmp_path / "out").exists()


def test_bad_tokenizer_files_stop_with_one_line_naming_the_file(tmp_path, capsys, caplog):
    directory = export_hf_asr(random_ctc_model(), tmp_path / "hf")
    assert (directory / "README.md").is_file()
    vocab_json = directory / "vocab.json"
    good = json.loads(vocab_json.read_text())
    for content, problem in [
        ("{", f"{vocab_json}: not valid JSON"),
        ('{"<s>": 0, "|": 2}', f"{vocab_json}: not a CTC letter vocabulary (vocab.json ids"),
        ('{"|": 0, "<s>": 1}', f"{vocab_json}: not a CTC letter vocabulary (index 0 must be"),
        (json.dumps({k: v for k, v in good.items() if k != "Z"}), f"{vocab_json} has 31 units"),
    ]:
        vocab_json.write_text(content)
        assert one_line_error(directory).startswith(problem)
    vocab_json.write_text(json.dumps(good))
    tokenizer_config = directory / "tokenizer_config.json"
    config = json.loads(tokenizer_config.read_text())
    tokenizer_config.write_text(json.dumps({**config, "pad_token": "<pad>"}))
    assert one_line_error(directory).startswith(
        f"{tokenizer_config}: pad_token '<pad>' (transformers' CTC blank) has id 1 in vocab.json"
    )
    tokenizer_config.write_text(json.dumps(config))
    # a tokenizer without its vocabulary: for decoding and for another export alike
    vocab_json.unlink()
    assert one_line_error(directory).startswith(
        f"{vocab_json}: missing; the directory has a tokenizer (tokenizer_config.json, "
        "special_tokens_map.json) without its vocabulary"
    )
    assert main([str(directory), str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {vocab_json}: missing;")
    # fine-tuning from it (--pretrained=DIR) takes the encoder only, under a fresh head
    fresh = build_ctc_model(directory, LetterVocabulary(), mask_channel_prob=0.0)
    assert fresh.encoder.model.config == micro_config(layer_norm_first=False)
    # no tokenizer at all (as Data2VecAudioForCTC.save_pretrained leaves it): 32 outputs are
    # fairseq's letters, which HF's data2vec-audio CTC models use too; a warning says so
    tokenizer_config.unlink()
    (directory / "special_tokens_map.json").unlink()
    with caplog.at_level(logging.WARNING):
        model = load_ctc_model(directory)
    assert model.vocabulary == LetterVocabulary() and f"{vocab_json}: missing" in caplog.text
    # a head of any other size has no default
    head = torch.nn.Linear(model.config.embed_dim, 10)
    other = export_huggingface(model.encoder.model, tmp_path / "ten", ctc_head=head)
    assert one_line_error(other).startswith(
        f"{other / 'vocab.json'}: missing; the CTC head has 10 outputs"
    )
