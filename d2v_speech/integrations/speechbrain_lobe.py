"""Our data2vec / data2vec-aqc encoder as a SpeechBrain lobe.

`Data2VecEncoder` takes the constructor arguments of SpeechBrain 1.1's Hugging Face wav2vec2 lobe
(`speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2`, formerly
`speechbrain.lobes.models.huggingface_transformers.wav2vec2.Wav2Vec2`) and is called the same
way, `lobe(wav, wav_lens)`, so a recipe YAML swaps one for the other by changing the `!new:` tag
and `source`::

    wav2vec2: !new:d2v_speech.integrations.speechbrain_lobe.Data2VecEncoder
        source: results/pretrain/aqc_base/1234   # or a fairseq .pt, or an HF directory
        save_path: !ref <save_folder>/d2v_checkpoint
        output_norm: True
        freeze: False
        freeze_feature_extractor: True

`source` is anything our loaders read: an output / save / `CKPT+*` folder of
`recipes/LibriSpeech/pretrain.py` or `finetune.py` (read by `d2v_speech.asr.model_io`), a fairseq
data2vec(-aqc, 2.0) `.pt`, a native `.pt`, or a Hugging Face `Data2VecAudioModel` /
`Data2VecAudioForCTC` directory (read by `d2v_speech.checkpoints.load_checkpoint`). Only the
encoder is kept; a CTC head or pretraining heads in the source are dropped.

Differences from SpeechBrain's lobe, on purpose:

- waveform normalisation (when the source was trained with it) is per utterance over its valid
  samples, as our data pipeline does, so padding a batch does not change an utterance's input;
- a frozen lobe stays in eval mode when `Brain` calls `.train()` (SpeechBrain's only sets it
  once, so its dropout comes back on in training);
- `save_path` is accepted for the same signature but unused (sources are local, nothing is
  downloaded), and there is no `apply_spec_augment` (masking belongs to `asr.ctc_model`).

`output_norm` is as SpeechBrain's: a LayerNorm without weights over the time and feature axes of
each utterance (and each layer), padded frames included.

Example
-------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from d2v_speech.checkpoints import LoadedCheckpoint, save_native
>>> from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
>>> config = EncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2)], embed_dim=32, num_layers=2,
...                        num_heads=4, ffn_dim=64, pos_conv_depth=2, pos_conv_kernel=5,
...                        pos_conv_groups=4)
>>> with tempfile.TemporaryDirectory() as folder:
...     path = save_native(LoadedCheckpoint.from_model(Data2VecAudioModel(config)),
...                        Path(folder) / "tiny.pt")
...     lobe = Data2VecEncoder(str(path), freeze=True, output_all_hiddens=True)
>>> lobe(torch.randn(2, 1600), torch.tensor([1.0, 0.6])).shape
torch.Size([3, 2, 159, 32])
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from d2v_speech.asr.model_io import find_finetuned_checkpoint, load_ctc_model
from d2v_speech.checkpoints import CheckpointError, load_checkpoint
from d2v_speech.data.pipelines import normalize_waveform
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel

__all__ = [
    "Data2VecEncoder",
    "LobeSourceError",
    "load_lobe_encoder",
    "relative_to_sample_lengths",
    "normalize_utterances",
]

#: what a reader or torch may raise for a file that is not what it should be
_LOAD_ERRORS = (ValueError, OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError)


class LobeSourceError(CheckpointError):
    """A `source` the lobe cannot load; the message is one line that names the path."""


def _one_line(path: Path, error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if str(path) in text else f"{path}: {text}"


def _hf_do_normalize(path: Path) -> bool | None:
    """`do_normalize` of an HF directory's feature-extractor config; None when it has none."""
    config = path / "preprocessor_config.json"
    if not config.is_file():
        return None
    return bool(json.loads(config.read_text("utf-8")).get("do_normalize", True))


def load_lobe_encoder(
    source: str | Path, allow_pickle: bool = False
) -> tuple[Data2VecAudioModel, bool]:
    """(encoder, whether it expects normalised waveforms) from any source the lobe accepts.

    Our fine-tuning outputs go through `asr.model_io.load_ctc_model`, everything else through
    `checkpoints.load_checkpoint`; normalisation is the source's (True when it does not say, the
    project's default). Raises `LobeSourceError` (one line naming the path) for a missing path or
    a file or folder that no reader recognises.
    """
    path = Path(source)
    if not path.exists():
        raise LobeSourceError(f"{path}: no such file or directory")
    try:
        finetuned = find_finetuned_checkpoint(path)
        if finetuned is not None:
            ctc_model = load_ctc_model(finetuned, allow_pickle=allow_pickle)
            return ctc_model.encoder.model, bool(ctc_model.normalize)
        checkpoint = load_checkpoint(path, allow_pickle=allow_pickle)
        normalize = checkpoint.normalize
        if normalize is None and path.is_dir():
            normalize = _hf_do_normalize(path)
        return checkpoint.build_encoder(), True if normalize is None else bool(normalize)
    except _LOAD_ERRORS as error:
        raise LobeSourceError(_one_line(path, error)) from error


def relative_to_sample_lengths(
    wav_lens: torch.Tensor | None, num_samples: int
) -> torch.Tensor | None:
    """SpeechBrain's relative lengths (B,) in (0, 1] -> valid samples per utterance (B,) long.

    Rounded to the nearest sample, as SpeechBrain turns `wav_lens` into a padding mask.
    """
    if wav_lens is None:
        return None
    return torch.round(wav_lens * num_samples).long().clamp(1, num_samples)


def normalize_utterances(wav: torch.Tensor, sample_lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its valid samples; padding stays zero.

    wav (B, S), sample_lengths (B,) or None (no padding) -> (B, S).
    """
    if sample_lengths is None:
        return F.layer_norm(wav, wav.shape[1:], eps=1e-5)
    normalized = torch.zeros_like(wav)
    for row, length in enumerate(sample_lengths.tolist()):
        # the same function as the data pipeline, so a lone utterance gets bitwise its input
        normalized[row, :length] = normalize_waveform(wav[row, :length])
    return normalized


class Data2VecEncoder(nn.Module):
    """SpeechBrain lobe: waveforms -> data2vec encoder states (see the module docstring).

    Arguments
    ---------
    source : str or Path
        Our pretraining or fine-tuning output (or save / `CKPT+*` folder), a fairseq or native
        `.pt`, or a Hugging Face directory.
    save_path : str, optional
        Accepted for the signature of SpeechBrain's wav2vec2 lobe; unused.
    output_norm : bool
        LayerNorm (no weights) over the (T, D) of each utterance's output.
    freeze : bool
        No gradient for the encoder: its parameters get `requires_grad=False`, it runs under
        `torch.no_grad()` and stays in eval mode (no dropout, no LayerDrop).
    freeze_feature_extractor : bool
        With `freeze=False`: keep the CNN feature encoder fixed (no gradient, eval mode) and
        train the rest.
    output_all_hiddens : bool
        Return every layer's output (L + 1, B, T, D): the Transformer input, then each layer's
        output; else the last layer's (B, T, D).
    normalize_wav : bool, optional
        Normalise each waveform to zero mean and unit variance; None follows the source.
    allow_pickle : bool
        Fully unpickle a trusted file that `torch.load(weights_only=True)` rejects.

    Attributes
    ----------
    model : Data2VecAudioModel
        The encoder (`model.config.embed_dim` is D).
    """

    def __init__(
        self,
        source: str | Path,
        save_path: str | None = None,
        output_norm: bool = False,
        freeze: bool = False,
        freeze_feature_extractor: bool = False,
        output_all_hiddens: bool = False,
        normalize_wav: bool | None = None,
        allow_pickle: bool = False,
    ):
        super().__init__()
        self.model, source_normalize = load_lobe_encoder(source, allow_pickle)
        self.source = str(source)
        self.normalize_wav = source_normalize if normalize_wav is None else bool(normalize_wav)
        self.output_norm = output_norm
        self.output_all_hiddens = output_all_hiddens
        self.freeze = freeze
        self.freeze_feature_extractor = freeze_feature_extractor
        # a fine-tuned source comes with its CNN frozen: every flag is set here, from the arguments
        self.model.requires_grad_(not freeze)
        if freeze_feature_extractor and not freeze:
            self.model.feature_extractor.requires_grad_(False)
        self.train(not freeze)

    def train(self, mode: bool = True) -> Data2VecEncoder:
        """As `nn.Module.train`, but frozen parts stay in eval mode whatever `mode` says."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        elif self.freeze_feature_extractor:
            self.model.feature_extractor.eval()
        return self

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wav (B, S), wav_lens (B,) relative lengths -> (B, T, D), or (L + 1, B, T, D) with
        `output_all_hiddens`. Frames past an utterance's end hold padding and should be ignored
        (its valid frames: `model.frame_lengths(sample lengths)`)."""
        if self.freeze:
            with torch.no_grad():
                return self.extract_features(wav, wav_lens)
        return self.extract_features(wav, wav_lens)

    def extract_features(
        self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`forward` without the `no_grad` of a frozen lobe; same shapes."""
        sample_lengths = relative_to_sample_lengths(wav_lens, wav.shape[1])
        if self.normalize_wav:
            wav = normalize_utterances(wav, sample_lengths)
        output = self.model(wav, sample_lengths)
        if self.output_all_hiddens:
            hidden = torch.stack(output.hidden_states, dim=0)
        else:
            hidden = output.last_hidden_state
        if self.output_norm:
            # over time and features of each utterance, as SpeechBrain's lobe normalises
            hidden = F.layer_norm(hidden, hidden.shape[-2:])
        return hidden
