"""Loading fine-tuned models (ours, Hugging Face), wrong checkpoint kinds, transcribe()."""

import csv
import subprocess
import sys

import pytest
import soundfile as sf
import torch
import yaml
from conftest import micro_config

import d2v_speech
from d2v_speech.asr.model_io import (
    WrongCheckpointError,
    build_ctc_model,
    find_finetuned_checkpoint,
    load_ctc_model,
    save_ctc_model,
)
from d2v_speech.asr.transcribe import Transcriber
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.checkpoints import export_huggingface
from d2v_speech.nn import Data2VecAudioModel
from d2v_speech.ssl.data2vec import Data2VecObjective


@pytest.fixture(scope="module")
def saved_overfit_model(overfit_run):
    out, model = overfit_run
    return save_ctc_model(model, out / "exported" / "model.ckpt")


def test_transcribe_file_paths_and_tensors(saved_overfit_model, short_set):
    with open(short_set, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:6]
    paths = [row["wav"] for row in rows]
    texts = d2v_speech.transcribe(paths, saved_overfit_model)
    # the model memorised its 32 training utterances
    assert sum(t == row["wrd"] for t, row in zip(texts, rows)) >= 5, texts
    waveforms = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    transcriber = Transcriber(saved_overfit_model.parent, batch_size=4)
    assert transcriber.transcribe([waveforms[0][None], *waveforms[1:]]) == texts
    assert transcriber.transcribe(paths[2]) == texts[2:3]
    stats = transcriber.last_stats
    assert stats.audio_seconds == pytest.approx(waveforms[2].shape[0] / 16000)
    assert stats.real_time_factor == pytest.approx(stats.compute_seconds / stats.audio_seconds)
    beam = Transcriber(saved_overfit_model, beam_size=8).transcribe(paths)
    assert sum(b == t for b, t in zip(beam, texts)) >= 5


def test_transcribe_refuses_bad_inputs(saved_overfit_model):
    transcriber = Transcriber(saved_overfit_model)
    with pytest.raises(ValueError, match=r"input 1 \(tensor\): 399 samples .* \(400 samples"):
        transcriber.transcribe([torch.zeros(800), torch.zeros(399)])
    with pytest.raises(ValueError, match=r"input 0 \(tensor\): expected a mono waveform"):
        transcriber.transcribe([torch.zeros(2, 800)])
    with pytest.raises(ValueError, match="NaN or infinite"):
        transcriber.transcribe([torch.full((800,), float("nan"))])
    with pytest.raises(TypeError, match="input 0: expected a file path or a waveform"):
        transcriber.transcribe([123])
    with pytest.raises(ValueError, match="no input"):
        transcriber.transcribe([])


def test_best_dev_wer_checkpoint_is_chosen(tmp_path):
    for name, wer in (("a", 40.0), ("b", 12.5), ("c", 30.0)):
        folder = tmp_path / "save" / f"CKPT+{name}"
        folder.mkdir(parents=True)
        (folder / "model.ckpt").write_bytes(b"x")
        (folder / "CKPT.yaml").write_text(yaml.safe_dump({"WER": wer, "unixtime": ord(name)}))
    (tmp_path / "save" / "CKPT+d").mkdir()  # no CKPT.yaml: an interrupted save, ignored
    (tmp_path / "save" / "CKPT+d" / "model.ckpt").write_bytes(b"x")
    assert find_finetuned_checkpoint(tmp_path) == tmp_path / "save" / "CKPT+b" / "model.ckpt"
    assert find_finetuned_checkpoint(tmp_path / "save" / "CKPT+c").parent.name == "CKPT+c"
    assert find_finetuned_checkpoint(tmp_path / "nothing") is None


def test_hugging_face_ctc_directory_decodes_like_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.Data2VecAudioConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=[32] * 7,
        num_conv_pos_embeddings=2,
        conv_pos_kernel_size=5,
        num_conv_pos_embedding_groups=4,
        vocab_size=32,
    )
    torch.manual_seed(0)
    hf = transformers.Data2VecAudioForCTC(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = load_ctc_model(tmp_path / "hf")
    wav = torch.randn(1, 6000)
    with torch.no_grad():
        expected = hf(wav).logits.log_softmax(-1)
        ours = model(wav).log_probs
    assert torch.allclose(ours, expected, atol=1e-4)
    assert model.vocabulary == LetterVocabulary()


def pretraining_recipe_checkpoint(out, **config_overrides):
    """An output folder of our pretraining recipe: hyperparams.yaml + save/CKPT+*/objective.ckpt."""
    config = micro_config(**config_overrides)
    folder = out / "save" / "CKPT+2024-01-01+00-00-00+00"
    folder.mkdir(parents=True)
    objective = Data2VecObjective(Data2VecAudioModel(config), average_top_k_layers=1)
    torch.save(objective.state_dict(), folder / "objective.ckpt")
    (folder / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 1.0\n")
    (out / "hyperparams.yaml").write_text(yaml.safe_dump({"model_config": config.to_dict()}))
    return out


def test_wrong_checkpoint_kinds_are_explained(tmp_path):
    pretraining = pretraining_recipe_checkpoint(tmp_path / "pretrain")
    for source in (pretraining, next((pretraining / "save").iterdir())):
        with pytest.raises(WrongCheckpointError) as error:
            load_ctc_model(source)
        message = str(error.value)
        assert "d2v_speech_recipe checkpoint with an encoder only" in message
        assert "expected a fine-tuned CTC model" in message and "finetune.py" in message
    hf_encoder = export_huggingface(
        Data2VecAudioModel(micro_config(layer_norm_first=False)), tmp_path / "hf"
    )
    with pytest.raises(WrongCheckpointError, match="huggingface checkpoint with an encoder only"):
        d2v_speech.transcribe([torch.zeros(800)], hf_encoder)
    junk = tmp_path / "junk.txt"
    junk.write_text("not a model")
    with pytest.raises(
        WrongCheckpointError, match="junk.txt: not a checkpoint that can be decoded"
    ):
        load_ctc_model(junk)
    with pytest.raises(Exception, match="does not exist"):
        load_ctc_model(tmp_path / "missing")


def test_fine_tuning_starts_from_pretraining_checkpoints_or_scratch(tmp_path):
    pretraining = pretraining_recipe_checkpoint(tmp_path / "pretrain")
    state = torch.load(next((pretraining / "save").iterdir()) / "objective.ckpt")
    letters = LetterVocabulary()
    model = build_ctc_model(
        pretraining, letters, encoder_overrides={"dropout": 0.0}, mask_channel_length=4
    )
    assert model.config.dropout == 0.0
    for key, value in model.encoder.model.state_dict().items():
        assert torch.equal(value, state[f"model.{key}"]), key
    assert model.normalize is True and model.info["pretrained"] == str(pretraining)
    # a (post-LN) run through the Hugging Face converter, the CLI a user runs, starts the same
    post_ln = pretraining_recipe_checkpoint(tmp_path / "pretrain_post_ln", layer_norm_first=False)
    hf_dir = tmp_path / "hf_export"
    subprocess.run(
        [sys.executable, "-m", "d2v_speech.checkpoints", "convert", str(post_ln), str(hf_dir)],
        check=True,
        capture_output=True,
    )
    direct, from_hf = (
        build_ctc_model(source, letters, encoder_overrides={"dropout": 0.0}, mask_channel_length=4)
        for source in (post_ln, hf_dir)
    )
    assert from_hf.config == direct.config and from_hf.normalize is True
    for key, value in direct.encoder.model.state_dict().items():
        assert torch.equal(from_hf.encoder.model.state_dict()[key], value), key
    scratch = build_ctc_model("none", letters, model_preset="tiny", mask_channel_length=4)
    assert scratch.config.layer_norm_first and scratch.config.embed_dim == 256
    # continuing from one of our fine-tuned models keeps its encoder, with a fresh head
    saved = save_ctc_model(model, tmp_path / "ft" / "model.ckpt")
    again = build_ctc_model(saved, letters, mask_channel_length=4)
    for key, value in model.encoder.model.state_dict().items():
        assert torch.equal(again.encoder.model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="needs model_preset"):
        build_ctc_model("none", letters)


def test_transcribe_is_a_lazy_package_attribute():
    code = (
        "import sys, d2v_speech; light = 'torch' not in sys.modules; "
        "print(light, d2v_speech.transcribe.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "d2v_speech.asr.transcribe"], result.stderr
    with pytest.raises(AttributeError, match="no attribute 'transcribes'"):
        d2v_speech.transcribes  # noqa: B018


def test_reinit_top_layers_keeps_the_rest_of_the_pretrained_encoder(tmp_path):
    pretraining = pretraining_recipe_checkpoint(tmp_path / "pretrain", num_layers=3)
    state = torch.load(next((pretraining / "save").iterdir()) / "objective.ckpt")
    letters = LetterVocabulary()
    # pretrained weights that fresh initialisation cannot produce (bias 0.5 everywhere)
    for key in state:
        if key.endswith(".bias"):
            state[key] = torch.full_like(state[key], 0.5)
    torch.save(state, next((pretraining / "save").iterdir()) / "objective.ckpt")
    model = build_ctc_model(pretraining, letters, reinit_top_layers=1, mask_channel_length=4)
    encoder = model.encoder.model.state_dict()
    for key, value in encoder.items():
        pretrained = state[f"model.{key}"]
        if key.startswith("encoder.layers.2.") or key.startswith("encoder.layer_norm."):
            if key.endswith(".bias"):
                assert torch.equal(value, torch.zeros_like(value)), key
        else:
            assert torch.equal(value, pretrained), key
    fresh = encoder["encoder.layers.2.attention.q_proj.weight"]
    assert abs(float(fresh.std()) - 0.02) < 0.004  # fairseq's N(0, 0.02)
    assert torch.equal(encoder["encoder.layer_norm.weight"], torch.ones(32))
    with pytest.raises(ValueError, match="reinit_top_layers=4: the encoder has 3 layers"):
        build_ctc_model(pretraining, letters, reinit_top_layers=4, mask_channel_length=4)


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_an_empty_pretrained_value_is_refused_instead_of_starting_from_scratch(empty):
    from d2v_speech.asr.vocabulary import LetterVocabulary

    with pytest.raises(ValueError, match="pretrained is empty.*'none'"):
        build_ctc_model(empty, LetterVocabulary(), model_preset="tiny")
