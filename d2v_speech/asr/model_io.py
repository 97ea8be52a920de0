"""Build a CTC model to fine-tune, and load a fine-tuned one to decode with.

`build_ctc_model` starts from any pretrained source that `d2v_speech.checkpoints` reads (our
pretraining output / CKPT folder, fairseq `.pt`, Hugging Face directory, native file), from one
of our fine-tuned models (to continue), or from scratch (`pretrained="none"`: the same
architecture, randomly initialised).

`load_ctc_model` reads a fine-tuned model: our fine-tuning output folder (the checkpoint with
the lowest dev WER), one of its `CKPT+*` folders or `model.ckpt`, a fairseq fine-tuned `.pt`, or
a Hugging Face `Data2VecAudioForCTC` directory. A checkpoint without a CTC head is refused with
a message saying what it is and what is expected.

The units of a foreign CTC head come from the Hugging Face directory's `vocab.json`. Without
one, a 32-output head is read as fairseq's LibriSpeech letter dictionary (a fairseq fine-tuned
`.pt`, or a directory saved by `Data2VecAudioForCTC.save_pretrained` without its tokenizer: a
warning names the missing file); a directory whose tokenizer lacks its `vocab.json`, a head of
another size, a `vocab.json` that is not JSON, not a CTC letter vocabulary, of another size than
the head, or whose `pad_token` (transformers' CTC blank) is not index 0 stops with one line naming
the file. Fine-tuning from such a directory (`build_ctc_model`, `--pretrained=DIR`) takes its
encoder only, under a fresh head over the recipe's vocabulary, so it needs no `vocab.json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from speechbrain.utils.logger import get_logger

from d2v_speech.asr.ctc_model import MODEL_FORMAT, CTCModel
from d2v_speech.asr.vocabulary import (
    FAIRSEQ_LETTERS,
    FAIRSEQ_SPECIALS,
    LetterVocabulary,
    vocabulary_from_state,
)
from d2v_speech.checkpoints import (
    CKPT_META_FILE,
    CheckpointError,
    complete_checkpoint_folders,
    load_checkpoint,
    load_torch_file,
    read_json_file,
)
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.nn.presets import load_model_config
from d2v_speech.nn.transformer import EncoderLayer, init_transformer_weights

logger = get_logger(__name__)

__all__ = [
    "FINETUNED_MODEL_FILE",
    "NOT_FINETUNED_HINT",
    "WrongCheckpointError",
    "build_ctc_model",
    "find_finetuned_checkpoint",
    "load_ctc_model",
    "save_ctc_model",
]

#: recoverable name of the CTC model in the fine-tuning recipe's checkpoints
FINETUNED_MODEL_FILE = "model.ckpt"
#: a Hugging Face CTC tokenizer's vocabulary (unit -> id) and its other files
HF_VOCAB_FILE = "vocab.json"
HF_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
SCRATCH = ("none", "scratch")


def is_scratch(pretrained: str | Path | None) -> bool:
    """True for "none" / "scratch" (random initialisation). An empty value or None is refused:
    it is what an unset shell variable gives (``--pretrained=$RUN`` reaches the YAML as null),
    not a choice."""
    text = "" if pretrained is None else str(pretrained).strip()
    if not text:
        raise ValueError(
            "pretrained is empty (an unset variable?); give a checkpoint, or 'none' to start "
            "from random weights"
        )
    return text.lower() in SCRATCH


NOT_FINETUNED_HINT = (
    "expected a fine-tuned CTC model: a fine-tuning output folder, one of its CKPT+* folders or "
    f"{FINETUNED_MODEL_FILE}, a fairseq fine-tuned .pt, or a Hugging Face Data2VecAudioForCTC "
    "folder. Fine-tune first: python recipes/LibriSpeech/finetune.py hparams/finetune_ctc.yaml "
    "--pretrained=<this checkpoint>"
)


class WrongCheckpointError(CheckpointError):
    """A checkpoint of another kind than the one needed (e.g. pretraining where CTC is needed)."""


# ---------------------------------------------------------------------------- our files
def _is_our_state(content: Any) -> bool:
    extra = content.get("_extra_state") if isinstance(content, Mapping) else None
    return isinstance(extra, Mapping) and extra.get("format") == MODEL_FORMAT


def _meta(folder: Path) -> dict:
    try:
        return yaml.safe_load((folder / CKPT_META_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def find_finetuned_checkpoint(path: str | Path) -> Path | None:
    """Our `model.ckpt` meant by `path`, or None when `path` is not one of our fine-tuning outputs.

    `path` may be the file, a `CKPT+*` folder, a save folder or an output folder (checkpoints
    directly inside or one level down); among several, the lowest `WER` in `CKPT.yaml` wins,
    else the newest.
    """
    path = Path(path)
    if path.is_file():
        return path if path.name == FINETUNED_MODEL_FILE else None
    if not path.is_dir():
        return None
    if (path / FINETUNED_MODEL_FILE).is_file():
        return path / FINETUNED_MODEL_FILE
    folders = complete_checkpoint_folders(path) + [
        ckpt
        for child in sorted(path.iterdir())
        if child.is_dir()
        for ckpt in complete_checkpoint_folders(child)
    ]
    folders = [f for f in folders if (f / FINETUNED_MODEL_FILE).is_file()]
    if not folders:
        return None
    scored = [f for f in folders if isinstance(_meta(f).get("WER"), int | float)]
    if scored:
        best = min(scored, key=lambda f: (float(_meta(f)["WER"]), -_unixtime(f)))
    else:
        best = max(folders, key=_unixtime)
        logger.warning("%s: no checkpoint records a dev WER; using the newest, %s", path, best)
    return best / FINETUNED_MODEL_FILE


def _unixtime(folder: Path) -> float:
    value = _meta(folder).get("unixtime")
    return (
        float(value)
        if isinstance(value, int | float)
        else (folder / CKPT_META_FILE).stat().st_mtime
    )


def _model_from_state(state: Mapping[str, Any], source: Path) -> CTCModel:
    extra = state["_extra_state"]
    config = EncoderConfig.from_dict(dict(extra["config"]))
    if extra.get("vocabulary") is None:
        raise CheckpointError(f"{source}: the fine-tuned model carries no vocabulary")
    vocabulary = vocabulary_from_state(extra["vocabulary"])
    model = CTCModel(
        Data2VecAudioModel(config),
        len(vocabulary),
        vocabulary=vocabulary,
        mask_prob=0.0,
        mask_channel_prob=0.0,
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: does not fit its own architecture (missing {missing}, "
            f"unexpected {unexpected})"
        )
    return model


def save_ctc_model(model: CTCModel, path: str | Path) -> Path:
    """One self-describing file (weights, architecture, vocabulary) that `load_ctc_model` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


# ---------------------------------------------------------------------------- loading
def load_ctc_model(source: str | Path, allow_pickle: bool = False) -> CTCModel:
    """A fine-tuned `CTCModel` in eval mode (see module docstring for accepted sources)."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    ours = find_finetuned_checkpoint(path)
    if ours is not None:
        state = load_torch_file(ours, allow_pickle=allow_pickle)
        if not _is_our_state(state):
            raise WrongCheckpointError(f"{ours}: not a d2v_speech CTC model; {NOT_FINETUNED_HINT}")
        return _model_from_state(state, ours).eval()
    try:
        checkpoint = load_checkpoint(path, allow_pickle=allow_pickle)
    except CheckpointError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise WrongCheckpointError(
            f"{path}: not a checkpoint that can be decoded ({reason}); {NOT_FINETUNED_HINT}"
        ) from error
    if checkpoint.ctc_head is None:
        raise WrongCheckpointError(
            f"{path}: found a {checkpoint.source_format} checkpoint with an encoder only (no CTC "
            f"output layer; pretraining heads: {sorted(checkpoint.heads) or 'none'}); "
            f"{NOT_FINETUNED_HINT}"
        )
    vocab_size = int(checkpoint.ctc_head["weight"].shape[0])
    vocabulary = _external_vocabulary(path, vocab_size)
    normalize = checkpoint.normalize
    if normalize is None:
        normalize = _hf_do_normalize(path)
    model = CTCModel(
        checkpoint.build_encoder(),
        vocab_size,
        vocabulary=vocabulary,
        normalize=True if normalize is None else normalize,
        info={"source": str(path), "source_format": checkpoint.source_format},
        mask_prob=0.0,
        mask_channel_prob=0.0,
    )
    model.head.proj.load_state_dict(checkpoint.ctc_head)
    return model.eval()


def _external_vocabulary(path: Path, vocab_size: int) -> LetterVocabulary:
    """The units of a foreign CTC head (see the module docstring); one line naming the file
    for a missing, unreadable or mismatched vocabulary."""
    vocab_json = path / HF_VOCAB_FILE if path.is_dir() else None
    if vocab_json is not None and vocab_json.is_file():
        vocabulary = _read_hf_vocabulary(path)
        if len(vocabulary) != vocab_size:
            raise CheckpointError(
                f"{vocab_json} has {len(vocabulary)} units but the CTC head {vocab_size} outputs "
                "(config.json / model weights): the tokenizer belongs to another model"
            )
        return vocabulary
    if vocab_json is not None:
        present = [name for name in HF_TOKENIZER_FILES if (path / name).is_file()]
        if present:
            raise CheckpointError(
                f"{vocab_json}: missing; the directory has a tokenizer ({', '.join(present)}) "
                f"without its vocabulary, so nothing says what the CTC head's {vocab_size} "
                "outputs are (copy vocab.json back, or export again with "
                "python -m d2v_speech.asr.hf_export)"
            )
    if vocab_size == len(FAIRSEQ_SPECIALS) + len(FAIRSEQ_LETTERS):
        if vocab_json is not None:
            logger.warning(
                "%s: missing; reading the CTC head's %d outputs as fairseq's LibriSpeech letter "
                "dictionary (as Hugging Face's data2vec-audio CTC models order them)",
                vocab_json,
                vocab_size,
            )
        return LetterVocabulary()
    where = f"{vocab_json}: missing" if vocab_json is not None else f"{path}: no vocab.json"
    raise CheckpointError(
        f"{where}; the CTC head has {vocab_size} outputs, which is not the 32-unit fairseq "
        "letter dictionary, so nothing says what they are"
    )


def _read_hf_vocabulary(directory: Path) -> LetterVocabulary:
    """`vocab.json` as a `LetterVocabulary`, checked against `tokenizer_config.json`'s blank."""
    vocab_json = directory / HF_VOCAB_FILE
    vocab = read_json_file(vocab_json)
    try:
        vocabulary = LetterVocabulary.from_hf_vocab(vocab)
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{vocab_json}: not a CTC letter vocabulary ({' '.join(str(error).split())})"
        ) from error
    config_file = directory / "tokenizer_config.json"
    if config_file.is_file():
        pad = read_json_file(config_file).get("pad_token")
        pad = pad.get("content") if isinstance(pad, Mapping) else pad
        if isinstance(pad, str) and vocab.get(pad) != vocabulary.blank_index:
            raise CheckpointError(
                f"{config_file}: pad_token {pad!r} (transformers' CTC blank) has id "
                f"{vocab.get(pad)} in vocab.json, but the model's blank is index "
                f"{vocabulary.blank_index}"
            )
    return vocabulary


def _hf_do_normalize(path: Path) -> bool | None:
    config = path / "preprocessor_config.json" if path.is_dir() else None
    if config is None or not config.is_file():
        return None
    return bool(read_json_file(config).get("do_normalize", True))


# ---------------------------------------------------------------------------- building
def reinitialize_top_layers(encoder: Data2VecAudioModel, count: int) -> None:
    """Fresh weights for the top `count` Transformer layers (and a pre-LN final LayerNorm)."""
    layers = encoder.encoder.layers
    if not 0 <= count <= len(layers):
        raise ValueError(f"reinit_top_layers={count}: the encoder has {len(layers)} layers")
    if count == 0:
        return
    for index in range(len(layers) - count, len(layers)):
        layers[index] = EncoderLayer(encoder.config)
        init_transformer_weights(layers[index])
    if encoder.config.layer_norm_first:
        encoder.encoder.layer_norm.reset_parameters()


def build_ctc_model(
    pretrained: str | Path | None,
    vocabulary: Any,
    model_preset: str | Path | None = None,
    encoder_overrides: Mapping[str, Any] | None = None,
    normalize: bool | None = None,
    info: Mapping[str, Any] | None = None,
    reinit_top_layers: int = 0,
    **ctc_kwargs: Any,
) -> CTCModel:
    """A `CTCModel` with a fresh head over a pretrained (or random) encoder.

    Parameters
    ----------
    pretrained : str or Path
        Any source `load_checkpoint` reads, one of our fine-tuned models, or "none" for random
        initialisation of `model_preset` (an empty value is an error, see `is_scratch`).
    vocabulary : LetterVocabulary or SentencePieceVocabulary
    model_preset : str or Path, optional
        Architecture for `pretrained="none"` (ignored otherwise: the checkpoint brings its own).
    encoder_overrides : dict, optional
        `EncoderConfig` fields replaced for fine-tuning (dropouts, layerdrop).
    normalize : bool, optional
        Waveform normalisation; None follows the pretrained checkpoint (True when unknown).
    info : dict, optional
        Provenance stored in the model (train split, pretrained source, ...).
    reinit_top_layers : int
        Transformer layers, counted from the top, given fresh weights before fine-tuning (the
        top of a pretrained encoder is specialised to its pretraining targets).
    **ctc_kwargs
        `CTCModel` arguments (final_dropout, freeze_transformer_updates, masking).
    """
    overrides = dict(encoder_overrides or {})
    source_normalize = None
    if is_scratch(pretrained):
        if model_preset is None:
            raise ValueError("pretrained='none' needs model_preset for the architecture")
        encoder = Data2VecAudioModel(load_model_config(model_preset, **overrides))
    else:
        ours = find_finetuned_checkpoint(pretrained) if Path(pretrained).exists() else None
        if ours is not None:
            previous = load_ctc_model(ours)
            config = EncoderConfig.from_dict({**previous.config.to_dict(), **overrides})
            encoder = Data2VecAudioModel(config)
            encoder.load_state_dict(previous.encoder.model.state_dict())
            source_normalize = previous.normalize
        else:
            checkpoint = load_checkpoint(pretrained)
            checkpoint.config = EncoderConfig.from_dict(
                {**checkpoint.config.to_dict(), **overrides}
            )
            encoder = checkpoint.build_encoder()
            source_normalize = checkpoint.normalize
    reinitialize_top_layers(encoder, reinit_top_layers)
    if normalize is None:
        normalize = True if source_normalize is None else source_normalize
    elif source_normalize is not None and normalize != source_normalize:
        logger.warning(
            "normalize=%s but %s was pretrained with normalize=%s; the encoder will see inputs "
            "scaled differently from pretraining",
            normalize,
            pretrained,
            source_normalize,
        )
    return CTCModel(
        encoder,
        len(vocabulary),
        vocabulary=vocabulary,
        normalize=normalize,
        info={"pretrained": "none" if pretrained is None else str(pretrained), **(info or {})},
        **ctc_kwargs,
    )
