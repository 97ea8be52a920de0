"""GumbelVectorQuantizer against SpeechBrain's (fairseq-derived) quantizer and naive formulas."""

import numpy as np
import pytest
import torch
from speechbrain.nnet.quantisers import GumbelVectorQuantizer as SpeechBrainQuantizer

from d2v_speech.nn.quantizer import GumbelVectorQuantizer, hard_gumbel_softmax, sample_gumbel

INPUT_DIM, NUM_VARS, GROUPS, VQ_DIM = 12, 7, 2, 10
TEMPERATURE = (2.0, 0.5, 0.999995)


def make_pair(seed: int = 0):
    """Our quantizer and SpeechBrain's, with identical weights."""
    torch.manual_seed(seed)
    ours = GumbelVectorQuantizer(INPUT_DIM, NUM_VARS, GROUPS, VQ_DIM, TEMPERATURE)
    reference = SpeechBrainQuantizer(INPUT_DIM, NUM_VARS, TEMPERATURE, GROUPS, VQ_DIM)
    with torch.no_grad():
        reference.vars.copy_(ours.vars)
        reference.weight_proj.weight.copy_(ours.weight_proj.weight)
        reference.weight_proj.bias.copy_(torch.randn(GROUPS * NUM_VARS))
        ours.weight_proj.bias.copy_(reference.weight_proj.bias)
    return ours, reference


def naive_perplexities(logits: np.ndarray) -> tuple[float, float]:
    """wav2vec 2.0 perplexities with explicit loops. logits: (N, G, V)."""
    num_frames, groups, num_vars = logits.shape
    code_ppl = prob_ppl = 0.0
    for g in range(groups):
        counts = np.zeros(num_vars)
        soft = np.zeros(num_vars)
        for n in range(num_frames):
            row = logits[n, g]
            counts[int(np.argmax(row))] += 1
            exp = np.exp(row - row.max())
            soft += exp / exp.sum()
        for probs, is_code in ((counts / num_frames, True), (soft / num_frames, False)):
            entropy = -sum(p * np.log(p + 1e-7) for p in probs)
            if is_code:
                code_ppl += np.exp(entropy)
            else:
                prob_ppl += np.exp(entropy)
    return code_ppl, prob_ppl


def test_keys_match_fairseq_layout():
    quantizer = GumbelVectorQuantizer()
    shapes = {k: tuple(v.shape) for k, v in quantizer.state_dict().items() if k != "_extra_state"}
    assert shapes == {
        "vars": (1, 640, 128),
        "weight_proj.weight": (640, 512),
        "weight_proj.bias": (640,),
    }


def test_eval_matches_speechbrain():
    ours, reference = make_pair()
    ours.eval()
    reference.eval()
    x = torch.randn(3, 9, INPUT_DIM)
    out = ours(x)
    ref = reference(x)
    torch.testing.assert_close(out.quantized, ref["x"])
    torch.testing.assert_close(out.code_perplexity, ref["code_perplexity"])
    torch.testing.assert_close(out.prob_perplexity, ref["prob_perplex"])
    logits = reference.weight_proj(x).view(3, 9, GROUPS, NUM_VARS)
    assert torch.equal(out.codes, logits.argmax(-1))


def test_training_matches_speechbrain_values_and_gradients():
    ours, reference = make_pair(seed=1)
    ours.train()
    reference.train()
    ours.set_num_updates(1000)
    reference.update_temp(1000)
    x = torch.randn(2, 6, INPUT_DIM)
    torch.manual_seed(5)
    out = ours(x)
    torch.manual_seed(5)
    ref = reference(x)
    torch.testing.assert_close(out.quantized, ref["x"])
    assert out.temperature == pytest.approx(ref["temp"])
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    (ref["x"] * weights).sum().backward()
    assert ours.weight_proj.weight.grad.abs().sum() > 0
    torch.testing.assert_close(ours.weight_proj.weight.grad, reference.weight_proj.weight.grad)
    torch.testing.assert_close(ours.vars.grad, reference.vars.grad)


def test_perplexities_and_diversity_match_naive_formulas():
    ours, reference = make_pair(seed=2)
    ours.eval()
    x = torch.randn(40, INPUT_DIM)
    out = ours(x)
    logits = reference.weight_proj(x).view(40, GROUPS, NUM_VARS).detach().double().numpy()
    code_ppl, prob_ppl = naive_perplexities(logits)
    assert out.code_perplexity.item() == pytest.approx(code_ppl, rel=1e-5)
    assert out.prob_perplexity.item() == pytest.approx(prob_ppl, rel=1e-5)
    total = GROUPS * NUM_VARS
    assert out.diversity_loss.item() == pytest.approx((total - prob_ppl) / total, rel=1e-5)


def test_valid_mask_excludes_padding_from_perplexities():
    ours, _ = make_pair(seed=3)
    ours.eval()
    x = torch.randn(2, 8, INPUT_DIM)
    valid = torch.zeros(2, 8, dtype=torch.bool)
    valid[0, :8] = True
    valid[1, :3] = True
    masked = ours(x, valid_mask=valid)
    only_valid = ours(x[valid])
    torch.testing.assert_close(masked.code_perplexity, only_valid.code_perplexity)
    torch.testing.assert_close(masked.prob_perplexity, only_valid.prob_perplexity)
    assert not torch.allclose(masked.prob_perplexity, ours(x).prob_perplexity)
    torch.testing.assert_close(masked.quantized[valid], only_valid.quantized)


def test_combine_groups_shares_one_codebook():
    torch.manual_seed(4)
    quantizer = GumbelVectorQuantizer(INPUT_DIM, NUM_VARS, GROUPS, VQ_DIM, combine_groups=True)
    quantizer.eval()
    assert tuple(quantizer.vars.shape) == (1, NUM_VARS, VQ_DIM // GROUPS)
    out = quantizer(torch.randn(5, INPUT_DIM))
    for n in range(5):
        for g in range(GROUPS):
            expected = quantizer.vars[0, out.codes[n, g]]
            torch.testing.assert_close(out.quantized[n, g * 5 : (g + 1) * 5], expected)


@pytest.mark.parametrize("step", [0, 1, 1000, 100_000, 10_000_000])
def test_temperature_schedule(step):
    quantizer = GumbelVectorQuantizer(8, 4, 2, 8, temperature=(2.0, 0.5, 0.999995))
    quantizer.set_num_updates(step)
    assert quantizer.temperature == pytest.approx(max(2.0 * 0.999995**step, 0.5))


def test_temperature_round_trips_through_state_dict():
    source = GumbelVectorQuantizer(8, 4, 2, 8)
    source.set_num_updates(250_000)
    target = GumbelVectorQuantizer(8, 4, 2, 8)
    target.load_state_dict(source.state_dict())
    assert target.num_updates == 250_000
    assert target.temperature == pytest.approx(2.0 * 0.999995**250_000)
    torch.testing.assert_close(target.vars, source.vars)


def test_logits_stay_fp32_under_bf16_autocast():
    ours, _ = make_pair(seed=6)
    ours.eval()
    x = torch.randn(4, 10, INPUT_DIM)
    reference = ours(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(x.bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    assert out.prob_perplexity.dtype == torch.float32
    # the bf16 input rounding may flip near-ties only; codes must agree almost everywhere
    assert (out.codes == reference.codes).float().mean() > 0.9
    torch.testing.assert_close(out.prob_perplexity, reference.prob_perplexity, rtol=0.05, atol=0)


def test_fp16_module_runs():
    ours, _ = make_pair(seed=7)
    ours.eval()
    x = torch.randn(4, INPUT_DIM)
    expected = ours(x).codes
    out = ours.half()(x.half())
    assert out.quantized.dtype == torch.float16
    assert torch.isfinite(out.quantized.float()).all()
    assert (out.codes == expected).float().mean() > 0.7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vq_dim": 255},
        {"temperature": (2.0, 0.5)},
        {"temperature": (0.5, 2.0, 0.9)},
        {"temperature": (2.0, 0.5, 1.5)},
        {"num_vars": 0},
        {"gumbel_noise": "normal"},
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        GumbelVectorQuantizer(**kwargs)


def test_bad_input_raises():
    quantizer = GumbelVectorQuantizer(8, 4, 2, 8)
    with pytest.raises(ValueError, match="expected features"):
        quantizer(torch.randn(3, 7))
    with pytest.raises(ValueError, match="valid_mask"):
        quantizer(torch.randn(2, 3, 8), valid_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid frame"):
        quantizer(torch.randn(2, 3, 8), valid_mask=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_updates"):
        quantizer.set_num_updates(-1)


@pytest.mark.parametrize("method", ["exponential", "uniform"])
def test_gumbel_noise_has_the_standard_gumbel_moments(method):
    # Gumbel(0, 1): mean = Euler-Mascheroni constant, variance = pi^2 / 6
    torch.manual_seed(0)
    noise = sample_gumbel(torch.empty(400_000), method).double()
    assert torch.isfinite(noise).all()
    assert abs(noise.mean().item() - np.euler_gamma) < 0.01
    assert abs(noise.var().item() - np.pi**2 / 6) < 0.03


def test_uniform_noise_samples_the_softmax_of_the_logits():
    # Gumbel-max: argmax(logits + g) ~ Categorical(softmax(logits)), at any temperature
    torch.manual_seed(1)
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0]).expand(200_000, 4)
    selection = hard_gumbel_softmax(logits, tau=0.7, noise="uniform")
    assert torch.equal(selection.sum(dim=-1), torch.ones(200_000))
    assert set(selection.unique().tolist()) == {0.0, 1.0}
    frequencies = selection.mean(dim=0)
    assert torch.allclose(frequencies, torch.softmax(logits[0], dim=0), atol=0.006)


def test_uniform_noise_gradient_is_the_straight_through_softmax_gradient():
    # forward: the hard one-hot; backward: the gradient of softmax((logits + g) / tau), same g
    logits = torch.randn(5, 7, requires_grad=True)
    weights = torch.randn(5, 7)
    torch.manual_seed(2)
    (hard_gumbel_softmax(logits, tau=1.5, noise="uniform") * weights).sum().backward()
    torch.manual_seed(2)
    gumbel = -torch.log(-torch.log(torch.rand(5, 7)))
    reference = logits.detach().clone().requires_grad_(True)
    (torch.softmax((reference + gumbel) / 1.5, dim=-1) * weights).sum().backward()
    assert torch.allclose(logits.grad, reference.grad, atol=1e-6)


def test_uniform_noise_quantizer_picks_codebook_vectors():
    torch.manual_seed(3)
    quantizer = GumbelVectorQuantizer(INPUT_DIM, NUM_VARS, GROUPS, VQ_DIM, gumbel_noise="uniform")
    out = quantizer.train()(torch.randn(4, 6, INPUT_DIM))
    codebook = quantizer.vars.detach().view(GROUPS, NUM_VARS, VQ_DIM // GROUPS)
    picked = out.quantized.detach().view(-1, GROUPS, VQ_DIM // GROUPS)
    for g in range(GROUPS):
        distance = torch.cdist(picked[:, g], codebook[g]).min(dim=1).values
        assert distance.max() < 1e-5


def test_exponential_noise_is_torch_gumbel_softmax_to_the_bit():
    # the default path must keep fairseq's / SpeechBrain's noise stream, values and gradients
    logits = torch.randn(64, 9, requires_grad=True)
    reference = logits.detach().clone().requires_grad_(True)
    weights = torch.randn(64, 9)
    torch.manual_seed(4)
    ours = hard_gumbel_softmax(logits, tau=1.3, noise="exponential")
    torch.manual_seed(4)
    theirs = torch.nn.functional.gumbel_softmax(reference, tau=1.3, hard=True)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    assert torch.equal(ours, theirs)
    assert torch.equal(logits.grad, reference.grad)
