"""Gumbel-softmax product quantizer (wav2vec 2.0), as used by data2vec-aqc.

Parameter names match fairseq's ``GumbelVectorQuantizer`` so that the checkpoint keys
``quantizer.vars`` and ``quantizer.weight_proj.{weight,bias}`` load unchanged. The temperature
and the update counter live in the module's ``_extra_state`` entry of the state_dict, so a resumed
run continues the temperature schedule where it stopped (state_dict -> load_state_dict round-trips).
A fairseq checkpoint has no ``quantizer._extra_state`` key: load it with ``strict=False`` (or add
the key), and call :meth:`GumbelVectorQuantizer.set_num_updates` with the checkpoint's update count.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# fairseq adds this inside the log of the perplexity so that unused codes contribute 0, not NaN
_PERPLEXITY_EPS = 1e-7

GUMBEL_NOISE = ("exponential", "uniform")


def sample_gumbel(like: torch.Tensor, method: str = "exponential") -> torch.Tensor:
    """Standard Gumbel(0, 1) noise shaped like ``like`` (its dtype and device).

    "exponential" is ``-log(E)``, E ~ Exp(1): the draws of ``F.gumbel_softmax``, hence of fairseq
    and SpeechBrain (same seed, same noise). "uniform" is ``-log(-log(U))``, U ~ U[0, 1): the same
    law from a cheaper generator (on one CPU thread about 5x faster than ``exponential_``, which
    made the noise a third of the quantizer's time), but another random stream.
    """
    if method == "exponential":
        return -torch.empty_like(like).exponential_().log()
    if method == "uniform":
        return torch.rand_like(like).log_().neg_().log_().neg_()
    raise ValueError(f"gumbel noise must be one of {GUMBEL_NOISE}, got {method!r}")


def hard_gumbel_softmax(logits: torch.Tensor, tau: float, noise: str) -> torch.Tensor:
    """Straight-through hard Gumbel-softmax over the last dim: the forward value is the one-hot of
    argmax(logits + g), the gradient that of softmax((logits + g) / tau); (..., V) -> (..., V).
    With "exponential" noise it is ``F.gumbel_softmax(hard=True)`` to the bit (values and
    gradients), so the SpeechBrain comparison in the tests covers this function."""
    soft = torch.softmax((logits + sample_gumbel(logits, noise)) / tau, dim=-1)
    hard = torch.zeros_like(logits).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


@dataclass
class QuantizerOutput:
    """What :class:`GumbelVectorQuantizer` returns.

    Attributes
    ----------
    quantized : torch.Tensor
        (..., vq_dim) the selected codebook vectors, concatenated over groups, in the input's dtype.
    code_perplexity : torch.Tensor
        Scalar: perplexity of the hard code choices over valid frames, summed over groups.
    prob_perplexity : torch.Tensor
        Scalar: perplexity of the frame-averaged softmax, summed over groups (fp32).
    diversity_loss : torch.Tensor
        Scalar: ``(groups * num_vars - prob_perplexity) / (groups * num_vars)``.
    temperature : float
        The Gumbel temperature used by this call.
    codes : torch.Tensor
        (..., groups) long, the chosen code index in each group.
    """

    quantized: torch.Tensor
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor
    diversity_loss: torch.Tensor
    temperature: float
    codes: torch.Tensor


def _perplexity(probs: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of each group's distribution, summed over groups. probs: (G, V)."""
    entropy = -torch.sum(probs * torch.log(probs + _PERPLEXITY_EPS), dim=-1)
    return torch.exp(entropy).sum()


class GumbelVectorQuantizer(nn.Module):
    """Product quantizer: ``groups`` codebooks of ``num_vars`` entries, picked by Gumbel softmax.

    Training uses the straight-through hard Gumbel softmax at the current temperature; eval picks
    the argmax code. Logits and softmax are computed in fp32, also under bf16/fp16 autocast.

    Arguments
    ---------
    input_dim : int
        Channels C of the input features.
    num_vars : int
        Codebook entries per group (V).
    groups : int
        Number of codebooks (G); ``vq_dim`` must be divisible by it.
    vq_dim : int
        Output dimension (G codebook vectors of ``vq_dim // G`` each, concatenated).
    temperature : tuple of float
        ``(start, end, decay)``: temperature = max(start * decay**step, end).
    combine_groups : bool
        If True, all groups share one codebook of ``num_vars`` entries.
    gumbel_noise : str
        How training draws the Gumbel noise (:func:`sample_gumbel`): "exponential" (fairseq's
        and SpeechBrain's stream) or "uniform" (same distribution, cheaper on CPU).

    Example
    -------
    >>> quantizer = GumbelVectorQuantizer(input_dim=16, num_vars=8, groups=2, vq_dim=12)
    >>> out = quantizer.eval()(torch.randn(3, 5, 16))
    >>> out.quantized.shape, out.codes.shape
    (torch.Size([3, 5, 12]), torch.Size([3, 5, 2]))
    """

    def __init__(
        self,
        input_dim: int = 512,
        num_vars: int = 320,
        groups: int = 2,
        vq_dim: int = 256,
        temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995),
        combine_groups: bool = False,
        gumbel_noise: str = "exponential",
    ):
        super().__init__()
        if gumbel_noise not in GUMBEL_NOISE:
            raise ValueError(f"gumbel_noise must be one of {GUMBEL_NOISE}, got {gumbel_noise!r}")
        if min(input_dim, num_vars, groups, vq_dim) < 1:
            raise ValueError(
                "input_dim, num_vars, groups and vq_dim must be positive, got "
                f"{input_dim}, {num_vars}, {groups}, {vq_dim}"
            )
        if vq_dim % groups != 0:
            raise ValueError(f"vq_dim={vq_dim} must be divisible by groups={groups}")
        if len(temperature) != 3:
            raise ValueError(f"temperature must be (start, end, decay), got {temperature!r}")
        start, end, decay = (float(t) for t in temperature)
        if not (0 < end <= start) or not (0 < decay <= 1):
            raise ValueError(
                f"temperature needs 0 < end <= start and 0 < decay <= 1, got {temperature!r}"
            )
        self.input_dim = input_dim
        self.num_vars = num_vars
        self.groups = groups
        self.vq_dim = vq_dim
        self.combine_groups = combine_groups
        self.gumbel_noise = gumbel_noise
        self.start_temperature, self.end_temperature, self.temperature_decay = start, end, decay
        self.num_updates = 0
        self.temperature = start

        num_codebooks = 1 if combine_groups else groups
        self.vars = nn.Parameter(torch.empty(1, num_codebooks * num_vars, vq_dim // groups))
        self.weight_proj = nn.Linear(input_dim, groups * num_vars)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq's initialisation: codebook U(0, 1), projection N(0, 1) with zero bias."""
        nn.init.uniform_(self.vars)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    @property
    def total_codes(self) -> int:
        """groups * num_vars, the maximum possible perplexity."""
        return self.groups * self.num_vars

    def set_num_updates(self, num_updates: int) -> None:
        """Set the update counter and decay the temperature: max(start * decay**step, end)."""
        if num_updates < 0:
            raise ValueError(f"num_updates must be >= 0, got {num_updates}")
        self.num_updates = int(num_updates)
        self.temperature = max(
            self.start_temperature * self.temperature_decay**self.num_updates,
            self.end_temperature,
        )

    def get_extra_state(self) -> dict:
        """Checkpointed with the weights: the schedule position and the current temperature."""
        return {"num_updates": self.num_updates, "temperature": self.temperature}

    def set_extra_state(self, state: dict) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        self.num_updates = int(state["num_updates"])
        self.temperature = float(state["temperature"])

    def forward(
        self, features: torch.Tensor, valid_mask: torch.Tensor | None = None
    ) -> QuantizerOutput:
        """Quantize ``features``.

        Arguments
        ---------
        features : torch.Tensor
            (B, T, C) or (N, C).
        valid_mask : torch.Tensor, optional
            Bool, shaped like ``features`` without C: True for frames that count in the
            perplexities (padding excluded). All frames are still quantized.

        Returns
        -------
        QuantizerOutput
        """
        if features.dim() not in (2, 3) or features.shape[-1] != self.input_dim:
            raise ValueError(
                f"expected features of shape (B, T, {self.input_dim}) or (N, {self.input_dim}), "
                f"got {tuple(features.shape)}"
            )
        lead_shape = features.shape[:-1]
        flat = features.reshape(-1, self.input_dim)
        num_frames = flat.shape[0]
        with torch.autocast(device_type=features.device.type, enabled=False):
            logits = F.linear(
                flat.float(), self.weight_proj.weight.float(), self.weight_proj.bias.float()
            ).view(num_frames, self.groups, self.num_vars)

        frame_weights = self._frame_weights(valid_mask, lead_shape, features.device)
        codes = logits.argmax(dim=-1)
        hard_one_hot = F.one_hot(codes, self.num_vars).float()
        code_probs = self._average_over_frames(hard_one_hot, frame_weights)
        soft_probs = self._average_over_frames(torch.softmax(logits, dim=-1), frame_weights)
        code_perplexity = _perplexity(code_probs)
        prob_perplexity = _perplexity(soft_probs)
        diversity_loss = (self.total_codes - prob_perplexity) / self.total_codes

        if self.training:
            # flattened to (N*G, V) so the Gumbel noise is drawn in the same order as fairseq's
            selection = hard_gumbel_softmax(
                logits.view(-1, self.num_vars), self.temperature, self.gumbel_noise
            ).view(num_frames, self.groups, self.num_vars)
        else:
            selection = hard_one_hot
        codebook = self.vars.float().view(-1, self.num_vars, self.vars.shape[-1])
        codebook = codebook.expand(self.groups, -1, -1) if self.combine_groups else codebook
        with torch.autocast(device_type=features.device.type, enabled=False):
            # (N, G, V) x (G, V, D/G) -> (N, G, D/G): each group picks (or mixes) its code vectors
            quantized = torch.einsum("ngv,gvd->ngd", selection, codebook)
        quantized = quantized.reshape(*lead_shape, self.vq_dim).to(features.dtype)
        return QuantizerOutput(
            quantized=quantized,
            code_perplexity=code_perplexity,
            prob_perplexity=prob_perplexity,
            diversity_loss=diversity_loss,
            temperature=self.temperature,
            codes=codes.view(*lead_shape, self.groups),
        )

    @staticmethod
    def _frame_weights(
        valid_mask: torch.Tensor | None, lead_shape: torch.Size, device: torch.device
    ) -> torch.Tensor | None:
        """(N,) float weights, 1 for valid frames, or None when every frame counts."""
        if valid_mask is None:
            return None
        if valid_mask.shape != lead_shape:
            raise ValueError(
                f"valid_mask shape {tuple(valid_mask.shape)} must match the frames "
                f"{tuple(lead_shape)}"
            )
        if valid_mask.dtype != torch.bool:
            raise ValueError(f"valid_mask must be bool, got {valid_mask.dtype}")
        if not bool(valid_mask.any()):
            raise ValueError("valid_mask has no valid frame")
        return valid_mask.reshape(-1).to(device=device, dtype=torch.float32)

    @staticmethod
    def _average_over_frames(
        per_frame: torch.Tensor, frame_weights: torch.Tensor | None
    ) -> torch.Tensor:
        """(N, G, V) -> (G, V): mean over (valid) frames."""
        if frame_weights is None:
            return per_frame.mean(dim=0)
        weighted = torch.einsum("ngv,n->gv", per_frame, frame_weights)
        return weighted / frame_weights.sum()
