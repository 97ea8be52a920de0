"""CTC model: values vs a manual composition, masking, frozen CNN / Transformer, extra state."""

import pytest
import torch
import torch.nn.functional as F
from conftest import micro_config

from d2v_speech.asr.ctc_model import CTCModel, ctc_loss_per_utterance
from d2v_speech.asr.vocabulary import LetterVocabulary
from d2v_speech.nn import Data2VecAudioModel


def make_model(**kwargs):
    torch.manual_seed(0)
    config = micro_config(dropout=0.0, attention_dropout=0.0)
    defaults = {"mask_channel_length": 4, "vocabulary": LetterVocabulary()}
    return CTCModel(Data2VecAudioModel(config), 32, **{**defaults, **kwargs})


def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 8000, generator=generator), torch.tensor([8000, 5000, 400])


def test_eval_output_is_encoder_then_linear_then_log_softmax():
    model = make_model().eval()
    wav, lengths = batch()
    out = model(wav, lengths)
    hidden = model.encoder.model(wav, lengths).last_hidden_state
    expected = F.log_softmax(hidden @ model.head.proj.weight.T + model.head.proj.bias, dim=-1)
    assert torch.allclose(out.log_probs, expected, atol=1e-5)
    assert out.frame_lengths.tolist() == [24, 15, 1]  # conv formula, 320x, 400-sample field
    assert out.log_probs.dtype == torch.float32


def captured_encoder_input(model, wav, lengths):
    seen = {}
    handle = model.encoder.model.encoder.register_forward_pre_hook(
        lambda module, args: seen.setdefault("x", args[0].detach().clone())
    )
    model(wav, lengths)
    handle.remove()
    return seen["x"]


def test_time_masking_uses_the_mask_embedding_and_never_padding():
    model = make_model(mask_prob=0.5, mask_length=3, mask_channel_prob=0.0).train()
    wav, lengths = batch()
    unmasked = captured_encoder_input(model.eval(), wav, lengths)
    masked = captured_encoder_input(model.train(), wav, lengths)
    changed = (masked != unmasked).any(dim=-1)
    is_embedding = (masked == model.encoder.model.masked_spec_embed).all(dim=-1)
    assert torch.equal(changed, is_embedding)
    assert changed[0].sum() >= 6 and changed[1].sum() >= 3  # at least min_masks=2 spans
    assert not changed[1, 15:].any()  # padding frames are never masked
    assert not changed[2].any()  # a 1-frame row cannot be masked and is left alone


def test_channel_masking_zeroes_whole_channels_per_utterance():
    model = make_model(mask_prob=0.0, mask_channel_prob=0.5, mask_channel_length=4).train()
    wav, lengths = batch()
    x = captured_encoder_input(model, wav, lengths)
    zero_channels = (x[:, :15] == 0).all(dim=1)  # over the valid frames of the shortest rows
    assert zero_channels.sum(dim=1).min() >= 4
    reference = captured_encoder_input(model.eval(), wav, lengths)
    kept = (~zero_channels)[:, None, :].expand(-1, 15, -1)
    assert torch.equal(x[:, :15][kept], reference[:, :15][kept])


def test_no_masking_and_no_dropout_makes_training_equal_eval():
    model = make_model(mask_prob=0.0, mask_channel_prob=0.0)
    wav, lengths = batch()
    assert torch.allclose(
        model.train()(wav, lengths).log_probs, model.eval()(wav, lengths).log_probs
    )


def loss_and_grads(model, transformer_frozen):
    wav, lengths = batch()
    model.zero_grad(set_to_none=True)
    out = model(wav[:2], lengths[:2], transformer_frozen=transformer_frozen)
    targets = torch.tensor([[5, 6, 7], [8, 9, 0]])
    loss = ctc_loss_per_utterance(out.log_probs, out.frame_lengths, targets, torch.tensor([3, 2]))
    loss.sum().backward()
    named = dict(model.named_parameters())
    return {name: p.grad for name, p in named.items()}


def test_frozen_transformer_gets_no_gradient_and_the_cnn_never_does():
    model = make_model(freeze_transformer_updates=3).train()
    assert [model.transformer_frozen(n) for n in range(5)] == [True, True, True, False, False]
    frozen = loss_and_grads(model, transformer_frozen=True)
    assert all(g is not None for n, g in frozen.items() if n.startswith("head."))
    assert all(g is None for n, g in frozen.items() if n.startswith("encoder."))
    free = loss_and_grads(model, transformer_frozen=False)
    cnn = [n for n in free if ".feature_extractor." in n]
    assert cnn and all(free[n] is None for n in cnn)
    assert not any(p.requires_grad for p in model.encoder.model.feature_extractor.parameters())
    rest = [n for n in free if n.startswith("encoder.") and n not in cnn]
    assert all(free[n] is not None and free[n].abs().sum() > 0 for n in rest)


def test_adam_leaves_a_frozen_encoder_untouched():
    model = make_model(freeze_transformer_updates=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss_and_grads(model, transformer_frozen=True)
    optimizer.step()
    for name, param in model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == name.startswith("head."), name
        assert (param in optimizer.state) == name.startswith("head.")


def test_trainable_cnn_when_asked():
    model = make_model(freeze_feature_encoder=False).train()
    grads = loss_and_grads(model, transformer_frozen=False)
    assert all(g is not None for n, g in grads.items() if ".feature_extractor." in n)


def test_extra_state_round_trip_and_architecture_check():
    model = make_model(normalize=False, info={"train_split": "10m", "subset_10m": 4})
    state = model.state_dict()
    assert state["_extra_state"]["format"] == "d2v_speech.ctc_model"
    config = micro_config(dropout=0.0, attention_dropout=0.0)
    clone = CTCModel(Data2VecAudioModel(config), 32, mask_channel_prob=0.0)
    clone.load_state_dict(state)
    assert clone.vocabulary == model.vocabulary
    assert clone.normalize is False and clone.info == {"train_split": "10m", "subset_10m": 4}
    other_config = micro_config(embed_dim=32, ffn_dim=128)
    other = CTCModel(Data2VecAudioModel(other_config), 32, mask_channel_prob=0.0)
    with pytest.raises(ValueError, match="architecture differs"):
        other.load_state_dict(state, strict=False)


def test_bad_arguments():
    encoder = Data2VecAudioModel(micro_config())
    with pytest.raises(ValueError, match="vocab_size=10 but the vocabulary has 32"):
        CTCModel(encoder, 10, vocabulary=LetterVocabulary(), mask_channel_prob=0.0)
    with pytest.raises(ValueError, match="freeze_transformer_updates must be >= 0"):
        CTCModel(encoder, 32, freeze_transformer_updates=-1, mask_channel_prob=0.0)
    with pytest.raises(ValueError, match="mask_channel_length=64 exceeds the 32"):
        make_model(mask_channel_length=64)
