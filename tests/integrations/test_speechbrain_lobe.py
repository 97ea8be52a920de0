"""The SpeechBrain lobe: the example YAML trains in a real `speechbrain.core.Brain`, its outputs
equal our encoder's for every kind of source, freezing and padding behave, bad sources stop."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.nnet.losses import ctc_loss

from d2v_speech.asr.ctc_model import CTCModel
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.checkpoints import load_encoder, main as checkpoints_cli
from d2v_speech.data.pipelines import normalize_waveform
from d2v_speech.integrations.speechbrain_lobe import Data2VecEncoder, LobeSourceError
from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
from d2v_speech.ssl.data2vec import Data2VecObjective
from d2v_speech.ssl.target_builder import TopKTargetBuilder
from d2v_speech.training.checkpointer import AtomicCheckpointer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_YAML = REPO / "hparams" / "speechbrain" / "ctc_with_d2v_lobe.yaml"
# post-LN (exportable to Hugging Face), stride 20, receptive field 40 samples
CONFIG = EncoderConfig(
    conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2)],
    embed_dim=32,
    num_layers=2,
    num_heads=4,
    ffn_dim=64,
    pos_conv_depth=2,
    pos_conv_kernel=5,
    pos_conv_groups=4,
    layerdrop=0.0,
)
LENGTHS = [3200, 2437, 1711]  # samples; not multiples of the stride


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one thread keeps the test's timing stable and results repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fairseq_layout():
    """tests/fairseq_layout.py, the independent fairseq key table the checkpoint tests use."""
    spec = importlib.util.spec_from_file_location(
        "fairseq_layout", REPO / "tests" / "fairseq_layout.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(wav (B, S) zero padded as SpeechBrain's PaddedBatch does, sample lengths, wav_lens)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(LENGTHS)
    wav = 0.3 * torch.randn(len(LENGTHS), max(LENGTHS), generator=generator)
    wav = wav * (torch.arange(max(LENGTHS))[None] < lengths[:, None])
    return wav, lengths, lengths / max(LENGTHS)


def write_hyperparams(out: Path, config: EncoderConfig, normalize: bool) -> None:
    """The experiment's hyperparams.yaml as SpeechBrain saves it (references resolved)."""
    fields = json.loads(json.dumps(config.to_dict()))  # tuples -> lists for YAML
    lines = ["model_config: !new:d2v_speech.nn.config.EncoderConfig"]
    lines += [
        "    " + line for line in yaml.safe_dump(fields, default_flow_style=None).splitlines()
    ]
    lines += [
        "train_audio_pipeline: !new:d2v_speech.data.pipelines.PretrainAudioPipeline",
        "    augmenter: null",
        f"    normalize: {normalize}",
    ]
    (out / "hyperparams.yaml").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A pretraining output folder (hyperparams.yaml, save/CKPT+*/objective.ckpt) and its
    encoder, written by the checkpointer the recipe uses."""
    out = tmp_path_factory.mktemp("pretrain") / "data2vec_tiny" / "1234"
    out.mkdir(parents=True)
    write_hyperparams(out, CONFIG, normalize=True)
    torch.manual_seed(0)
    objective = Data2VecObjective(
        Data2VecAudioModel(CONFIG), target_builder=TopKTargetBuilder(top_k=2)
    )
    AtomicCheckpointer(out / "save", {"objective": objective}).save_checkpoint()
    return out, objective.model.eval()


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    """A fine-tuning output folder (save/CKPT+*/model.ckpt, normalize=False) and its encoder."""
    out = tmp_path_factory.mktemp("finetune") / "train-clean-100" / "1234"
    torch.manual_seed(1)
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(CONFIG),
        len(vocabulary),
        vocabulary=vocabulary,
        normalize=False,
        mask_prob=0.0,
        mask_channel_prob=0.0,
    )
    AtomicCheckpointer(out / "save", {"model": model}).save_checkpoint(meta={"WER": 40.0})
    return out, model.encoder.model.eval()


@pytest.fixture(scope="module")
def fairseq_file(tmp_path_factory):
    """A fairseq data2vec pretraining .pt (cfg + model) of a third encoder, and that encoder."""
    torch.manual_seed(2)
    encoder = Data2VecAudioModel(CONFIG).eval()
    to_fairseq_key = fairseq_layout().to_fairseq_key
    model_cfg = {
        "_name": "data2vec_audio",
        "extractor_mode": "layer_norm",
        "conv_feature_layers": "[(32, 10, 5)] + [(32, 3, 2)] * 2",
        "conv_bias": False,
        "encoder_embed_dim": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_embed_dim": 64,
        "pos_conv_depth": 2,
        "conv_pos": 10,  # fairseq's kernel is conv_pos // pos_conv_depth
        "conv_pos_groups": 4,
        "layer_norm_first": False,
        "encoder_layerdrop": 0.0,
    }
    path = tmp_path_factory.mktemp("fairseq") / "data2vec_tiny.pt"
    torch.save(
        {
            "cfg": {"model": model_cfg, "task": {"_name": "audio_pretraining", "normalize": True}},
            "model": {to_fairseq_key(k): v.clone() for k, v in encoder.state_dict().items()},
        },
        path,
    )
    return path, encoder


@pytest.fixture(scope="module")
def hf_directory(pretrain_run, tmp_path_factory):
    """The pretraining run exported by `python -m d2v_speech.checkpoints convert ... --to hf`."""
    run, encoder = pretrain_run
    target = tmp_path_factory.mktemp("hf") / "data2vec_tiny_hf"
    assert checkpoints_cli(["convert", str(run), str(target), "--to", "hf"]) == 0
    assert (target / "config.json").is_file()
    return target, encoder


def stand_alone(encoder, wav, length, normalize=True, all_hiddens=False):
    """Our encoder on one utterance, fed as our data pipeline feeds it: (T, D) or (L+1, T, D)."""
    utterance = wav[:length]
    if normalize:
        utterance = normalize_waveform(utterance)
    with torch.no_grad():
        output = encoder.eval()(utterance[None])
    if all_hiddens:
        return torch.stack(output.hidden_states)[:, 0]
    return output.last_hidden_state[0]


def assert_matches_each_utterance(lobe, encoder, normalize, atol, all_hiddens=False):
    """The lobe on a padded batch equals `encoder` on every utterance alone, on its valid frames."""
    wav, lengths, wav_lens = padded_batch()
    output = lobe(wav, wav_lens)
    frames = encoder.frame_lengths(lengths).tolist()
    assert output.shape[-3] == len(LENGTHS) and output.shape[-2] == frames[0]
    for row, (length, count) in enumerate(zip(LENGTHS, frames)):
        expected = stand_alone(encoder, wav[row], length, normalize, all_hiddens)
        ours = output[:, row, :count] if all_hiddens else output[row, :count]
        assert expected.shape == ours.shape
        torch.testing.assert_close(ours, expected, atol=atol, rtol=0)


# --------------------------------------------------------------------- the recipe YAML, in a Brain
class LobeCTCBrain(sb.Brain):
    """The Brain of SpeechBrain's LibriSpeech CTC recipe, cut to training: lobe -> enc ->
    ctc_lin -> log_softmax, CTC loss, one optimizer for the lobe and one for the rest."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats = self.modules.wav2vec2(wavs, wav_lens)
        logits = self.modules.ctc_lin(self.modules.enc(feats))
        return self.hparams.log_softmax(logits), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        return self.hparams.ctc_cost(log_probs, tokens, wav_lens, token_lens)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.epoch_losses.append(stage_loss)

    def init_optimizers(self):
        self.wav2vec_optimizer = self.hparams.wav2vec_opt_class(self.modules.wav2vec2.parameters())
        self.model_optimizer = self.hparams.model_opt_class(self.hparams.model.parameters())
        self.optimizers_dict = {
            "model_optimizer": self.model_optimizer,
            "wav2vec_optimizer": self.wav2vec_optimizer,
        }


def tiny_ctc_dataset(count: int = 4) -> DynamicItemDataset:
    """`count` short noise waveforms (0.1-0.2 s) with 3-5 random labels in 1..5 each."""
    generator = torch.Generator().manual_seed(7)
    data = {}
    for index in range(count):
        samples = int(torch.randint(1600, 3200, (1,), generator=generator))
        labels = int(torch.randint(3, 6, (1,), generator=generator))
        data[f"utt{index}"] = {
            "sig": 0.3 * torch.randn(samples, generator=generator),
            "tokens": torch.randint(1, 6, (labels,), generator=generator),
        }
    dataset = DynamicItemDataset(data)
    dataset.set_output_keys(["id", "sig", "tokens"])
    return dataset


def test_example_yaml_trains_with_the_lobe_in_a_speechbrain_brain(pretrain_run, tmp_path):
    run, encoder = pretrain_run
    overrides = {
        "d2v_source": str(run),
        "output_folder": str(tmp_path / "out"),
        "encoder_dim": CONFIG.embed_dim,
        "dnn_layers": 1,
        "dnn_neurons": 32,
        "output_neurons": 6,
    }
    with open(EXAMPLE_YAML, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    lobe = hparams["wav2vec2"]
    assert isinstance(lobe, Data2VecEncoder) and not lobe.freeze and lobe.output_norm
    assert hparams["ctc_cost"].func is ctc_loss
    cnn_before = {k: v.clone() for k, v in lobe.model.feature_extractor.state_dict().items()}
    transformer_before = {k: v.clone() for k, v in lobe.model.encoder.state_dict().items()}
    torch.testing.assert_close(transformer_before, encoder.encoder.state_dict(), atol=0, rtol=0)

    brain = LobeCTCBrain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.epoch_losses = []
    brain.fit(range(1, 21), tiny_ctc_dataset(), train_loader_kwargs={"batch_size": 4})

    losses = brain.epoch_losses
    assert len(losses) == 20 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.9 * losses[0] and max(losses[10:]) < min(losses[:5]), losses
    # the lobe's own optimizer moved the Transformer; the frozen CNN stayed as loaded
    after = lobe.model.encoder.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in transformer_before.items())
    for key, value in lobe.model.feature_extractor.state_dict().items():
        assert torch.equal(value, cnn_before[key]), key


# ------------------------------------------------------------------ outputs equal our encoder's
@pytest.mark.parametrize("freeze", [True, False])
def test_outputs_equal_our_encoder_and_freezing_controls_gradients(pretrain_run, freeze):
    run, encoder = pretrain_run
    lobe = Data2VecEncoder(str(run), freeze=freeze)
    reference, _ = load_encoder(run)
    assert lobe.normalize_wav  # the run's hyperparams.yaml says normalize: True
    lobe.eval()
    assert_matches_each_utterance(lobe, reference, normalize=True, atol=1e-5)
    assert_matches_each_utterance(lobe, encoder, normalize=True, atol=1e-5)

    lobe.train()  # what Brain does at every epoch
    wav, _, wav_lens = padded_batch()
    output = lobe(wav, wav_lens)
    if freeze:
        assert not lobe.model.training and not output.requires_grad
        assert not any(p.requires_grad for p in lobe.parameters())
        return
    assert lobe.model.training and output.requires_grad
    output.square().mean().backward()
    for name, parameter in lobe.named_parameters():
        assert parameter.grad is not None, name
    assert all(parameter.grad.abs().sum() > 0 for parameter in lobe.model.encoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in lobe.model.feature_extractor.parameters())


def test_freeze_feature_extractor_trains_only_the_rest(pretrain_run):
    run, _ = pretrain_run
    lobe = Data2VecEncoder(str(run), freeze_feature_extractor=True).train()
    assert lobe.training and lobe.model.encoder.training
    assert not lobe.model.feature_extractor.training
    wav, _, wav_lens = padded_batch()
    lobe(wav, wav_lens).square().mean().backward()
    for parameter in lobe.model.feature_extractor.parameters():
        assert not parameter.requires_grad and parameter.grad is None
    assert all(parameter.grad is not None for parameter in lobe.model.encoder.parameters())


def test_padded_batch_equals_each_utterance_alone_with_all_hiddens(pretrain_run):
    run, encoder = pretrain_run
    lobe = Data2VecEncoder(str(run), freeze=True, output_all_hiddens=True)
    wav, lengths, wav_lens = padded_batch()
    output = lobe(wav, wav_lens)
    frames = int(encoder.frame_lengths(lengths).max())
    assert output.shape == (CONFIG.num_layers + 1, len(LENGTHS), frames, CONFIG.embed_dim)
    assert_matches_each_utterance(lobe, encoder, normalize=True, atol=1e-4, all_hiddens=True)
    last = Data2VecEncoder(str(run), freeze=True)(wav, wav_lens)
    torch.testing.assert_close(output[-1], last, atol=0, rtol=0)


def test_wav_lens_give_the_samples_speechbrain_marks_valid(pretrain_run):
    """SpeechBrain's own conversion of relative lengths to a padding mask gives our lengths."""
    from speechbrain.integrations.huggingface.huggingface import make_padding_masks

    from d2v_speech.integrations.speechbrain_lobe import relative_to_sample_lengths

    wav, lengths, wav_lens = padded_batch()
    ours = relative_to_sample_lengths(wav_lens, wav.shape[1])
    assert ours.tolist() == LENGTHS
    assert make_padding_masks(wav, wav_len=wav_lens).sum(dim=1).tolist() == LENGTHS


def test_output_norm_normalises_each_utterance_over_time_and_features(pretrain_run):
    run, _ = pretrain_run
    wav, _, wav_lens = padded_batch()
    for all_hiddens in (False, True):
        lobe = Data2VecEncoder(
            str(run), freeze=True, output_norm=True, output_all_hiddens=all_hiddens
        )
        torch.manual_seed(3)
        with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0: outputs not normed
            for parameter in lobe.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter) + 0.2)
        output = lobe(wav, wav_lens)
        lobe.output_norm = False
        raw = lobe(wav, wav_lens)
        assert output.shape == raw.shape and (output - raw).abs().max() > 0.1
        # one mean and variance per utterance (and layer), over all its frames and features
        mean = raw.mean(dim=(-2, -1), keepdim=True)
        variance = raw.var(dim=(-2, -1), unbiased=False, keepdim=True)
        expected = (raw - mean) / torch.sqrt(variance + 1e-5)
        torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ every source
@pytest.mark.parametrize("kind", ["pretrain_ckpt_folder", "finetune_run", "fairseq_pt", "hf_dir"])
def test_every_source_kind_gives_the_encoder_it_holds(
    kind, pretrain_run, finetune_run, fairseq_file, hf_directory
):
    run, pretrained = pretrain_run
    sources = {
        "pretrain_ckpt_folder": (next((run / "save").glob("CKPT+*")), pretrained, True),
        "finetune_run": (finetune_run[0], finetune_run[1], False),  # fine-tuned with normalize off
        "fairseq_pt": (fairseq_file[0], fairseq_file[1], True),
        "hf_dir": (hf_directory[0], hf_directory[1], True),  # no preprocessor config: default on
    }
    source, encoder, normalize = sources[kind]
    lobe = Data2VecEncoder(str(source), freeze=True)
    assert lobe.normalize_wav is normalize
    assert_matches_each_utterance(lobe, encoder, normalize, atol=1e-5)
    # unfrozen, every weight trains, whatever the source froze (fine-tuning freezes the CNN)
    assert all(p.requires_grad for p in Data2VecEncoder(str(source)).parameters())


def test_hf_directory_with_a_feature_extractor_config_follows_do_normalize(hf_directory, tmp_path):
    source, _ = hf_directory
    copy = tmp_path / "hf"
    copy.mkdir()
    for file in source.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert Data2VecEncoder(str(copy), freeze=True).normalize_wav is False
    assert Data2VecEncoder(str(copy), freeze=True, normalize_wav=True).normalize_wav is True


# ------------------------------------------------------------------------------- bad sources
def test_bad_sources_stop_with_one_line_naming_the_path(tmp_path):
    text_file = tmp_path / "model.pt"
    text_file.write_text("not weights\n")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    cases = {
        tmp_path / "missing": "no such file or directory",
        text_file: "a text file, not a PyTorch checkpoint",
        empty_folder: "neither a Hugging Face directory",
    }
    for path, problem in cases.items():
        with pytest.raises(LobeSourceError) as raised:
            Data2VecEncoder(str(path))
        message = str(raised.value)
        assert "\n" not in message and str(path) in message and problem in message, message


def test_yaml_with_a_bad_source_stops_at_loading(tmp_path):
    with open(EXAMPLE_YAML, encoding="utf-8") as handle:
        with pytest.raises(LobeSourceError, match="no such file or directory"):
            load_hyperpyyaml(handle, {"d2v_source": str(tmp_path / "nowhere")})


def test_lobe_state_round_trips_through_a_speechbrain_checkpointer(pretrain_run, tmp_path):
    """The recipe lists the lobe as a recoverable: a saved and recovered lobe is the same."""
    from speechbrain.utils.checkpoints import Checkpointer

    run, _ = pretrain_run
    lobe = Data2VecEncoder(str(run))
    with torch.no_grad():
        for parameter in lobe.parameters():
            parameter.add_(0.01)
    Checkpointer(tmp_path / "save", {"wav2vec2": lobe}).save_checkpoint()
    other = Data2VecEncoder(str(run))
    Checkpointer(tmp_path / "save", {"wav2vec2": other}).recover_if_possible()
    for (name, value), (_, recovered) in zip(lobe.state_dict().items(), other.state_dict().items()):
        assert torch.equal(value, recovered), name
    wav, _, wav_lens = padded_batch()
    torch.testing.assert_close(
        lobe.eval()(wav, wav_lens), other.eval()(wav, wav_lens), atol=0, rtol=0
    )
