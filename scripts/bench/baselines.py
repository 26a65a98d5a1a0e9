"""The models and the hand-written loops tk is measured against.

Nothing here imports the toolkit at module level (the memory child measures its base
RSS right after importing this).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


# ========================================================================== models
def circle_model() -> nn.Module:
    """circle-v2 (2-10-10-1 ReLU MLP), built exactly as the tk_circle plugin builds it."""
    from tk_circle import circle_v2

    torch.manual_seed(42)
    return circle_v2()


def fashion_mlp() -> nn.Module:
    """The PyTorch basics tutorial's FashionMNIST MLP, seeded so every variant starts alike."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def param_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ============================================================= circle (section 1)
def plain_circle_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    epochs: int,
) -> list[list[float]]:
    """The loop a careful person writes for SEEDS.md §1: full batch, test eval each epoch.

    Loss and accuracy of train and test every epoch stay on the device; they are read
    (one host sync) only every 100 epochs, where the seed notes print.
    """
    rows = []
    for epoch in range(1, epochs + 1):
        model.train()
        logits = model(x_train).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits, y_train)
        acc = ((logits > 0) == (y_train > 0.5)).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.inference_mode():
            test_logits = model(x_test).squeeze(1)
            test_loss = F.binary_cross_entropy_with_logits(test_logits, y_test)
            test_acc = ((test_logits > 0) == (y_test > 0.5)).float().mean()
        if epoch % 100 == 0 or epoch == epochs:
            rows.append(torch.stack([loss.detach(), acc, test_loss, test_acc]).tolist())
    return rows


def tutorial_circle_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    epochs: int,
) -> list[float]:
    """The PyTorch tutorial's train_loop/test_loop with DataLoaders, applied to circles.

    Full batch (800 rows, shuffled), ``.item()`` per batch as the tutorial does.
    """
    from torch.utils.data import DataLoader, TensorDataset

    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=800, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=200)
    loss_fn = nn.BCEWithLogitsLoss()
    test_loss = correct = 0.0
    for _epoch in range(epochs):
        model.train()
        for xb, yb in train_loader:
            loss = loss_fn(model(xb).squeeze(1), yb)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            _ = loss.item()
        model.eval()
        test_loss = correct = 0.0
        with torch.no_grad():
            for xb, yb in test_loader:
                pred = model(xb).squeeze(1)
                test_loss += loss_fn(pred, yb).item()
                correct += (torch.round(torch.sigmoid(pred)) == yb).float().sum().item()
    return [test_loss / len(test_loader), correct / len(y_test)]


# ======================================================= FashionMNIST (section 2)
def tutorial_epoch(training_data: Any, test_data: Any, model: nn.Module) -> list[float]:
    """One epoch of the PyTorch basics tutorial: train_loop then test_loop, verbatim in spirit.

    DataLoader(batch_size=64) over torchvision's FashionMNIST with ToTensor();
    ``loss.item()`` every 100 batches (the tutorial prints there) and per test batch.
    """
    from torch.utils.data import DataLoader

    train_dataloader = DataLoader(training_data, batch_size=64)
    test_dataloader = DataLoader(test_data, batch_size=64)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    last = 0.0
    for batch, (x, y) in enumerate(train_dataloader):
        pred = model(x)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 100 == 0:
            last = loss.item()
    model.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for x, y in test_dataloader:
            pred = model(x)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return [last, correct / len(test_data)]


def hand_epoch(t: dict[str, torch.Tensor], model: nn.Module, batch: int = 64) -> list[float]:
    """A hand-written in-memory epoch: the set as float32 once, shuffled index batches.

    Metrics accumulate on the device and are read once, after the test evaluation.
    """
    x = t["x_train"].float().div_(255)  # once per run: 188 MB of float32
    y = t["y_train"]
    x_test = t["x_test"].float().div_(255)
    y_test = t["y_test"]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.int64)
    for idx in torch.randperm(len(x)).split(batch):
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
    model.eval()
    test_correct = torch.zeros((), dtype=torch.int64)
    with torch.inference_mode():
        for i in range(0, len(x_test), 1024):
            out = model(x_test[i : i + 1024])
            test_correct += (out.argmax(1) == y_test[i : i + 1024]).sum()
    return [(loss_sum / len(x)).item(), test_correct.item() / len(x_test)]


def bound_epoch(t: dict[str, torch.Tensor], model: nn.Module, batch: int = 64) -> dict:
    """The compute bound of the same epoch: forward+backward+step on one fixed batch.

    As many steps as an epoch has batches, then a forward pass over the (pre-converted)
    test set: no gather, no conversion, no metrics, no Python beyond the step itself.
    """
    steps = math.ceil(len(t["x_train"]) / batch)
    xb = t["x_train"][:batch].float().div_(255)
    yb = t["y_train"][:batch]
    x_test = t["x_test"].float().div_(255)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    mid = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x_test), 1024):
            model(x_test[i : i + 1024])
    return {"steps": mid - start, "eval": time.perf_counter() - mid}


def plain_selection_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    epochs: int,
) -> list[list[float]]:
    """The plain loop as a careful person adds model selection to it: a cosine schedule
    (``CosineAnnealingLR``), the validation rows evaluated every epoch, and a copy of
    the weights whenever the validation loss improves (one ``.item()`` per epoch)."""
    import copy

    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    best, best_state, rows = float("inf"), None, []
    for epoch in range(1, epochs + 1):
        model.train()
        logits = model(x_train).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits, y_train)
        acc = ((logits > 0) == (y_train > 0.5)).float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        model.eval()
        with torch.inference_mode():
            val_logits = model(x_val).squeeze(1)
            val_loss = F.binary_cross_entropy_with_logits(val_logits, y_val)
            val_acc = ((val_logits > 0) == (y_val > 0.5)).float().mean()
        value = val_loss.item()
        if value < best:
            best, best_state = value, copy.deepcopy(model.state_dict())
        if epoch % 100 == 0 or epoch == epochs:
            rows.append(torch.stack([loss.detach(), acc, val_loss, val_acc]).tolist())
    model.load_state_dict(best_state)
    return rows
