"""The "How to load it" section of a model card: one subsection per tool (transformers, fairseq,
s3prl, SpeechBrain, d2v_speech), with code for the tools that read the exported format and a
conversion command (or the reason there is none) for the others.

Every Python block is complete: it imports what it uses, loads the export from the path it was
written to and runs it on a dummy 16 kHz waveform, so it can be pasted (or executed by a test)
as it is. This module sits below `d2v_speech.asr` and `d2v_speech.integrations`: it names them
in the snippets' text only.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from d2v_speech.checkpoints.fairseq_export import FormatError, check_fairseq_expressible
from d2v_speech.checkpoints.huggingface import encoder_config_to_hf
from d2v_speech.checkpoints.loaded import CheckpointError, LoadedCheckpoint

__all__ = ["FAIRSEQ_LETTER_HEAD", "how_to_load"]

#: outputs of a CTC head over fairseq's LibriSpeech letter dictionary (4 specials + 28 units)
FAIRSEQ_LETTER_HEAD = 32
#: what s3prl's data2vec expert assumes the CNN downsamples by
S3PRL_STRIDE = 320
_NORMALIZE = (
    "waveform = torch.nn.functional.layer_norm(waveform, waveform.shape[1:])"
    "  # zero mean, unit variance\n"
)


def _code(language: str, text: str) -> str:
    return f"```{language}\n{text.strip()}\n```"


def _convert_hint(checkpoint: LoadedCheckpoint, location: str, target: str) -> str:
    """The `convert` command to `target`, or why that format cannot hold the checkpoint."""
    try:
        if target == "hf":
            encoder_config_to_hf(checkpoint.config)
        else:
            check_fairseq_expressible(checkpoint, target)
            stride = checkpoint.config.total_stride
            if target == "s3prl" and stride != S3PRL_STRIDE:
                raise FormatError(f"its CNN downsamples by {stride}, s3prl assumes 320")
    except CheckpointError as error:
        return f"No conversion to this tool's format: {error}"
    stem = Path(location).with_suffix("").name
    dst = f"{stem}_hf" if target == "hf" else f"{stem}_{target}.pt"
    source = shlex.quote(location)
    command = f"python -m d2v_speech.checkpoints convert {source} {dst} --to {target}"
    return f"Convert it first (the new file gets its own card):\n\n{_code('bash', command)}"


def _transformers(
    checkpoint: LoadedCheckpoint, target: str, location: str, vocabulary: Sequence[str] | None
) -> str:
    if target != "hf":
        return _convert_hint(checkpoint, location, "hf")
    path = json.dumps(location)
    if checkpoint.ctc_head is not None and vocabulary is not None:
        code = f"""
import numpy as np
from transformers import Data2VecAudioForCTC, pipeline

model = Data2VecAudioForCTC.from_pretrained({path})  # the network alone
asr = pipeline("automatic-speech-recognition", model={path})  # + tokenizer, feature extractor
waveform = np.zeros(16000, dtype=np.float32)  # 16 kHz mono, e.g. soundfile.read(file)[0]
print(asr(waveform)["text"])
"""
        return (
            "The pipeline loads offline and normalises the waveform as `preprocessor_config.json` "
            "says; pass it 16 kHz arrays (a file name needs ffmpeg).\n\n" + _code("python", code)
        )
    ctc = checkpoint.ctc_head is not None
    cls = "Data2VecAudioForCTC" if ctc else "Data2VecAudioModel"
    call = (
        "logits = model(waveform).logits  # (batch, frames, outputs); 0 is the CTC blank"
        if ctc
        else "hidden_states = model(waveform, output_hidden_states=True).hidden_states"
    )
    normalize = _NORMALIZE if checkpoint.normalize is not False else ""
    code = f"""
import torch
from transformers import {cls}

model = {cls}.from_pretrained({path}).eval()
waveform = torch.randn(1, 16000)  # (batch, samples) at 16 kHz
{normalize}with torch.no_grad():
    {call}
"""
    note = (
        "There are no tokenizer files (`vocab.json`), so `pipeline` cannot decode with it; "
        "`python -m d2v_speech.asr.hf_export` writes them for a d2v_speech fine-tuning run.\n\n"
        if ctc
        else ""
    )
    return note + _code("python", code)


def _fairseq_code(checkpoint: LoadedCheckpoint, path: str) -> str:
    imports = """
import torch
from fairseq import checkpoint_utils
from fairseq.examples.data2vec.models import data2vec_audio  # noqa: F401 (registers the model)
"""
    run = """
waveform = torch.randn(1, 16000)  # (batch, samples) at 16 kHz
if cfg.task.normalize:
    waveform = torch.nn.functional.layer_norm(waveform, waveform.shape[1:])
with torch.no_grad():
"""
    if checkpoint.ctc_head is None:
        load = f"models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([{path}])"
        use = '    features = model.extract_features(waveform, None, mask=False)["x"]'
    else:
        imports += "from omegaconf import open_dict\n"
        load = f"""
DICT_FOLDER = "."  # the folder of dict.ltr.txt, the CTC head's units
state = checkpoint_utils.load_checkpoint_to_cpu({path})
with open_dict(state["cfg"]):
    state["cfg"].task.data = DICT_FOLDER
    state["cfg"].model.w2v_args.task.data = DICT_FOLDER
models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([{path}], state=state)
"""
        use = '    emissions = model(source=waveform, padding_mask=None)["encoder_out"]  # T, B, V'
    return imports.strip() + "\n\n" + load.strip() + "\nmodel = models[0].eval()\n" + run + use


def _fairseq(checkpoint: LoadedCheckpoint, target: str, location: str) -> str:
    if target != "fairseq":
        return _convert_hint(checkpoint, location, "fairseq")
    notes = []
    if checkpoint.ctc_head is not None:
        notes.append(
            "A fine-tuned (`wav2vec_ctc`) file: fairseq's `audio_finetuning` task reads the CTC "
            "head's units from `dict.ltr.txt` in its `data` folder (fairseq's LibriSpeech letter "
            "dictionary for a 32-output head; `LetterVocabulary.write_dict` of "
            "`d2v_speech.asr.vocabulary` writes one)."
        )
    aqc = sorted({"quantizer", "project_q", "contr_proj"} & set(checkpoint.heads))
    if aqc:
        notes.append(
            f"This file carries the data2vec-aqc heads ({', '.join(aqc)}): load it with the "
            "data2vec-aqc fork's fairseq; upstream fairseq's `data2vec_audio` (checked: "
            "fairseq-fixed 0.12.3.1) has no quantizer and refuses them in its strict load."
        )
    notes.append(_code("python", _fairseq_code(checkpoint, json.dumps(location))))
    return "\n\n".join(notes)


def _s3prl(checkpoint: LoadedCheckpoint, target: str, location: str) -> str:
    if target != "s3prl":
        return _convert_hint(checkpoint, location, "s3prl")
    code = f"""
import torch
from s3prl.upstream.data2vec.expert import UpstreamExpert

upstream = UpstreamExpert({json.dumps(location)}).eval()
with torch.no_grad():
    hidden_states = upstream([torch.randn(16000)])["hidden_states"]  # 16 kHz waveforms in
"""
    return (
        "s3prl's own copy of data2vec reads the file (no fairseq needed) and normalises the "
        "waveforms as `task_cfg.normalize` says.\n\n" + _code("python", code) + "\n\nFor SUPERB: "
        f'`S3PRLUpstream("data2vec_custom", path_or_url={json.dumps(location)})` of `s3prl.nn` '
        "(on torchaudio 2.11 stub `torchaudio.set_audio_backend` and `torchaudio.sox_effects` "
        "before importing it, as d2v_speech's README shows), or s3prl's `run_downstream.py -m "
        f"train -u data2vec_custom -k {shlex.quote(location)} -d <task> -n <name>`."
    )


def _speechbrain(location: str) -> str:
    path = json.dumps(location)
    recipe = f"""
encoder: !new:d2v_speech.integrations.speechbrain_lobe.Data2VecEncoder
    source: {path}
    save_path: !ref <save_folder>/d2v_checkpoint
    output_norm: True
    freeze: False
    freeze_feature_extractor: True
"""
    code = f"""
import torch
from d2v_speech.integrations.speechbrain_lobe import Data2VecEncoder

lobe = Data2VecEncoder({path}, freeze=True, output_all_hiddens=True)
wavs, wav_lens = torch.randn(2, 16000), torch.tensor([1.0, 0.75])  # 16 kHz, relative lengths
hidden_states = lobe(wavs, wav_lens)  # (layers + 1, batch, frames, width)
"""
    return (
        "d2v_speech's lobe takes the arguments of SpeechBrain's wav2vec2 lobe and uses the "
        "encoder only; `hparams/speechbrain/ctc_with_d2v_lobe.yaml` of d2v_speech plugs it into "
        "SpeechBrain's LibriSpeech CTC recipe. In a recipe YAML:\n\n"
        + _code("yaml", recipe)
        + "\n\nIn Python:\n\n"
        + _code("python", code)
    )


def _d2v_speech(
    checkpoint: LoadedCheckpoint, location: str, vocabulary: Sequence[str] | None
) -> str:
    path = json.dumps(location)
    code = f"""
from d2v_speech.checkpoints import load_checkpoint

checkpoint = load_checkpoint({path})
encoder = checkpoint.build_encoder().eval()  # d2v_speech.nn.Data2VecAudioModel
"""
    head = checkpoint.ctc_head
    if head is not None and (vocabulary is not None or len(head["bias"]) == FAIRSEQ_LETTER_HEAD):
        code += f"""
import torch
import d2v_speech

print(d2v_speech.transcribe([torch.zeros(16000)], {path}))  # file paths or 16 kHz waveforms
"""
    commands = (
        f"python recipes/LibriSpeech/finetune.py hparams/finetune_ctc.yaml "
        f"--pretrained={shlex.quote(location)}\n"
        f"python -m d2v_speech.checkpoints inspect {shlex.quote(location)}"
    )
    return (
        _code("python", code)
        + "\n\nFrom a d2v_speech checkout, fine-tune it (a fresh CTC head over this encoder) "
        "or print what it holds:\n\n" + _code("bash", commands)
    )


def how_to_load(
    checkpoint: LoadedCheckpoint,
    target: str,
    location: str,
    vocabulary: Sequence[str] | None = None,
) -> str:
    """The card's "How to load it" section for an export in `target` format at `location`."""
    tools = [
        ("transformers", _transformers(checkpoint, target, location, vocabulary)),
        ("fairseq", _fairseq(checkpoint, target, location)),
        ("s3prl", _s3prl(checkpoint, target, location)),
        ("SpeechBrain", _speechbrain(location)),
        ("d2v_speech", _d2v_speech(checkpoint, location, vocabulary)),
    ]
    return "## How to load it\n\n" + "\n\n".join(f"### {name}\n\n{text}" for name, text in tools)
