"""The model card each export writes: what the model is and holds, what it was trained on, its
config, its test WER / CER table when it is a fine-tuned run, and how to load it in transformers,
fairseq, s3prl, SpeechBrain and d2v_speech.

Where it goes (`card_path`): a directory export (``convert --to hf``, ``python -m
d2v_speech.asr.hf_export``) gets ``DST/README.md``, which transformers' ``from_pretrained`` and
every loader here ignore; a file export (``--to native|fairseq|s3prl``) gets
``DST.with_suffix(".md")`` beside the file (``run.pt`` -> ``run.md``).

`render_model_card` renders the markdown from explicit arguments only: the `LoadedCheckpoint`,
the target format, the export's path, the source, and a `TrainingRun` when the source is one of
our recipe runs (`run_record.read_training_run`: its ``hyperparams.yaml``, the exported
checkpoint's ``brain.ckpt`` / ``CKPT.yaml`` and a fine-tuning run's ``results.json``, whose test
scores are copied as stored). The snippets are `model_card_snippets.how_to_load`.

Example
-------
>>> from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
>>> config = EncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2)], embed_dim=32, num_layers=2,
...                        num_heads=4, ffn_dim=64, pos_conv_depth=2, pos_conv_kernel=5,
...                        pos_conv_groups=4)
>>> card = render_model_card(
...     LoadedCheckpoint.from_model(Data2VecAudioModel(config)), "native", "tiny.pt")
>>> card.splitlines()[0], "### SpeechBrain" in card
('# tiny.pt', True)
>>> card_path("exported/tiny.pt").as_posix()
'exported/tiny.md'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from d2v_speech.atomic_files import write_text_atomic
from d2v_speech.checkpoints.fairseq_export import FAIRSEQ_HEAD_NAMES
from d2v_speech.checkpoints.loaded import FORMAT_NAMES, LoadedCheckpoint
from d2v_speech.checkpoints.model_card_snippets import how_to_load
from d2v_speech.checkpoints.run_record import TrainingRun

__all__ = ["CARD_NAME", "card_path", "render_model_card", "write_model_card"]

#: the card of a directory export
CARD_NAME = "README.md"
#: the card of a file export replaces the file's suffix
CARD_SUFFIX = ".md"
#: what each export target writes
FORMAT_TEXT = {
    "hf": "a Hugging Face transformers directory (`config.json`, `model.safetensors`)",
    "native": "a d2v_speech native file (`save_native`: everything the checkpoint holds)",
    "fairseq": "a fairseq data2vec / data2vec-aqc checkpoint (`cfg` with `model` and `task`)",
    "s3prl": "an s3prl converted data2vec upstream (`task_cfg`, `model_cfg`, `model_weight`)",
}
#: the tokenizer and feature-extractor files `python -m d2v_speech.asr.hf_export` adds
HF_ASR_FILES = (
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
)
_AQC_HEADS = ("quantizer", "project_q", "contr_proj")


def card_path(dst: str | Path) -> Path:
    """Where the card of the export at `dst` goes: ``DST/README.md`` for a directory, else
    ``DST.with_suffix(".md")`` beside the file (``DST.md.md`` if DST itself ends in .md)."""
    dst = Path(dst)
    if dst.is_dir():
        return dst / CARD_NAME
    card = dst.with_suffix(CARD_SUFFIX)
    return card if card != dst else dst.with_name(dst.name + CARD_SUFFIX)


def write_model_card(dst: str | Path, text: str) -> Path:
    """Write `text` (from `render_model_card`) as the card of the export at `dst`."""
    return write_text_atomic(card_path(dst), text)


def _family(checkpoint: LoadedCheckpoint) -> str:
    family = "data2vec-aqc" if "quantizer" in checkpoint.heads else "data2vec"
    if checkpoint.config.alibi:
        return "data2vec 2.0" if family == "data2vec" else f"{family} (data2vec 2.0 engine)"
    return family


def _contents(checkpoint: LoadedCheckpoint, target: str) -> tuple[list[str], list[str]]:
    """(what the export holds, what of the checkpoint the format leaves out)."""
    ctc = checkpoint.ctc_head is not None
    teacher = checkpoint.teacher_state is not None
    heads = sorted(checkpoint.heads)
    if target == "native":
        kept_heads, kept_teacher = heads, teacher
    elif target == "fairseq":
        names = _AQC_HEADS if ctc else FAIRSEQ_HEAD_NAMES
        kept_heads, kept_teacher = [h for h in heads if h in names], teacher and not ctc
    else:
        kept_heads, kept_teacher = [], False
    kept_ctc = ctc and target != "s3prl"
    held = ["encoder"] + (["EMA teacher"] if kept_teacher else [])
    held += [f"pretraining heads ({', '.join(kept_heads)})"] if kept_heads else []
    held += ["CTC head"] if kept_ctc else []
    left = (["EMA teacher"] if teacher and not kept_teacher else []) + [
        f"{name} head" for name in heads if name not in kept_heads
    ]
    left += ["CTC head"] if ctc and not kept_ctc else []
    return held, left


def _architecture(checkpoint: LoadedCheckpoint) -> str:
    config = checkpoint.config
    values = sum(value.numel() for value in checkpoint.encoder_state.values())
    position = "ALiBi attention bias" if config.alibi else "convolutional positions"
    return (
        f"{config.num_layers} Transformer layers of width {config.embed_dim} ({config.num_heads} "
        f"heads, FFN {config.ffn_dim}, {'pre' if config.layer_norm_first else 'post'}-LN, "
        f"{position}) over a {len(config.conv_layers)}-layer CNN that downsamples "
        f"{config.total_stride}x; {values / 1e6:.2f} M parameters"
    )


def _model_section(
    checkpoint: LoadedCheckpoint, target: str, vocabulary: Sequence[str] | None
) -> str:
    held, left = _contents(checkpoint, target)
    files = FORMAT_TEXT[target]
    if target == "hf" and vocabulary is not None:
        files += (
            ", with the tokenizer and feature extractor of the ASR pipeline ("
            + ", ".join(f"`{name}`" for name in HF_ASR_FILES)
            + ")"
        )
    normalize = {
        True: "16 kHz mono waveforms, each normalised to zero mean and unit variance",
        False: "16 kHz mono waveforms, not normalised",
        None: "16 kHz mono waveforms (the source does not say whether normalised; data2vec "
        "recipes normalise to zero mean and unit variance)",
    }[checkpoint.normalize]
    source = FORMAT_NAMES.get(checkpoint.source_format, checkpoint.source_format)
    lines = [
        f"- format: {files}",
        f"- holds: {', '.join(held)}" + (f" (left out: {', '.join(left)})" if left else ""),
        f"- encoder: {_architecture(checkpoint)}",
        f"- input: {normalize}",
        f"- read from: a {source} checkpoint",
    ]
    if checkpoint.ctc_head is not None and target != "s3prl":
        outputs = int(checkpoint.ctc_head["weight"].shape[0])
        units = f": {' '.join(vocabulary)}" if vocabulary is not None else ""
        lines.append(f"- CTC head: {outputs} outputs, index 0 is the blank{units}")
    if checkpoint.num_updates is not None:
        lines.append(f"- update count in the checkpoint: {checkpoint.num_updates}")
    return "## Model\n\n" + "\n".join(lines)


def _training_section(
    checkpoint: LoadedCheckpoint, run: TrainingRun | None, info: Mapping[str, Any] | None
) -> str:
    lines = []
    if run is not None:
        lines.append(f"- run: `{run.folder}` (its `{run.hparams_file.name}`)")
        lines += [f"- {label}: {text}" for label, text in run.facts]
        lines += [f"- note: {note}" for note in run.notes]
    for key, value in sorted((info or {}).items()):
        lines.append(f"- {key} (recorded in the model): {value}")
    if not lines:
        lines.append(
            f"- not recorded: the source is a {checkpoint.source_format} checkpoint, not one of "
            "d2v_speech's recipe runs (whose hyperparams.yaml says what they were trained on)"
        )
    return "## Trained on\n\n" + "\n".join(lines)


def _results_section(run: TrainingRun | None) -> str:
    if run is None or not run.results:
        return ""
    rows = [
        "| test set | WER % | CER % | utterances | words |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, scores in run.results.items():
        cells = [
            f"{scores[key]:.2f}" if isinstance(scores.get(key), float) else str(scores.get(key, ""))
            for key in ("wer", "cer", "utterances", "words")
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    exact = json.dumps(run.results, indent=2, sort_keys=True)
    return (
        f"## Results\n\nGreedy CTC decoding, from `{run.results_file}`:\n\n"
        + "\n".join(rows)
        + "\n\nAs stored there:\n\n```json\n"
        + exact
        + "\n```"
    )


def _compact_json(values: Mapping[str, Any]) -> str:
    """A JSON object with one field per line (lists such as conv_layers kept on theirs)."""
    fields = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in values.items()]
    return "{\n" + ",\n".join(fields) + "\n}"


def _config_section(checkpoint: LoadedCheckpoint, target: str) -> str:
    where = " (`config.json` holds the same as a transformers `Data2VecAudioConfig`)"
    return (
        "## Config\n\nThe encoder's `d2v_speech.nn.EncoderConfig`"
        + (where if target == "hf" else "")
        + ":\n\n```json\n"
        + _compact_json(checkpoint.config.to_dict())
        + "\n```"
    )


def _front_matter(checkpoint: LoadedCheckpoint, vocabulary: Sequence[str] | None) -> str:
    """Hugging Face Hub metadata of a directory export."""
    asr = checkpoint.ctc_head is not None and vocabulary is not None
    tag = "automatic-speech-recognition" if asr else "feature-extraction"
    return (
        f"---\nlibrary_name: transformers\npipeline_tag: {tag}\n"
        "tags: [audio, speech, data2vec, d2v_speech]\n---\n\n"
    )


def render_model_card(
    checkpoint: LoadedCheckpoint,
    target: str,
    location: str | Path,
    *,
    source: str | Path | None = None,
    run: TrainingRun | None = None,
    vocabulary: Sequence[str] | None = None,
    info: Mapping[str, Any] | None = None,
    command: str | None = None,
) -> str:
    """The card's markdown for `checkpoint` exported as `target` to `location`.

    Parameters
    ----------
    checkpoint : LoadedCheckpoint
        What was exported (before the format dropped anything).
    target : str
        "hf", "native", "fairseq" or "s3prl".
    location : str or Path
        The export's path as the user gave it; the snippets load it from there.
    source : str or Path, optional
        What it was exported from.
    run : TrainingRun, optional
        The recipe run behind the source (`run_record.read_training_run`).
    vocabulary : sequence of str, optional
        The CTC units in index order, when the export carries a tokenizer (``vocab.json``).
    info : mapping, optional
        Provenance the model itself records (a fine-tuned model's train split, pretrained ...).
    command : str, optional
        The command that wrote the export.
    """
    if target not in FORMAT_TEXT:
        raise ValueError(f"target must be one of {sorted(FORMAT_TEXT)}, got {target!r}")
    location = str(location)
    kind = f"A {_family(checkpoint)} speech encoder"
    if checkpoint.ctc_head is not None and target != "s3prl":
        kind += " with a CTC head (speech recognition)"
    origin = f" from `{source}`" if source is not None else ""
    how = f" with `{command}`" if command else ""
    sections = [
        (_front_matter(checkpoint, vocabulary) if target == "hf" else "")
        + f"# {Path(location).name}\n\n{kind}, exported by d2v_speech{origin}{how}.",
        _model_section(checkpoint, target, vocabulary),
        _training_section(checkpoint, run, info),
        _results_section(run),
        _config_section(checkpoint, target),
        how_to_load(checkpoint, target, location, vocabulary),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"
