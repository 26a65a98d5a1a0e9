"""Training settings observed by their effect on the numbers, not by their record.

A stochastic model resumed mid-run equals the uninterrupted one bit for bit; the
monitor picks the argmax of the accuracies the run itself logged; a clipped step
equals clipped SGD computed by hand. docs/testing.md lists the bug each one was
checked against.
"""

from __future__ import annotations

import json

import pytest
from fixtures.small_data import quadrants as _quadrants
from test_loop import Recorder

from toolkit.checkpoint import decode, encode
from toolkit.registry import Recipe
from toolkit.train import fit
from toolkit.train.state import FitOptions


def _dropout_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 1))


# ------------------------------------------------------------ resume with Dropout
def test_resumed_dropout_model_with_shuffled_batches_is_bitwise_the_straight_run():
    import torch

    recipe = Recipe(optimizer="adam", lr=0.05, epochs=6, batch_size=16)  # shuffled batches
    straight = _dropout_model()
    full = fit(straight, _quadrants(), recipe, task="binary")
    cut = Recorder(stop_at=3)
    fit(_dropout_model(), _quadrants(), recipe, task="binary", callbacks=[cut], checkpoint_every=1)
    state = decode(encode(cut.last_state))  # through the checkpoint's bytes
    assert state.epoch == 3
    # Whatever ran between the cut and the resume must not matter: the RNG comes back.
    torch.manual_seed(12345)
    torch.rand(100)
    resumed = _dropout_model()
    rest = fit(resumed, _quadrants(), recipe, task="binary", resume=state)
    assert rest.epochs == full.epochs
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Dropout draws from the global RNG: a resume that restarts it differs.
    torch.manual_seed(0)
    changed = _dropout_model()
    state_again = decode(encode(cut.last_state))
    state_again.torch_rng = torch.get_rng_state()
    fit(changed, _quadrants(), recipe, task="binary", resume=state_again)
    assert any(not torch.equal(a[k], changed.state_dict()[k]) for k in a)


# --------------------------------------------------------- the monitor's direction
@pytest.mark.parametrize("monitor,key,pick", [("val_acc", "val_accuracy", max),
                                              ("val_loss", "val_loss", min)])  # fmt: skip
def test_the_selected_epoch_is_the_best_of_the_logged_epochs(tk, monitor, key, pick):
    res = tk("train", "circle", "--dataset", "moons", "--data-param", "noise=0.4",
             "--data-param", "n_samples=400", "--param", "hidden=8", "--epochs", "25",
             "--batch-size", "32", "--lr", "0.003", "--monitor", monitor, "--name", "m",
             "-q")  # fmt: skip
    assert res.code == 0, res.err
    run = tk.cwd / "runs/circle/m"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    values = [r[key] for r in rows]
    assert len(set(values)) > 2  # the metric moved: a direction can be told apart
    best = pick(values)
    first_best = next(r["epoch"] for r in rows if r[key] == best)  # ties: the earliest
    worst = (min if pick is max else max)(values)
    assert best != worst
    selected = json.loads((run / "summary.json").read_text())["selected"]
    assert selected["epoch"] == first_best
    assert selected["value"] == pytest.approx(best)


# ---------------------------------------------------------------- gradient clipping
@pytest.mark.parametrize("clip", [0.001, 0.05, None])
def test_a_clipped_step_equals_clipped_sgd_by_hand(clip):
    import torch
    from torch import nn

    data = _quadrants(100)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = 0.5
    recipe = Recipe(optimizer="sgd", lr=lr, epochs=1, batch_size=None)  # one full-batch step
    fit(model, data, recipe, task="binary", options=FitOptions(grad_clip=clip))

    # By hand: mean BCE-with-logits over the training rows, the global norm, the step.
    ref = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    ref.load_state_dict({k: v.double() for k, v in before.items()})
    x, y = data.train.x.double(), data.train.y.double().reshape(-1, 1)
    loss = nn.functional.binary_cross_entropy_with_logits(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = min(1.0, clip / (float(norm) + 1e-6)) if clip is not None else 1.0
    if clip == 0.001:
        assert float(norm) > 10 * clip  # the bound really binds
    names = [n for n, _ in ref.named_parameters()]
    got = model.state_dict()
    moved = 0.0
    for name, g in zip(names, grads, strict=True):
        expected = before[name].double() - lr * scale * g
        torch.testing.assert_close(got[name].double(), expected, rtol=0, atol=1e-6)
        moved += float(((got[name].double() - before[name].double()) ** 2).sum())
    assert moved**0.5 == pytest.approx(lr * scale * float(norm), rel=1e-4)


# ------------------------------------------------------------------- bf16 autocast
@pytest.mark.parametrize("precision,dtype", [("bf16", "bfloat16"), ("fp32", "float32")])
def test_bf16_autocast_is_entered_on_the_cpu(precision, dtype):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    seen: set[torch.dtype] = set()

    def hook(module, inputs, output):
        if module.training:  # the training steps, not the evaluation
            seen.add(output.dtype)

    model[0].register_forward_hook(hook)
    recipe = Recipe(optimizer="adam", lr=0.01, epochs=1, batch_size=32)
    fit(model, _quadrants(), recipe, task="binary", options=FitOptions(precision=precision))
    assert seen == {getattr(torch, dtype)}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
