"""CTC fine-tuning model: data2vec encoder (+ masks) -> dropout -> Linear -> log-softmax.

Follows fairseq's `Wav2VecCtc` fine-tuning:

- the CNN feature encoder is frozen (`feature_grad_mult: 0.0`): no gradient, run under no_grad;
- the whole encoder (projection, positional conv, Transformer) is frozen for the first
  `freeze_transformer_updates` updates (`freeze_finetune_updates`): it runs under no_grad, so
  its parameters get no gradient at all and Adam leaves them (and its step count) untouched;
- in training, spans of frames are replaced by the mask embedding (`mask_prob`, `mask_length`),
  then spans of feature channels are zeroed for the whole utterance (`mask_channel_*`);
- the head is a single Linear (Xavier-uniform weight, zero bias) after `final_dropout`; the
  log-softmax runs in fp32.

The encoder and the head are separate modules so that a Brain can give them to DDP separately:
an encoder called under no_grad then owes DDP no gradient (no `find_unused_parameters`).

Example
-------
>>> import torch
>>> from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
>>> config = EncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2)], embed_dim=32, num_layers=1,
...                        num_heads=4, ffn_dim=64, pos_conv_depth=2, pos_conv_kernel=5,
...                        pos_conv_groups=4)
>>> model = CTCModel(Data2VecAudioModel(config), vocab_size=32, mask_channel_length=4).eval()
>>> out = model(torch.randn(2, 1600), torch.tensor([1600, 1000]))
>>> out.log_probs.shape, out.frame_lengths.tolist()
(torch.Size([2, 159, 32]), [159, 99])
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from d2v_speech.nn.data2vec_audio import Data2VecAudioModel
from d2v_speech.ssl.masking import compute_channel_mask, compute_span_mask

__all__ = [
    "CTCHead",
    "CTCModel",
    "CTCOutput",
    "MODEL_FORMAT",
    "MaskedEncoder",
    "ctc_forward",
    "ctc_loss_per_utterance",
]

#: tag in the extra state of a saved `CTCModel`, so loaders recognise fine-tuned checkpoints
MODEL_FORMAT = "d2v_speech.ctc_model"


@dataclass
class CTCOutput:
    """log_probs (B, T, V) fp32 log-softmax; frame_lengths (B,) valid frames per utterance."""

    log_probs: torch.Tensor
    frame_lengths: torch.Tensor


class MaskedEncoder(nn.Module):
    """`Data2VecAudioModel` with fine-tuning time/channel masking and a frozen CNN.

    Parameters
    ----------
    model : Data2VecAudioModel
    mask_prob, mask_length, mask_min_masks : float, int, int
        Time masking (fairseq fine-tuning: 0.65, 10, min_masks 2), training only.
    require_same_masks : bool
        Trim every row to the batch's smallest masked count (fairseq's default); False draws each
        row independently.
    mask_channel_prob, mask_channel_length, mask_channel_min_masks : float, int, int
        Channel masking over the D projected features (fork: 0.25-0.5, 64, 0).
    freeze_feature_encoder : bool
        Keep the CNN frozen (requires_grad False, run under no_grad).
    """

    def __init__(
        self,
        model: Data2VecAudioModel,
        mask_prob: float = 0.65,
        mask_length: int = 10,
        mask_min_masks: int = 2,
        require_same_masks: bool = False,
        mask_channel_prob: float = 0.5,
        mask_channel_length: int = 64,
        mask_channel_min_masks: int = 0,
        freeze_feature_encoder: bool = True,
    ):
        super().__init__()
        if mask_channel_prob > 0 and mask_channel_length > model.config.embed_dim:
            raise ValueError(
                f"mask_channel_length={mask_channel_length} exceeds the "
                f"{model.config.embed_dim} feature channels"
            )
        self.model = model
        self.mask_prob = mask_prob
        self.mask_length = mask_length
        self.mask_min_masks = mask_min_masks
        self.require_same_masks = require_same_masks
        self.mask_channel_prob = mask_channel_prob
        self.mask_channel_length = mask_channel_length
        self.mask_channel_min_masks = mask_channel_min_masks
        self.freeze_feature_encoder = freeze_feature_encoder
        if freeze_feature_encoder:
            model.feature_extractor.requires_grad_(False)

    def time_mask(self, frame_lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T) bool span mask; rows with fewer than 2 valid frames stay unmasked."""
        mask = torch.zeros(len(frame_lengths), num_frames, dtype=torch.bool)
        if self.mask_prob <= 0:
            return mask.to(frame_lengths.device)
        # a row needs 2 frames to keep one visible; shorter rows are left alone
        rows = (frame_lengths >= 2).nonzero().flatten().cpu()
        if len(rows):
            mask[rows] = compute_span_mask(
                (len(rows), num_frames),
                frame_lengths.cpu()[rows],
                mask_prob=self.mask_prob,
                mask_length=self.mask_length,
                min_masks=self.mask_min_masks,
                require_same_masks=self.require_same_masks,
            )
        return mask.to(frame_lengths.device)

    def channel_mask(self, batch_size: int, num_channels: int) -> torch.Tensor | None:
        """(B, D) bool, True = channel zeroed for the whole utterance; None when disabled."""
        if self.mask_channel_prob <= 0:
            return None
        return compute_channel_mask(
            batch_size,
            num_channels,
            self.mask_channel_prob,
            self.mask_channel_length,
            self.mask_channel_min_masks,
        )

    def forward(
        self, wav: torch.Tensor, sample_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wav (B, S), sample_lengths (B,) -> (hidden (B, T, D), frame_lengths (B,))."""
        frozen_cnn = torch.no_grad() if self.freeze_feature_encoder else contextlib.nullcontext()
        with frozen_cnn:
            features, padding_mask = self.model.extract_cnn_features(wav, sample_lengths)
        batch, num_frames = features.shape[:2]
        if sample_lengths is None:
            frame_lengths = torch.full((batch,), num_frames, device=wav.device)
        else:
            frame_lengths = self.model.frame_lengths(sample_lengths)
        _, x = self.model.project_features(features)
        x = self.model.feature_projection.dropout(x)
        if self.training:
            # always through apply_mask so the mask embedding stays in the graph (DDP)
            x = self.model.apply_mask(x, self.time_mask(frame_lengths, num_frames))
            channels = self.channel_mask(batch, x.shape[-1])
            if channels is not None:
                x = x.masked_fill(channels.to(x.device)[:, None, :], 0.0)
        hidden = self.model.encoder(x, padding_mask).last_hidden_state
        return hidden, frame_lengths


class CTCHead(nn.Module):
    """Dropout -> Linear(D, V) -> fp32 log-softmax; (B, T, D) -> (B, T, V)."""

    def __init__(self, embed_dim: int, vocab_size: int, final_dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(final_dropout)
        self.proj = nn.Linear(embed_dim, vocab_size)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.proj(self.dropout(hidden))
        return F.log_softmax(logits.float(), dim=-1)


def ctc_forward(
    encoder: nn.Module,
    head: nn.Module,
    wav: torch.Tensor,
    sample_lengths: torch.Tensor | None = None,
    transformer_frozen: bool = False,
) -> CTCOutput:
    """Run encoder then head; the encoder under no_grad while it is frozen.

    `encoder` / `head` may be DDP wrappers of `MaskedEncoder` / `CTCHead`.
    """
    frozen = torch.no_grad() if transformer_frozen else contextlib.nullcontext()
    with frozen:
        hidden, frame_lengths = encoder(wav, sample_lengths)
    return CTCOutput(log_probs=head(hidden), frame_lengths=frame_lengths)


def ctc_loss_per_utterance(
    log_probs: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank_index: int = 0,
) -> torch.Tensor:
    """CTC negative log-likelihood per utterance (B,), in nats; infeasible alignments give 0.

    log_probs (B, T, V); targets (B, U) padded ids; lengths are absolute counts.
    """
    return F.ctc_loss(
        log_probs.transpose(0, 1),
        targets,
        frame_lengths,
        target_lengths,
        blank=blank_index,
        reduction="none",
        zero_infinity=True,
    )


class CTCModel(nn.Module):
    """Encoder + CTC head, with what a decoder needs to read it back (see module docstring).

    Parameters
    ----------
    encoder : Data2VecAudioModel
        Pretrained (or randomly initialised) encoder.
    vocab_size : int
        Output units, blank (index 0) included.
    final_dropout : float
        Dropout before the output layer (fairseq `final_dropout`).
    freeze_transformer_updates : int
        Updates during which the encoder is frozen and only the head trains.
    vocabulary : LetterVocabulary or SentencePieceVocabulary, optional
        Saved with the weights (extra state) so that the checkpoint decodes on its own.
    normalize : bool
        Whether inputs are normalised to zero mean / unit variance per utterance.
    info : dict, optional
        Free-form provenance saved with the weights (train split, pretrained source, ...).
    **mask_kwargs
        Forwarded to `MaskedEncoder` (masking and CNN freezing).
    """

    def __init__(
        self,
        encoder: Data2VecAudioModel,
        vocab_size: int,
        final_dropout: float = 0.0,
        freeze_transformer_updates: int = 0,
        vocabulary: Any = None,
        normalize: bool = True,
        info: dict | None = None,
        **mask_kwargs: Any,
    ):
        super().__init__()
        if vocabulary is not None and len(vocabulary) != vocab_size:
            raise ValueError(f"vocab_size={vocab_size} but the vocabulary has {len(vocabulary)}")
        if freeze_transformer_updates < 0:
            raise ValueError(
                f"freeze_transformer_updates must be >= 0, got {freeze_transformer_updates}"
            )
        self.encoder = MaskedEncoder(encoder, **mask_kwargs)
        self.head = CTCHead(encoder.config.embed_dim, vocab_size, final_dropout)
        self.freeze_transformer_updates = freeze_transformer_updates
        self.vocabulary = vocabulary
        self.normalize = normalize
        self.info = dict(info or {})

    @property
    def config(self):
        """The encoder's `EncoderConfig`."""
        return self.encoder.model.config

    def transformer_frozen(self, num_updates: int) -> bool:
        """True while fewer than `freeze_transformer_updates` updates have been made."""
        return num_updates < self.freeze_transformer_updates

    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        transformer_frozen: bool = False,
    ) -> CTCOutput:
        """wav (B, S), sample_lengths (B,) -> `CTCOutput` (log_probs (B, T, V))."""
        return ctc_forward(self.encoder, self.head, wav, sample_lengths, transformer_frozen)

    # ------------------------------------------------------------ persistence
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            "vocabulary": None if self.vocabulary is None else self.vocabulary.to_state(),
            "normalize": self.normalize,
            "info": self.info,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise ValueError("not the extra state of a d2v_speech CTCModel")
        if state["config"] != self.config.to_dict():
            raise ValueError(
                "the checkpoint's encoder architecture differs from this model's: "
                f"{state['config']} vs {self.config.to_dict()}"
            )
        from d2v_speech.asr.vocabulary import vocabulary_from_state

        if state.get("vocabulary") is not None:
            self.vocabulary = vocabulary_from_state(state["vocabulary"])
        self.normalize = bool(state.get("normalize", True))
        self.info = dict(state.get("info") or {})
