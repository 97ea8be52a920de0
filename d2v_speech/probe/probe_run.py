"""Train and score the two probes on one frozen encoder: CTC (characters) and speaker ID.

    results = run_probes(encoder, normalize=True, ctc_train=..., ctc_eval={...},
                         speakers=..., settings=ProbeSettings())

Items are (utt_id, wav path, label) triples; the labels are transcripts for CTC and speaker
ids for speaker ID. Each probe's head and layer weights start from ``settings.seed``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from speechbrain.utils.epoch_loop import EpochCounter

from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.probe.featurizer import LayerWeightedSum
from d2v_speech.probe.heads import CTCProbeHead, SpeakerProbeHead
from d2v_speech.probe.layer_cache import CachedUtterance, collate_layers, encode_layers
from d2v_speech.probe.probe_brain import CTCProbeBrain, SpeakerProbeBrain

__all__ = [
    "ProbeSettings",
    "split_by_speaker",
    "run_probes",
    "load_frozen_encoder",
    "results_markdown",
]

Item = tuple[str, str, object]


@dataclass(frozen=True)
class ProbeSettings:
    ctc_updates: int = 1000
    ctc_batch_size: int = 8
    ctc_lr: float = 2e-3
    ctc_hidden: int = 128
    speaker_updates: int = 600
    speaker_batch_size: int = 32
    speaker_lr: float = 2e-3
    seed: int = 1


def split_by_speaker(
    rows: Mapping[str, Mapping[str, str]], held_out_every: int = 4, per_speaker: int | None = None
) -> tuple[list[Item], list[Item], list[str]]:
    """Speaker-ID train and test items: of each speaker's utterances (at most ``per_speaker``,
    chosen by a hash of the id, so the choice does not depend on the CSV's order), every
    ``held_out_every``-th goes to the test side. Labels are indices into the returned speakers."""
    by_speaker: dict[str, list[str]] = {}
    for utt_id in sorted(rows, key=lambda u: zlib.crc32(u.encode())):
        by_speaker.setdefault(rows[utt_id]["spk_id"], []).append(utt_id)
    speakers = sorted(by_speaker)
    train, test = [], []
    for index, speaker in enumerate(speakers):
        chosen = by_speaker[speaker][:per_speaker]
        if len(chosen) < 2:
            raise ValueError(f"speaker {speaker} has {len(chosen)} utterance(s); need 2 or more")
        for k, utt_id in enumerate(chosen):
            side = test if k % held_out_every == held_out_every - 1 else train
            side.append((utt_id, rows[utt_id]["wav"], index))
    return train, test, speakers


def _loader(cached: Sequence[CachedUtterance], batch_size: int, shuffle: bool, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        list(cached), batch_size=batch_size, shuffle=shuffle, collate_fn=collate_layers,
        generator=generator,
    )  # fmt: skip


def _train(brain, cached_train, updates: int, batch_size: int, seed: int) -> None:
    loader = _loader(cached_train, batch_size, True, seed)
    brain.fit(EpochCounter(limit=math.ceil(updates / len(loader))), loader)


def _brain(brain_class, head, num_layers: int, lr: float, hparams: dict):
    return brain_class(
        modules={"featurizer": LayerWeightedSum(num_layers), "head": head},
        opt_class=lambda params: torch.optim.AdamW(params, lr=lr),
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )


def run_probes(
    encoder: Data2VecAudioModel,
    normalize: bool,
    ctc_train: Sequence[Item],
    ctc_eval: Mapping[str, Sequence[Item]],
    speakers: tuple[Sequence[Item], Sequence[Item]],
    settings: ProbeSettings,
) -> dict:
    """Both probes on one encoder -> {"ctc": {set: {cer, wer}}, "speaker": {accuracy}, layer
    weights, settings}."""
    num_layers = encoder.config.num_layers + 1
    dim = encoder.config.embed_dim
    vocabulary = LetterVocabulary()
    sets = {"ctc_train": ctc_train, **ctc_eval}
    sets.update(speaker_train=speakers[0], speaker_test=speakers[1])
    cache = {name: encode_layers(encoder, items, normalize, name) for name, items in sets.items()}
    s = settings
    torch.manual_seed(s.seed)
    head = CTCProbeHead(dim, len(vocabulary), hidden=s.ctc_hidden)
    ctc = _brain(CTCProbeBrain, head, num_layers, s.ctc_lr, {"vocabulary": vocabulary})
    _train(ctc, cache["ctc_train"], s.ctc_updates, s.ctc_batch_size, s.seed)
    ctc_scores = {name: ctc.score(_loader(cache[name], 8, False, 0)) for name in ctc_eval}

    torch.manual_seed(s.seed)
    num_speakers = 1 + max(label for *_, label in speakers[0])
    speaker = _brain(SpeakerProbeBrain, SpeakerProbeHead(dim, num_speakers), num_layers,
                     s.speaker_lr, {})  # fmt: skip
    _train(speaker, cache["speaker_train"], s.speaker_updates, s.speaker_batch_size, s.seed)
    speaker_scores = speaker.score(_loader(cache["speaker_test"], 32, False, 0))
    return {
        "ctc": ctc_scores,
        "ctc_layer_weights": ctc.layer_weights(),
        "speaker": {
            **speaker_scores,
            "speakers": num_speakers,
            "test_utterances": len(speakers[1]),
        },  # fmt: skip
        "speaker_layer_weights": speaker.layer_weights(),
        "settings": asdict(settings),
    }


def load_frozen_encoder(pretrained: str, model_preset: str) -> tuple[Data2VecAudioModel, bool]:
    """(encoder with frozen weights, normalize) from any checkpoint `load_checkpoint` reads, or a
    random `model_preset` encoder for "none" (the scratch reference)."""
    from d2v_speech.asr.model_io import is_scratch
    from d2v_speech.checkpoints import load_checkpoint
    from d2v_speech.nn.presets import load_model_config

    if is_scratch(pretrained):
        encoder, normalize = Data2VecAudioModel(load_model_config(model_preset)), True
    else:
        checkpoint = load_checkpoint(pretrained)
        encoder = checkpoint.build_encoder()
        normalize = True if checkpoint.normalize is None else checkpoint.normalize
    encoder.requires_grad_(False)
    return encoder, normalize


def results_markdown(results: Mapping) -> str:
    """A short markdown summary of :func:`run_probes`' results."""
    lines = ["# Probe results", "", f"- pretrained: {results.get('pretrained', '?')}"]
    for name, rates in results["ctc"].items():
        lines.append(f"- CTC probe, {name}: CER {rates['cer']} %, WER {rates['wer']} %")
    speaker = results["speaker"]
    lines.append(
        f"- speaker ID ({speaker['speakers']} speakers, {speaker['test_utterances']} test "
        f"utterances): accuracy {speaker['accuracy']} %"
    )
    lines.append(f"- layer weights, CTC: {results['ctc_layer_weights']}")
    lines.append(f"- layer weights, speaker: {results['speaker_layer_weights']}")
    return "\n".join(lines) + "\n"
