"""Shared fixtures for the ASR tests: micro encoders, 32 short utterances, a tiny corpus."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.nn import EncoderConfig
from d2v_speech.synthetic.fortune_sentences import load_sentences
from d2v_speech.synthetic.librispeech.generate import generate_corpus
from d2v_speech.synthetic.tts import render_utterance
from d2v_speech.synthetic.voices import build_speakers

CSV_FIELDS = ["ID", "duration", "wav", "spk_id", "wrd"]
NUM_SHORT = 32


def micro_config(**overrides) -> EncoderConfig:
    """BASE conv strides (320x, 400-sample receptive field) at 32 channels; 1 pre-LN layer of 32."""
    values = {
        "conv_layers": [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        "embed_dim": 32,
        "num_layers": 1,
        "num_heads": 4,
        "ffn_dim": 64,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 5,
        "pos_conv_groups": 4,
        "layerdrop": 0.0,
        "layer_norm_first": True,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: one thread per test keeps timings stable and results bitwise repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def letters() -> LetterVocabulary:
    return LetterVocabulary()


@pytest.fixture(scope="session")
def short_set(tmp_path_factory) -> Path:
    """CSV of 32 utterances of 4 words (about 1-1.5 s each) by 4 espeak voices, 16 kHz FLAC."""
    folder = tmp_path_factory.mktemp("short")
    sentences = [s for s in load_sentences(min_words=4, max_words=4) if len(s) <= 22]
    rng = np.random.default_rng(0)
    chosen = [sentences[i] for i in rng.choice(len(sentences), NUM_SHORT, replace=False)]
    speakers = [s for s in build_speakers(rng) if s.engine == "espeak-ng" and s.group == "seen"][:4]
    rows = []
    for index, text in enumerate(chosen):
        speaker = speakers[index % len(speakers)]
        samples = render_utterance(speaker, text, degraded=False, rng=rng)
        path = folder / f"short-{index:02d}.flac"
        sf.write(path, samples, 16000, format="FLAC", subtype="PCM_16")
        rows.append(
            {
                "ID": f"short-{index:02d}",
                "duration": round(len(samples) / 16000, 3),
                "wav": str(path),
                "spk_id": speaker.speaker_id,
                "wrd": text,
            }
        )
    return write_csv(folder / "short.csv", rows)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A tiny embedded corpus in the LibriSpeech + Libri-light layouts (about 6 s to make)."""
    out = tmp_path_factory.mktemp("corpus") / "MiniLibriSpeech"
    generate_corpus(out, hours=0.02, seed=0, jobs=2, progress=False,
                    pool_hours=0.02, other_pool_fraction=0.0, pool_voices=0)  # fmt: skip
    return out


# ---------------------------------------------------------------------------- Brain harness
def make_brain(
    out: Path,
    model,
    lr: float,
    max_updates: int,
    dev_loss_set=None,
    dev_loss_interval: int = 0,
    log_interval: int = 5,
):
    """A FineTuneBrain as the recipe wires it (checkpointer, RNG states, logs), on the CPU."""
    from functools import partial

    from speechbrain.utils.epoch_loop import EpochCounter
    from speechbrain.utils.train_logger import FileTrainLogger

    from d2v_speech.training.checkpointer import AtomicCheckpointer
    from d2v_speech.training.finetune_brain import FineTuneBrain, tri_stage_schedule
    from d2v_speech.training.rng import RNGStates

    counter = EpochCounter(1000)
    checkpointer = AtomicCheckpointer(
        out / "save", {"model": model, "counter": counter, "rng": RNGStates()}
    )
    hparams = {
        "model": model,
        "lr_scheduler": tri_stage_schedule(lr, 1000, (0.01, 0.99, 0.0)),
        "log_interval": log_interval,
        "dev_loss_interval": dev_loss_interval,
        "dev_loss_batch_size": 8,
        "step_log_file": str(out / "train_steps.jsonl"),
        "curves_png": str(out / "curves.png"),
        "train_logger": FileTrainLogger(str(out / "train_log.txt")),
        "epoch_counter": counter,
    }
    run_opts = {
        "device": "cpu",
        "noprogressbar": True,
        "max_grad_norm": 5.0,
        "optimizer_step_limit": max_updates,
    }
    return FineTuneBrain(
        modules={"encoder": model.encoder, "head": model.head},
        opt_class=partial(torch.optim.AdamW, lr=lr, betas=(0.9, 0.98), weight_decay=0.0),
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=checkpointer,
        dev_loss_set=dev_loss_set,
    )


def small_pre_ln_config(**overrides) -> EncoderConfig:
    """A pre-LN encoder small enough to memorise 32 utterances within a test (0.5 M weights)."""
    values = {
        "conv_layers": [(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2,
        "embed_dim": 128,
        "num_layers": 2,
        "num_heads": 4,
        "ffn_dim": 512,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "layerdrop": 0.0,
        "pos_conv_depth": 2,
        "pos_conv_kernel": 19,
        "pos_conv_groups": 16,
        "layer_norm_first": True,
    }
    values.update(overrides)
    return EncoderConfig(**values)


def overfit(short_set: Path, out: Path, config: EncoderConfig, updates: int = 40):
    """From scratch, full-batch updates on the 32 short utterances: (output folder, model)."""
    from d2v_speech.asr.ctc_model import CTCModel
    from d2v_speech.asr.data import CTCCollate, load_asr_dataset
    from d2v_speech.nn import Data2VecAudioModel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocabulary = LetterVocabulary()
    model = CTCModel(
        Data2VecAudioModel(config),
        len(vocabulary),
        vocabulary=vocabulary,
        mask_prob=0.0,
        mask_channel_prob=0.0,
        freeze_feature_encoder=False,
    )
    train = load_asr_dataset([short_set], {}, vocabulary, True, model.config.receptive_field)
    dev = train.filtered_sorted(select_n=8)
    brain = make_brain(out, model, 2e-3, updates, dev_loss_set=dev, dev_loss_interval=20)
    brain.fit(
        brain.hparams.epoch_counter,
        train,
        train_loader_kwargs={"batch_size": NUM_SHORT, "collate_fn": CTCCollate()},
    )
    torch.set_num_threads(threads)
    return out, model.eval()


@pytest.fixture(scope="session")
def overfit_run(short_set, tmp_path_factory):
    """A pre-LN model after 40 full-batch updates on the 32 short utterances."""
    return overfit(short_set, tmp_path_factory.mktemp("overfit"), small_pre_ln_config())
