"""Transformer encoder of data2vec audio: positional conv, LayerNorm and post-/pre-LN layers.

Every layer also returns its feed-forward output before dropout, residual and LayerNorm (the
data2vec regression target). Module names follow Hugging Face `Data2VecAudioEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from d2v_speech.nn.alibi import alibi_bias, alibi_slopes
from d2v_speech.nn.config import EncoderConfig
from d2v_speech.nn.positional import PositionalConvEmbedding


@dataclass
class EncoderOutput:
    """Outputs of `TransformerEncoder` / `Data2VecAudioModel` as named fields.

    Attributes
    ----------
    last_hidden_state : Tensor (B, T, D)
        Output of the last layer (after the final LayerNorm for pre-LN models).
    hidden_states : tuple of L + 1 Tensors (B, T, D)
        Input of layer 0 (after `encoder.layer_norm` for post-LN), then the output of every
        layer; as in Hugging Face, the last entry equals `last_hidden_state`. A layer skipped by
        LayerDrop repeats its input.
    ffn_outputs : tuple of L Tensors (B, T, D) or None
        Each layer's FFN output (fc2 / `output_dense`) before dropout, residual and LayerNorm;
        None for a layer skipped by LayerDrop.
    padding_mask : BoolTensor (B, T) or None
        True marks a padded frame.
    extract_features : Tensor (B, T, C_cnn) or None
        Post-LayerNorm CNN features (the input of the aqc quantizer); set by `Data2VecAudioModel`.
    projected_features : Tensor (B, T, D) or None
        Projected CNN features before masking and dropout (the teacher input).
    """

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    ffn_outputs: tuple[torch.Tensor | None, ...]
    padding_mask: torch.Tensor | None
    extract_features: torch.Tensor | None = None
    projected_features: torch.Tensor | None = None


class SelfAttention(nn.Module):
    """Multi-head self-attention via `F.scaled_dot_product_attention`; (B, T, D) -> (B, T, D)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        return x.view(batch, frames, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D); attend (B, 1, 1, T) bool (True = key may be attended to) or an additive
        float bias (B, H, T, T) (ALiBi, with -inf on padded keys)."""
        batch, frames, dim = x.shape
        query = self._split_heads(self.q_proj(x))
        key = self._split_heads(self.k_proj(x))
        value = self._split_heads(self.v_proj(x))
        if attend is not None and attend.is_floating_point():
            attend = attend.to(query.dtype)
        # default scale 1/sqrt(head_dim), as fairseq and HF
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attend,
            dropout_p=self.dropout if self.training else 0.0,
        )
        context = context.transpose(1, 2).reshape(batch, frames, dim)
        return self.out_proj(context)


class FeedForward(nn.Module):
    """Linear(D -> F) -> GELU -> dropout -> Linear(F -> D); the layer applies the output dropout."""

    def __init__(self, embed_dim: int, ffn_dim: int, activation_dropout: float):
        super().__init__()
        self.intermediate_dense = nn.Linear(embed_dim, ffn_dim)
        self.intermediate_dropout = nn.Dropout(activation_dropout)
        self.output_dense = nn.Linear(ffn_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dense(x)


class EncoderLayer(nn.Module):
    """One Transformer layer, post-LN (data2vec) or pre-LN (`layer_norm_first`).

    post-LN: x = LN(x + drop(attn(x)));  f = FFN(x);  x = LN2(x + drop(f))
    pre-LN:  x = x + drop(attn(LN(x)));  f = FFN(LN2(x));  x = x + drop(f)
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.attention = SelfAttention(config.embed_dim, config.num_heads, config.attention_dropout)
        self.dropout = nn.Dropout(config.dropout)
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config.embed_dim, config.ffn_dim, config.activation_dropout)
        self.final_layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, attend: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> (output (B, T, D), FFN output before dropout/residual/LN (B, T, D))."""
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), attend))
            ffn_output = self.feed_forward(self.final_layer_norm(x))
            return x + self.dropout(ffn_output), ffn_output
        x = self.layer_norm(x + self.dropout(self.attention(x, attend)))
        ffn_output = self.feed_forward(x)
        return self.final_layer_norm(x + self.dropout(ffn_output)), ffn_output


def init_transformer_weights(module: nn.Module) -> None:
    """BERT-style init used by fairseq: Linear weights N(0, 0.02), zero biases."""
    for submodule in module.modules():
        if isinstance(submodule, nn.Linear):
            nn.init.normal_(submodule.weight, mean=0.0, std=0.02)
            if submodule.bias is not None:
                nn.init.zeros_(submodule.bias)


@dataclass
class KeptFrames:
    """Where the frames a sparse (data2vec 2.0) student encoded sit in the full sequence.

    Attributes
    ----------
    index : LongTensor (N, T_keep)
        Time index of each kept frame, in time order; rows with fewer kept frames are filled
        with index 0 after their last one.
    padding_mask : BoolTensor (N, T_keep)
        True where a row has no kept frame (the fill).
    """

    index: torch.Tensor
    padding_mask: torch.Tensor


def kept_frames(visible: torch.Tensor) -> KeptFrames:
    """visible (N, T) bool -> :class:`KeptFrames` of the True frames, in time order."""
    counts = visible.sum(dim=1)
    width = max(int(counts.max()), 1)
    # a stable sort puts every row's visible frames first, in time order
    order = torch.sort((~visible).to(torch.int8), dim=1, stable=True).indices[:, :width]
    fill = torch.arange(width, device=visible.device).unsqueeze(0) >= counts.unsqueeze(1)
    return KeptFrames(order.masked_fill(fill, 0), fill)


class TransformerEncoder(nn.Module):
    """Positional conv (one residual) -> LayerNorm -> dropout -> layers, with LayerDrop in training.

    For pre-LN models `layer_norm` is applied after the last layer instead of before the first.
    With `config.alibi` every layer's attention also gets data2vec 2.0's ALiBi bias, scaled by
    the learned `alibi_scale` (H,). :meth:`encode_kept` is data2vec 2.0's sparse student: the
    positional conv runs over the full sequence with hidden frames zeroed, the layers only over
    the visible frames.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(
            config.embed_dim,
            config.pos_conv_depth,
            config.pos_conv_kernel,
            config.pos_conv_groups,
            config.pos_conv_mask_padding,
        )
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([EncoderLayer(config) for _ in range(config.num_layers)])
        init_transformer_weights(self.layers)
        if config.alibi:
            self.alibi_scale = nn.Parameter(torch.ones(config.num_heads))
            self.register_buffer("alibi_slopes", alibi_slopes(config.num_heads), persistent=False)
        else:
            self.alibi_scale = None

    def _layers_to_run(self, layer_keep: torch.Tensor | None) -> list[bool] | None:
        """Per-layer keep flags in training, None (run all) in eval or without LayerDrop."""
        if not self.training:
            return None
        if layer_keep is not None:
            if layer_keep.dtype != torch.bool or tuple(layer_keep.shape) != (len(self.layers),):
                raise ValueError(
                    f"layer_keep must be a bool tensor of shape ({len(self.layers)},), "
                    f"got {layer_keep.dtype} {tuple(layer_keep.shape)}"
                )
            return layer_keep.tolist()
        if self.layerdrop <= 0.0:
            return None
        return (torch.rand(len(self.layers)) >= self.layerdrop).tolist()

    def _attention_mask(
        self, padding_mask: torch.Tensor | None, positions: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Bool (N, 1, 1, T) key mask without ALiBi, else a float (N, H, T, T) bias.

        positions (N, T) are the frames' time indices (ALiBi only); padding_mask (N, T).
        """
        attend = None
        if padding_mask is not None:
            # a row with no valid frame attends everywhere instead of producing NaN
            attend = ~padding_mask | padding_mask.all(dim=1, keepdim=True)
            attend = attend[:, None, None, :]
        if self.alibi_scale is None:
            return attend
        bias = alibi_bias(positions, self.alibi_slopes, self.alibi_scale)
        if attend is not None:
            bias = bias.masked_fill(~attend, float("-inf"))
        return bias

    def _run_layers(
        self,
        x: torch.Tensor,
        attend: torch.Tensor | None,
        layer_keep: torch.Tensor | None,
        padding_mask: torch.Tensor | None,
    ) -> EncoderOutput:
        """(LayerNorm if post-LN) -> dropout -> layers -> (final LayerNorm if pre-LN)."""
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        keep = self._layers_to_run(layer_keep)
        hidden_states = [x]
        ffn_outputs: list[torch.Tensor | None] = []
        for index, layer in enumerate(self.layers):
            if keep is None or keep[index]:
                x, ffn_output = layer(x, attend)
                ffn_outputs.append(ffn_output)
            else:
                # keep the skipped layer's parameters in the graph so DDP needs no unused-param scan
                x = x + 0.0 * sum(p.sum() for p in layer.parameters())
                ffn_outputs.append(None)
            hidden_states.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
            hidden_states[-1] = x
        return EncoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states),
            ffn_outputs=tuple(ffn_outputs),
            padding_mask=padding_mask,
        )

    def _check_padding_mask(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> None:
        if x.dim() != 3:
            raise ValueError(f"expected x of shape (B, T, D), got {tuple(x.shape)}")
        if padding_mask is not None and (
            padding_mask.shape != x.shape[:2] or padding_mask.dtype != torch.bool
        ):
            raise ValueError(
                f"padding_mask must be bool of shape {tuple(x.shape[:2])}, "
                f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """x (B, T, D); padding_mask (B, T) bool, True = padded; layer_keep (L,) bool (training)."""
        self._check_padding_mask(x, padding_mask)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        positions = None
        if self.alibi_scale is not None:
            positions = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        attend = self._attention_mask(padding_mask, positions)
        x = x + self.pos_conv_embed(x, padding_mask)
        return self._run_layers(x, attend, layer_keep, padding_mask)

    def encode_kept(
        self,
        x: torch.Tensor,
        visible: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        layer_keep: torch.Tensor | None = None,
    ) -> tuple[EncoderOutput, KeptFrames]:
        """data2vec 2.0's student: encode only the ``visible`` frames of each row.

        Arguments
        ---------
        x : Tensor (N, T, D)
            Full-length features (one row per masked clone).
        visible : BoolTensor (N, T)
            Frames the student sees (neither masked nor padded).
        padding_mask : BoolTensor (N, T), optional
            True = padded frame; the positional conv treats these as beyond the utterance.
        layer_keep : BoolTensor (L,), optional
            LayerDrop decisions (training only).

        Returns
        -------
        (EncoderOutput over the kept frames (N, T_keep, D) with its padding mask,
        :class:`KeptFrames`)
        """
        self._check_padding_mask(x, padding_mask)
        if visible.shape != x.shape[:2] or visible.dtype != torch.bool:
            raise ValueError(
                f"visible must be bool of shape {tuple(x.shape[:2])}, "
                f"got {visible.dtype} {tuple(visible.shape)}"
            )
        if padding_mask is not None:
            visible = visible & ~padding_mask
        # hidden frames are zeros for the positional conv (fairseq encoder_zero_mask)
        x = x * visible.unsqueeze(-1).to(x.dtype)
        x = x + self.pos_conv_embed(x, padding_mask)
        kept = kept_frames(visible)
        x = torch.gather(x, 1, kept.index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        attend = self._attention_mask(kept.padding_mask, kept.index)
        return self._run_layers(x, attend, layer_keep, kept.padding_mask), kept
