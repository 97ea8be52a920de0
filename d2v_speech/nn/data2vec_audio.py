"""The data2vec audio network: conv feature encoder -> projection -> (mask) -> Transformer.

State-dict keys equal those of Hugging Face `transformers.Data2VecAudioModel` (with
`masked_spec_embed` always present), so HF weights load without renaming.

Example
-------
>>> import torch
>>> from d2v_speech.nn import Data2VecAudioModel, EncoderConfig
>>> config = EncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2)], embed_dim=32, num_layers=2,
...                        num_heads=4, ffn_dim=64, pos_conv_depth=2, pos_conv_kernel=5,
...                        pos_conv_groups=4)
>>> model = Data2VecAudioModel(config).eval()
>>> out = model(torch.randn(2, 1600), sample_lengths=torch.tensor([1600, 1000]))
>>> out.last_hidden_state.shape, out.padding_mask.sum(dim=1).tolist()
(torch.Size([2, 159, 32]), [0, 60])
"""

from __future__ import annotations

import torch
from torch import nn

from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.feature_encoder import FeatureEncoder, FeatureProjection
from d2v_speech.nn.transformer import EncoderOutput, TransformerEncoder

__all__ = ["Data2VecAudioModel", "EncoderOutput"]


class Data2VecAudioModel(nn.Module):
    """data2vec / data2vec-aqc speech encoder (no pretraining or CTC head).

    Parameters
    ----------
    config : EncoderConfig
        Architecture; see `hparams/model/{base,large,tiny}.yaml` for presets.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.masked_spec_embed = nn.Parameter(torch.empty(config.embed_dim).uniform_())
        self.encoder = TransformerEncoder(config)
        for block in self.feature_extractor.conv_layers:
            nn.init.kaiming_normal_(block.conv.weight)

    # ----------------------------------------------------------------- lengths
    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames per utterance by the conv formula; (B,) samples -> (B,) frames."""
        return self.feature_extractor.output_lengths(sample_lengths)

    def frame_padding_mask(
        self, sample_lengths: torch.Tensor | None, num_frames: int
    ) -> torch.Tensor | None:
        """(B, num_frames) bool mask, True = padded frame; None when `sample_lengths` is None."""
        if sample_lengths is None:
            return None
        lengths = self.frame_lengths(sample_lengths)
        frames = torch.arange(num_frames, device=lengths.device)
        return frames.unsqueeze(0) >= lengths.unsqueeze(1)

    def _check_inputs(self, wav: torch.Tensor, sample_lengths: torch.Tensor | None) -> None:
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform batch of shape (B, S), got {tuple(wav.shape)}")
        if not wav.is_floating_point():
            raise ValueError(f"waveform must be floating point, got {wav.dtype}")
        if sample_lengths is not None:
            if sample_lengths.is_floating_point() or sample_lengths.dtype == torch.bool:
                raise ValueError(
                    "sample_lengths must hold integer sample counts (convert SpeechBrain's "
                    "relative lengths with (rel * S).round().long())"
                )
            if tuple(sample_lengths.shape) != (wav.shape[0],):
                raise ValueError(
                    f"sample_lengths must have shape ({wav.shape[0]},), "
                    f"got {tuple(sample_lengths.shape)}"
                )
            if int(sample_lengths.max()) > wav.shape[1]:
                raise ValueError(
                    f"sample_lengths max {int(sample_lengths.max())} exceeds the "
                    f"{wav.shape[1]} samples of the batch"
                )
        shortest = wav.shape[1] if sample_lengths is None else int(sample_lengths.min())
        if shortest < self.config.receptive_field:
            raise ValueError(
                f"input of {shortest} samples is shorter than the receptive field "
                f"({self.config.receptive_field} samples) and yields no frame"
            )

    # ---------------------------------------------------------------- pieces
    def extract_cnn_features(
        self, wav: torch.Tensor, sample_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """wav (B, S), sample_lengths (B,) -> CNN features (B, T, C_cnn), padding_mask (B, T)."""
        self._check_inputs(wav, sample_lengths)
        features = self.feature_extractor(wav)
        return features, self.frame_padding_mask(sample_lengths, features.shape[1])

    def project_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C_cnn) -> (LayerNorm-ed (B, T, C_cnn), projected (B, T, D)); no dropout."""
        return self.feature_projection(features)

    def apply_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Replace masked frames by `masked_spec_embed`, out of place.

        x (B, T, D), mask (B, T) bool (True = masked) -> (B, T, D).
        """
        if mask.dtype != torch.bool or mask.shape != x.shape[:2]:
            raise ValueError(
                f"mask must be bool of shape {tuple(x.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        return torch.where(mask.unsqueeze(-1), self.masked_spec_embed.to(x.dtype), x)

    # --------------------------------------------------------------- forward
    def forward(
        self,
        wav: torch.Tensor,
        sample_lengths: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Full path: CNN -> LayerNorm + projection -> feature dropout -> (mask) -> encoder.

        Parameters
        ----------
        wav : Tensor (B, S)
            Waveforms, zero padded on the right.
        sample_lengths : LongTensor (B,), optional
            Valid samples per utterance; None means no padding.
        mask : BoolTensor (B, T), optional
            Frames to replace by the mask embedding; nothing is masked when None.
        layer_keep : BoolTensor (L,), optional
            LayerDrop decision per layer (training only); drawn from torch's RNG when None.
        """
        features, padding_mask = self.extract_cnn_features(wav, sample_lengths)
        normed, projected = self.project_features(features)
        # dropout before masking, as fairseq (dropout_input) and HF (feat_proj_dropout)
        x = self.feature_projection.dropout(projected)
        if mask is not None:
            x = self.apply_mask(x, mask)
        elif self.training and self.masked_spec_embed.requires_grad:
            # keep the unused mask embedding in the graph so DDP needs no unused-parameter scan
            x = x + 0.0 * self.masked_spec_embed.sum()
        output = self.encoder(x, padding_mask, layer_keep)
        output.extract_features = normed
        output.projected_features = projected
        return output
