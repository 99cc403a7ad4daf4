"""FastDropout (trajtune/dropout.py), the LoRA input dropout train-sft and train-embed use on a CPU:
the same dropout as torch's (independent drops at rate p, kept values scaled to keep the mean),
gradients through the same mask, reproducible per seed (so resumed runs match), identity in eval,
and it is what attach_lora installs."""
import math

import pytest
import torch
import torch.nn.functional as F

from trajtune.dropout import FastDropout, keep_mask, speed_up_lora_dropout


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_each_element_is_dropped_independently_at_rate_p(p):
    torch.manual_seed(0)
    keep, scale = keep_mask((1000, 999), p)  # not a multiple of 4: the last draw is cut
    n = keep.numel()
    dropped = (~keep).double()
    rate = dropped.mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert scale == pytest.approx(1 / (1 - p), rel=1e-4)
    flat = dropped.reshape(-1)
    # neighbours (within one 64-bit draw and across draws) are independent: P(both) = p^2
    for lag in (1, 2, 3, 4, 5):
        both = (flat[:-lag] * flat[lag:]).mean().item()
        assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n)
    # no lane or position within a draw is biased
    for lane in range(4):
        assert abs(flat[lane::4].mean().item() - p) < 5 * math.sqrt(p * (1 - p) / (n / 4))


def test_forward_and_backward_use_one_mask_and_keep_the_mean():
    torch.manual_seed(1)
    x = (torch.rand(400, 300) + 0.5).requires_grad_()
    drop = FastDropout(0.1).train()
    out = drop(x)
    kept = out != 0
    assert 0.08 < 1 - kept.double().mean().item() < 0.12
    torch.testing.assert_close(out[kept], x.detach()[kept] * (32768 / (32768 - round(0.1 * 32768))))
    g = torch.randn_like(x)
    out.backward(g)
    torch.testing.assert_close(x.grad, torch.where(kept, g, 0.0) * (32768 / (32768 - 3277)))
    # E[out] = x: over many draws the mean matches
    many = torch.stack([drop(torch.ones(1000)) for _ in range(200)])
    assert abs(many.mean().item() - 1.0) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_the_bitwise_mask_gives_exactly_x_times_keep_times_scale_in_every_float_dtype(dtype):
    """The mask is applied as an AND of the value's bits (all ones keeps, zero drops): kept values
    are x * scale rounded once, dropped ones +0.0, for contiguous and strided inputs and gradients."""
    torch.manual_seed(2)
    base = torch.randn(96, 70).to(dtype)
    for x in (base, base.t(), base[:, ::3]):  # contiguous, transposed, strided
        x = x.clone().requires_grad_() if x.is_contiguous() else x.detach().requires_grad_()
        state = torch.get_rng_state()
        out = FastDropout(0.25).train()(x)
        torch.set_rng_state(state)
        keep, scale = keep_mask(x.shape, 0.25)
        assert out.dtype == dtype and out.shape == x.shape
        assert torch.equal(out, torch.where(keep, x.detach() * scale, torch.zeros((), dtype=dtype)))
        assert not torch.signbit(out[~keep]).any()
        g = torch.randn(x.shape).to(dtype)
        out.backward(g)
        assert torch.equal(x.grad, torch.where(keep, g * scale, torch.zeros((), dtype=dtype)))


def test_reproducible_per_seed_and_exact_under_gradient_checkpointing():
    drop = FastDropout(0.2).train()
    x = torch.randn(64, 48)
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    b = drop(x)
    torch.manual_seed(8)
    c = drop(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # what a resumed run relies on: the Trainer restores the CPU generator's state from the checkpoint
    state = torch.get_rng_state()
    d = drop(x)
    torch.set_rng_state(state)
    assert torch.equal(drop(x), d)
    # checkpointing re-runs the forward in the backward: the generator state is restored, the mask is the same
    lin = torch.nn.Linear(48, 48)

    def f(t):
        return lin(drop(t)).square().sum()

    xs = x.clone().requires_grad_()
    torch.manual_seed(3)
    f(xs).backward()
    plain = xs.grad.clone()
    xs.grad = None
    torch.manual_seed(3)
    torch.utils.checkpoint.checkpoint(f, xs, use_reentrant=False).backward()
    torch.testing.assert_close(xs.grad, plain)


def test_eval_mode_and_p_zero_are_the_identity_and_extremes_match_torch():
    x = torch.randn(10, 10)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), F.dropout(x, 1.0, True))


def test_attach_lora_installs_it_in_peft_layers():
    from transformers import LlamaConfig, LlamaForCausalLM

    from trajtune.training import attach_lora

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)
    model, method = attach_lora(LlamaForCausalLM(cfg), r=4, alpha=8, dropout=0.05, target_modules="all-linear", fallback="none")
    drops = [d for m in model.modules() for d in getattr(m, "lora_dropout", {}).values()]
    assert method == "lora" and len(drops) == 14 and all(type(d) is FastDropout and d.p == 0.05 for d in drops)
    none, _ = attach_lora(LlamaForCausalLM(cfg), r=4, alpha=8, dropout=0.0, target_modules="all-linear", fallback="none")
    assert speed_up_lora_dropout(none) == 0  # p = 0: peft's Identity stays
    ids = torch.randint(0, 64, (2, 9))
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
