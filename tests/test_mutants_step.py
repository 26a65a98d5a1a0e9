"""One optimizer step of the training loop, on a real ``Loop`` from ``setup``: each
test kills mutants of ``train_step`` (toolkit/train/loop.py) and of the precision
checks (toolkit/train/build.py) (``make mutate MODULES=step``).

Expected weights come from the loss's gradient computed again with
``torch.autograd.grad`` on a float64 copy of the model (SGD, so a step is
``w - lr * g``); GradScaler runs on the CPU, as torch allows.
"""

from __future__ import annotations

import math

import pytest
import torch
from fixtures.small_data import quadrants
from torch import nn

from toolkit.errors import TrainingError, UsageError
from toolkit.registry import Recipe
from toolkit.train import build
from toolkit.train.loop import setup, train_step
from toolkit.train.state import FitOptions

LR = 0.5


def _loop(clip=None, scheduler="none", precision="fp32", weight_decay=0.0):
    data = quadrants(40)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    recipe = Recipe(optimizer="sgd", lr=LR, epochs=2, batch_size=None, scheduler=scheduler,
                    weight_decay=weight_decay)  # fmt: skip
    options = FitOptions(grad_clip=clip, precision=precision)
    loop = setup(model, data, recipe, "binary", "cpu", 0, options)
    return loop, data.train.x, data.train.y


def _grads(loop, x, y):
    """The mean BCE-with-logits gradient of every parameter, in float64."""
    ref = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    ref.load_state_dict({k: v.double() for k, v in loop.model.state_dict().items()})
    logits = ref(x.double())
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y.double().reshape(-1, 1))
    return [p.detach().clone() for p in loop.model.parameters()], torch.autograd.grad(
        loss, list(ref.parameters())
    )


def _assert_stepped(loop, before, grads, scale=1.0):
    for p, w, g in zip(loop.model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.double(), w.double() - LR * scale * g, rtol=0, atol=1e-6)


def test_a_step_is_sgd_on_the_mean_loss_and_counts_itself():
    loop, x, y = _loop()
    before, grads = _grads(loop, x, y)
    loss, out = train_step(loop, x, y, len(y), 1)
    _assert_stepped(loop, before, grads)
    assert out.shape == (len(y), 1) and loop.step == 1
    expected = nn.functional.binary_cross_entropy_with_logits(out.detach(), y.reshape(-1, 1))
    assert loss.item() == pytest.approx(float(expected), rel=1e-6)


def test_a_shard_of_a_larger_global_batch_weighs_its_share():
    loop, x, y = _loop()
    before, grads = _grads(loop, x, y)
    loss, _ = train_step(loop, x, y, 4 * len(y), 1)  # this rank holds a quarter
    _assert_stepped(loop, before, grads, scale=0.25)
    assert loss.item() == pytest.approx(_grads_loss(before, x, y).item(), rel=1e-5)
    loop.shard = (0, 2)  # two ranks of equal shards: the mean is already the global one
    before, grads = _grads(loop, x, y)
    train_step(loop, x, y, 2 * len(y), 2)
    _assert_stepped(loop, before, grads)
    # two ranks, this one with a quarter of the global batch: its mean weighs 2 * 1/4
    # (DDP then averages the two ranks' gradients)
    before, grads = _grads(loop, x, y)
    train_step(loop, x, y, 4 * len(y), 3)
    _assert_stepped(loop, before, grads, scale=0.5)


def test_a_parameter_frozen_after_a_step_keeps_no_stale_gradient():
    """Gradients are set to None, not zeroed: a parameter frozen later (--unfreeze-at's
    reverse, or a head frozen by a callback) is skipped by SGD's weight decay."""
    loop, x, y = _loop(weight_decay=0.1)
    train_step(loop, x, y, len(y), 1)
    loop.model[0].requires_grad_(False)
    frozen = [p.detach().clone() for p in loop.model[0].parameters()]
    train_step(loop, x, y, len(y), 2)
    assert all(torch.equal(p, w) for p, w in zip(loop.model[0].parameters(), frozen, strict=True))
    assert loop.model[0].weight.grad is None


def _grads_loss(weights, x, y):
    ref = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        for p, w in zip(ref.parameters(), weights, strict=True):
            p.copy_(w)
    return nn.functional.binary_cross_entropy_with_logits(ref(x), y.reshape(-1, 1))


def test_clipping_bounds_the_global_norm_of_the_listed_parameters():
    clip = 0.001
    loop, x, y = _loop(clip=clip)
    before, grads = _grads(loop, x, y)
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    assert norm > 10 * clip
    train_step(loop, x, y, len(y), 1)
    _assert_stepped(loop, before, grads, scale=clip / (norm + 1e-6))


def test_a_non_finite_loss_stops_before_the_weights_change():
    loop, x, y = _loop()
    loop.counters.step = 4
    bad = x.clone()
    bad[0, 0] = float("nan")
    before = [p.detach().clone() for p in loop.model.parameters()]
    with pytest.raises(TrainingError) as info:
        train_step(loop, bad, y, len(y), 3)
    assert info.value.message == (
        "loss became nan at epoch 3 step 5; the weights were not updated with it"
    )
    assert info.value.hint == "a lower --lr, or --grad-clip"
    assert all(torch.equal(p, w) for p, w in zip(loop.model.parameters(), before, strict=True))
    assert loop.step == 4
    loop.check_every_step = False  # CUDA: the loss is read at log points instead
    train_step(loop, bad, y, len(y), 3)
    assert loop.step == 5


def test_a_non_finite_gradient_norm_stops_a_clipped_step():
    """A finite loss whose gradient is not (a hook makes it inf): only the norm sees it."""
    loop, x, y = _loop(clip=1.0)
    loop.counters.step = 6
    loop.model[0].weight.register_hook(lambda g: g * float("inf"))
    before = [p.detach().clone() for p in loop.model.parameters()]
    with pytest.raises(TrainingError) as info:
        train_step(loop, x, y, len(y), 2)
    assert info.value.message.startswith("gradient norm became ")
    assert info.value.message.endswith(" at epoch 2 step 7")
    assert not math.isfinite(float(info.value.message.split()[3]))
    assert info.value.hint == "a lower --lr"
    assert all(torch.equal(p, w) for p, w in zip(loop.model.parameters(), before, strict=True))
    loop.check_every_step = False
    train_step(loop, x, y, len(y), 2)  # not read: nothing raised
    assert loop.step == 7


def test_a_scaled_step_is_unscaled_before_clipping_and_the_scale_grows():
    clip = 0.001
    loop, x, y = _loop(clip=clip)
    loop.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    before, grads = _grads(loop, x, y)
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    train_step(loop, x, y, len(y), 1)
    _assert_stepped(loop, before, grads, scale=clip / (norm + 1e-6))
    assert loop.scaler.get_scale() == 2048.0  # update() ran after the step
    loop2, x, y = _loop()
    loop2.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before, grads = _grads(loop2, x, y)
    train_step(loop2, x, y, len(y), 1)
    _assert_stepped(loop2, before, grads)


def test_a_per_step_schedule_steps_with_every_batch():
    loop, x, y = _loop(scheduler="onecycle")
    counts = [loop.schedule.main.last_epoch]
    lrs = [loop.optimizer.param_groups[0]["lr"]]
    train_step(loop, x, y, len(y), 1)
    counts.append(loop.schedule.main.last_epoch)
    lrs.append(loop.optimizer.param_groups[0]["lr"])
    assert counts[1] == counts[0] + 1 and lrs[1] != lrs[0]  # one scheduler step per batch


def test_bf16_runs_the_forward_in_bfloat16_and_fp32_does_not():
    seen = []
    loop, x, y = _loop(precision="bf16")
    loop.model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train_step(loop, x, y, len(y), 1)
    loop32, x, y = _loop()
    loop32.model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train_step(loop32, x, y, len(y), 1)
    assert seen == [torch.bfloat16, torch.float32]


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_precisions_the_device_cannot_train_in_are_refused():
    """fp16 trains on CUDA and on the CPU (both have autocast and a GradScaler); any
    other device type is refused, pointing at bf16."""
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    for ok in ("fp32", "bf16", "fp16"):
        build.check_precision(ok, cpu)
        build.check_precision(ok, cuda)
    for ok in ("fp32", "bf16"):
        build.check_precision(ok, mps)
    with pytest.raises(UsageError) as info:
        build.check_precision("fp16", mps)
    assert info.value.message == "fp16 mixed precision needs a CUDA device or the CPU, not mps"
    assert info.value.hint == "--precision bf16"
    with pytest.raises(UsageError) as info:
        build.check_precision("fp8", cpu)
    assert info.value.message == "unknown precision 'fp8'; choose one of fp32, bf16, fp16"
    assert build.autocast("fp32", cpu).__class__.__name__ == "nullcontext"
    half = build.autocast("fp16", cpu)
    assert (half.fast_dtype, half.device) == (torch.float16, "cpu")
    bf = build.autocast("bf16", cuda)
    assert (bf.fast_dtype, bf.device) == (torch.bfloat16, "cuda")


def test_fp16_on_the_cpu_runs_the_forward_in_float16_under_a_cpu_grad_scaler():
    seen = []
    loop, x, y = _loop(precision="fp16")
    assert isinstance(loop.scaler, torch.amp.GradScaler) and loop.scaler._device == "cpu"
    loop.model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in loop.model.parameters()]
    loss, _ = train_step(loop, x, y, len(y), 1)
    assert seen == [torch.float16] and math.isfinite(loss.item())
    assert loop.step == 1
    assert all(p.dtype == torch.float32 for p in loop.model.parameters())  # master weights
    assert any(not torch.equal(p, w) for p, w in zip(loop.model.parameters(), before, strict=True))
