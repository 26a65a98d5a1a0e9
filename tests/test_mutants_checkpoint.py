"""Checkpoints field by field and file by file: each test kills mutants of
``toolkit/checkpoint.py`` (``make mutate MODULES=checkpoint``).

A state goes through its bytes and must come back equal (tensors bit for bit, the
optimizer's integer ids as integers); the RNGs restored must draw what they drew
after the capture; the files on disk follow the order the module documents (write,
list in the manifest, prune the oldest listed).
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from toolkit import checkpoint as ck
from toolkit import integrity
from toolkit.checkpoint import TrainState
from toolkit.errors import UsageError
from toolkit.integrity import IntegrityError


def _draws():
    return (torch.rand(3).tolist(), random.random(), float(np.random.random()),
            float(np.random.standard_normal()))  # fmt: skip


def test_every_global_rng_is_captured_and_restored():
    np.random.standard_normal()  # leave a cached gauss in numpy's state
    state = TrainState()
    ck.capture_rng(state)
    assert state.cuda_rng == [] and state.np_rng["name"] == "MT19937"
    assert type(state.np_rng["pos"]) is int and type(state.np_rng["cached"]) is float
    expected = _draws()
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    ck.restore_rng(state)
    assert _draws() == expected
    # a state without RNGs (an old checkpoint) leaves the current ones alone
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    ahead = _draws()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    ck.restore_rng(TrainState())
    assert _draws() == ahead


def _full_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(7)
    state = TrainState(
        epoch=3, step=17, batch_index=2, partial=[1.5, 0.25, 8.0],
        history=[{"epoch": 1, "loss": 0.5}], model_state=model.state_dict(),
        optimizer_state=opt.state_dict(), gen_state=gen.get_state(),
        epoch_gen_state=gen.get_state().clone(),
        scheduler_state={"last_epoch": 4, "t": torch.full((2,), 3.0)},
        scaler_state={"scale": torch.tensor(1024.0)}, reason="interrupt",
        callbacks={"best": {"epoch": 2, "weights": {"w": torch.ones(2)}, "pair": (1, 2),
                            "pairs": [torch.zeros(1), torch.ones(1)]}},
    )  # fmt: skip
    ck.capture_rng(state)
    state.cuda_rng = [torch.arange(4, dtype=torch.uint8)]  # as a CUDA run records it
    return state


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b) and a.dtype == b.dtype
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def test_a_state_comes_back_from_its_bytes_field_by_field():
    state = _full_state()
    data = ck.encode(state)
    assert data == ck.encode(state)  # the same state, the same bytes
    back = ck.decode(data)
    for name in ("epoch", "step", "batch_index", "partial", "history", "reason", "py_rng",
                 "np_rng"):  # fmt: skip
        _assert_same(getattr(state, name), getattr(back, name))
    for name in ("model_state", "gen_state", "epoch_gen_state", "torch_rng", "cuda_rng"):
        _assert_same(getattr(state, name), getattr(back, name))
    _assert_same(state.optimizer_state["state"], back.optimizer_state["state"])
    assert list(back.optimizer_state["state"]) == [0, 1, 2, 3]  # integer ids again
    assert back.optimizer_state["param_groups"] == json.loads(
        json.dumps(state.optimizer_state["param_groups"])
    )
    cb = back.callbacks["best"]
    assert (
        cb["epoch"] == 2 and cb["pair"] == [1, 2] and torch.equal(cb["weights"]["w"], torch.ones(2))
    )
    _assert_same(cb["pairs"], [torch.zeros(1), torch.ones(1)])
    _assert_same(back.scheduler_state, state.scheduler_state)
    _assert_same(back.scaler_state, state.scaler_state)
    # the tensors are stored under their path in the state
    keys = set(st_load(data))
    assert {"model.0.weight", "model.1.bias", "optimizer.state.0.exp_avg", "rng.torch",
            "rng.gen", "rng.epoch_gen", "callbacks.best.weights.w", "scheduler.t",
            "scaler.scale", "callbacks.best.pairs.1", "rng.cuda.0"} <= keys  # fmt: skip
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == ["tk_checkpoint"]
    # a loaded optimizer state resumes: torch accepts it
    opt = torch.optim.Adam(
        torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)).parameters()
    )
    opt.load_state_dict(back.optimizer_state)


def test_tensors_are_copied_to_contiguous_cpu_storage():
    t = torch.arange(6.0).reshape(2, 3).t()  # not contiguous
    state = TrainState(model_state={"w": t})
    back = ck.decode(ck.encode(state))
    assert torch.equal(back.model_state["w"], t)
    tensors: dict = {}
    ref = ck._split_tensors("m", t, tensors)
    assert ref == {"__tensor__": "m"} and tensors["m"].is_contiguous()
    assert tensors["m"].data_ptr() != t.data_ptr()  # a copy: later steps do not change it


def _meta(**meta):
    return st_save({"x": torch.zeros(1)}, metadata={"tk_checkpoint": json.dumps(meta)})


def test_bytes_that_are_not_a_checkpoint_are_an_integrity_error():
    with pytest.raises(IntegrityError) as info:
        ck.decode(b"\x00" * 20, "run/x.safetensors")
    assert info.value.message.startswith("run/x.safetensors is not a readable tk checkpoint: ")
    with pytest.raises(
        IntegrityError, match=r"^checkpoint is not a readable tk checkpoint: KeyError"
    ):
        ck.decode(st_save({"x": torch.zeros(1)}, metadata={"other": "1"}))
    with pytest.raises(IntegrityError) as info:
        ck.decode(_meta(format_version=2), "f")
    assert info.value.message == "f: unsupported checkpoint format 2"
    with pytest.raises(IntegrityError, match=r"^checkpoint: unsupported checkpoint format None"):
        ck.decode(_meta())


def test_older_checkpoints_without_callbacks_reason_or_cuda_states_decode():
    none = {"__tensor__": "x"}
    meta = dict(format_version=1, epoch=1, step=2, batch_index=0, partial=[0, 0, 0],
                history=[], model={}, optimizer={}, scheduler=None, scaler=None,
                rng={"torch": none, "cuda": None, "gen": None, "epoch_gen": None},
                py_rng=None, np_rng=None)  # fmt: skip
    back = ck.decode(_meta(**meta))
    assert back.callbacks == {} and back.reason == "periodic" and back.cuda_rng == []
    assert back.optimizer_state == {"state": {}, "param_groups": []}
    assert torch.equal(back.torch_rng, torch.zeros(1))


def test_checkpoint_names():
    assert ck.checkpoint_name(TrainState(epoch=12)) == "epoch-000012.safetensors"
    mid = TrainState(epoch=3, step=1234, batch_index=5)
    assert ck.checkpoint_name(mid) == "epoch-000003-step-000001234.safetensors"


def _save(run, epoch, step=0, batch=0, keep=3):
    return ck.save(run, TrainState(epoch=epoch, step=step, batch_index=batch), keep=keep)


def test_save_lists_in_order_and_keeps_the_newest(tmp_path):
    run = tmp_path / "run"
    p1 = _save(run, 1)
    assert p1 == run / "checkpoints" / "epoch-000001.safetensors"
    assert integrity.read_manifest(run) == {
        "checkpoints/epoch-000001.safetensors": ck.runs.sha256_file(p1)
    }
    mid = _save(run, 1, step=15, batch=3)  # inside epoch 2: after the end of epoch 1
    p2 = _save(run, 2, step=20)
    assert ck.list_checkpoints(run) == [p1, mid, p2]
    p3 = _save(run, 3, step=30)  # keep 3: the oldest goes, from the manifest first
    assert ck.list_checkpoints(run) == [mid, p2, p3] and not p1.exists()
    assert "checkpoints/epoch-000001.safetensors" not in integrity.read_manifest(run)
    for e in (4, 5):
        _save(run, e, keep=0)  # 0 keeps all
    assert len(ck.list_checkpoints(run)) == 5
    _save(run, 6, keep=1)
    assert [p.name for p in ck.list_checkpoints(run)] == ["epoch-000006.safetensors"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-000006.safetensors"]


def test_only_listed_checkpoint_files_count(tmp_path):
    run = tmp_path / "run"
    p1, p2 = _save(run, 1), _save(run, 2)
    (run / "checkpoints" / "epoch-000009.safetensors").write_bytes(b"unlisted")
    other = run / "elsewhere"
    other.mkdir()
    (other / "epoch-000007.safetensors").write_bytes(b"x")
    (run / "checkpoints" / "notes.safetensors").write_bytes(b"x")
    integrity.record(run, other / "epoch-000007.safetensors")
    integrity.record(run, run / "checkpoints" / "notes.safetensors")
    p2_rel = "checkpoints/epoch-000002.safetensors"
    assert ck.list_checkpoints(run) == [p1, p2]
    p2.unlink()  # listed, but gone
    assert ck.list_checkpoints(run) == [p1]
    assert p2_rel in integrity.read_manifest(run)


def test_the_newest_valid_checkpoint_skips_corrupt_and_excluded_ones(tmp_path):
    run = tmp_path / "run"
    p1, p2, p3 = _save(run, 1), _save(run, 2), _save(run, 3)
    assert ck.newest_valid_checkpoint(run) == p3
    assert ck.newest_valid_checkpoint(run, exclude=p3) == p2
    p3.write_bytes(b"corrupt")
    assert ck.newest_valid_checkpoint(run) == p2
    for p in (p1, p2):
        p.write_bytes(b"corrupt")
    assert ck.newest_valid_checkpoint(run) is None


def test_load_checks_the_file_and_names_the_newest_valid_one(tmp_path):
    run = tmp_path / "run"
    p1, p2 = _save(run, 1), _save(run, 2, step=9)
    assert ck.load(p2).step == 9
    assert ck.load(str(p1)).epoch == 1
    with pytest.raises(UsageError) as info:
        ck.load(run / "checkpoints" / "epoch-000005.safetensors")
    assert (
        info.value.message
        == f"checkpoint {run / 'checkpoints' / 'epoch-000005.safetensors'} not found"
    )
    pickle = run / "checkpoints" / "model.pt"
    pickle.write_bytes(b"x")
    with pytest.raises(IntegrityError) as info:
        ck.load(pickle)
    assert info.value.message == (
        f"{pickle} is not a tk checkpoint (tk writes .safetensors checkpoints and never "
        "unpickles files)"
    )
    p2.write_bytes(p2.read_bytes()[:-1] + b"!")
    with pytest.raises(IntegrityError) as info:
        ck.load(p2)
    assert info.value.hint == f"the newest valid checkpoint is {p1}"
    p1.write_bytes(b"bad")
    with pytest.raises(IntegrityError) as info:
        ck.load(p2)
    assert info.value.hint is None


def test_cleanup_removes_dead_temps_and_unlisted_checkpoints(tmp_path):
    run = tmp_path / "run"
    p1 = _save(run, 1)
    ckdir = run / "checkpoints"
    unlisted = ckdir / "epoch-000002.safetensors"
    unlisted.write_bytes(b"half")
    stray = ckdir / "README"
    stray.write_bytes(b"keep")
    dead = ckdir / ".epoch-000003.safetensors.tmp-999999999-x"
    dead.write_bytes(b"t")
    top = run / ".summary.json.tmp-999999999-y"
    top.write_bytes(b"t")
    live = ckdir / f".epoch-000004.safetensors.tmp-{os.getpid()}-z"
    live.write_bytes(b"t")
    removed = ck.cleanup(run)
    assert sorted(removed) == sorted([unlisted, dead, top])
    assert p1.exists() and stray.exists() and live.exists()
    assert ck.cleanup(tmp_path / "no-run") == []


def test_write_or_link_shares_the_inode_of_identical_bytes(tmp_path):
    last = tmp_path / "last.safetensors"
    last.write_bytes(b"weights")
    best = tmp_path / "model.safetensors"
    ck.write_or_link(best, b"weights", last)
    assert best.read_bytes() == b"weights" and best.stat().st_ino == last.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors", "model.safetensors"]
    other = tmp_path / "other.safetensors"
    ck.write_or_link(other, b"own bytes", None)
    assert other.read_bytes() == b"own bytes" and other.stat().st_ino != last.stat().st_ino
    # a link that cannot be made (the source is gone) writes the bytes instead
    ck.write_or_link(tmp_path / "copy.safetensors", b"copied", tmp_path / "missing")
    assert (tmp_path / "copy.safetensors").read_bytes() == b"copied"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "copy.safetensors", "last.safetensors", "model.safetensors", "other.safetensors"
    ]  # fmt: skip


def test_the_default_keeps_three_and_load_refuses_what_the_manifest_does_not_vouch_for(tmp_path):
    run = tmp_path / "run"
    for e in range(1, 5):
        ck.save(run, TrainState(epoch=e))
    assert [p.name for p in ck.list_checkpoints(run)] == [
        "epoch-000002.safetensors", "epoch-000003.safetensors", "epoch-000004.safetensors"
    ]  # fmt: skip
    ck.write_encoded(run, "epoch-000005.safetensors", ck.encode(TrainState(epoch=5)))
    assert len(ck.list_checkpoints(run)) == 3
    # complete bytes, but never listed: refused
    unlisted = run / "checkpoints" / "epoch-000009.safetensors"
    unlisted.write_bytes(ck.encode(TrainState(epoch=9)))
    with pytest.raises(IntegrityError, match=r"is not listed in its run's manifest\.json"):
        ck.load(unlisted)
    # listed and matching, but not a checkpoint: the error names the file
    junk = run / "checkpoints" / "epoch-000008.safetensors"
    junk.write_bytes(b"junk")
    integrity.record(run, junk)
    with pytest.raises(IntegrityError) as info:
        ck.load(junk)
    assert info.value.message.startswith(f"{junk} is not a readable tk checkpoint: ")
