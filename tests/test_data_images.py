"""The ``imagefolder`` dataset, ``cnn`` and the torchvision zoo on PNG files written here.

The folders are scikit-learn's 1,797 real 8x8 digits saved as PNGs; ``cnn`` must
reach 97% on them and ``resnet18`` (32x32) must train, export to every format
and verify. Both the in-memory and the streamed path give the same pixels as
``tk predict``'s reader; a corrupt file is skipped and counted, or refused with
``--strict-data``; a bad folder is exit 2, one line, and no run directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tk_main
from tk_data.images import load_imagefolder

from toolkit.predict.images import image_files
from toolkit.predict.tabular import read_for_model


def write_digits(root: Path, per_class: int | None = None) -> Path:
    """load_digits as ``root/<digit>/<index>.png`` (8-bit grayscale, 0..16 -> 0..255)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    counts = dict.fromkeys(range(10), 0)
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        if per_class is not None and counts[int(label)] >= per_class:
            continue
        counts[int(label)] += 1
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("png") / "digits")


def _summary(cwd: Path) -> dict:
    return json.loads((cwd / "runs" / "latest" / "summary.json").read_text())


def test_cnn_reaches_97_percent_on_digit_pngs(tk, digits):
    res = tk("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={digits}",
             "--data-param", "grayscale=true", "--epochs", "10")  # fmt: skip
    assert res.code == 0, res.err
    assert "1797 images, 10 classes" in res.out and "in memory" in res.out
    accuracy = _summary(tk.cwd)["test"]["accuracy"]
    print(f"cnn on digit PNGs: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.97
    # tk predict on a folder of images: each file decoded as in training, class names out.
    res = tk("predict", "latest", "--input", str(digits / "7"), "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["predictions"]
    assert len(rows) == len(image_files(digits / "7"))
    assert sum(r["class"] == "7" for r in rows) / len(rows) >= 0.95
    assert [r["file"] for r in rows] == [f.name for f in image_files(digits / "7")]
    res = tk("predict", "latest", "--input", str(digits / "7"))  # the table: file after row
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["row", "file", "class", "label", "probability"]
    assert lines[1].split()[:2] == ["1", image_files(digits / "7")[0].name]


@pytest.mark.slow
def test_resnet18_trains_exports_all_formats_and_verifies(tk, tmp_path):
    # 30 digits a class keep one CPU epoch of ResNet-18 at 32x32 to a few seconds.
    folder = write_digits(tmp_path / "digits30", per_class=30)
    res = tk("train", "resnet18", "--dataset", "imagefolder", "--data-param", f"path={folder}",
             "--data-param", "grayscale=true", "--data-param", "size=32x32", "--epochs", "1",
             "--name", "r18")  # fmt: skip
    assert res.code == 0, res.err
    run = tk.cwd / "runs" / "resnet18" / "r18"
    config = json.loads((run / "config.json").read_text())
    assert config["input"]["shape"] == ["batch", 1, 32, 32] and config["outputs"] == 10
    res = tk("export", str(run), "--format", "all")
    assert res.code == 0, res.err
    for name in ("model.onnx", "model.torchscript.pt", "model.pt2"):
        assert (run / name).is_file(), name
    res = tk("verify", str(run / "model.onnx"))
    assert res.code == 0, res.err
    assert "PASS" in res.out


def test_streamed_and_in_memory_paths_give_the_same_pixels(digits):
    import torch

    memory = load_imagefolder(path=str(digits), grayscale=True, size="12x12")
    stream = load_imagefolder(path=str(digits), grayscale=True, size="12x12", max_memory_mb=0)
    assert isinstance(stream["train"], torch.utils.data.Dataset)
    x, y = memory["test"]
    assert x.dtype == np.uint8 and x.shape[1:] == (1, 12, 12)
    ds = stream["test"]
    assert len(ds) == len(x)
    for i in (0, 7, len(ds) - 1):
        pixels, label = ds[i]
        np.testing.assert_array_equal(pixels.numpy(), x[i])
        assert label == y[i]
    assert memory["info"].inputs.to_json() == {
        "kind": "image", "size": [12, 12], "mode": "L", "resample": "bilinear", "scale": 1 / 255
    }  # fmt: skip
    assert "resized 1797 images to 12x12" in " ".join(memory["info"].notes)


def test_predict_reader_decodes_as_training_did(digits, tmp_path):
    from toolkit.data import prepare
    from toolkit.plugins import get_registry

    spec = get_registry().dataset("imagefolder")
    raw = load_imagefolder(path=str(digits), size="10x10")  # RGB, resized
    data = prepare(spec, raw)
    meta = {"input": {"shape": ["batch", 3, 10, 10]}, "inputs": raw["info"].inputs.to_json()}
    files = image_files(digits / "3")
    got = read_for_model(digits / "3", meta)
    assert got.shape == (len(files), 3, 10, 10) and got.dtype == np.float32
    # Each file's row in the training split (files keep their order within a class).
    train = data.train
    flat = train.x.reshape(len(train), -1).numpy()
    compared = 0
    for i in range(0, len(files), 9):
        pixels = np.round(got[i] / raw["info"].inputs.scale).astype(np.uint8).reshape(-1)
        rows = np.flatnonzero((flat == pixels).all(1))
        if not len(rows):
            continue  # that file is in the test split
        # The loop's own transform (uint8 -> float32 * feature_scale), bit for bit.
        np.testing.assert_array_equal(data.features(train.x[rows[:1]]).numpy()[0], got[i])
        compared += 1
    assert compared >= 5
    single = read_for_model(files[0], meta)
    np.testing.assert_array_equal(single[0], got[0])
    assert read_for_model(tmp_path / "x.npy", meta) is None  # numbers: the plain reader


def test_corrupt_images_are_skipped_and_counted_or_refused(digits, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "bad"
    shutil.copytree(digits, folder)
    (folder / "3" / "zz_garbage.png").write_bytes(b"not a png")
    good = next((folder / "4").glob("*.png")).read_bytes()
    (folder / "4" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    for budget in (1024, 0):  # in memory, and streamed
        out = load_imagefolder(path=str(folder), grayscale=True, max_memory_mb=budget)
        info = out["info"]
        assert info.skipped == 2
        assert info.notes[0].startswith("skipped 2 unreadable images (first: ")
        assert "zz_garbage.png: cannot identify image file" in info.notes[0]
        assert (
            len(out["train"][1] if budget else out["train"])
            + len(out["test"][1] if budget else out["test"])
            == 1797
        )
    monkeypatch.chdir(tmp_path)
    code = tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={folder}",
                   "--data-param", "grayscale=true", "--strict-data")  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zz_garbage.png: cannot identify image file" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_train_val_test_folders_are_used_as_they_are(digits, tmp_path):
    root = tmp_path / "split"
    for split, keep in (("train", slice(0, 12)), ("val", slice(12, 15)), ("test", slice(15, 18))):
        for cls in ("1", "7"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((digits / cls).glob("*.png"))[keep]:
                shutil.copy(f, root / split / cls / f.name)
    out = load_imagefolder(path=str(root), grayscale=True)
    assert out["info"].target == "binary" and list(out["info"].class_names) == ["1", "7"]
    assert [len(out[s][1]) for s in ("train", "val", "test")] == [24, 6, 6]
    assert out["train"][1].dtype == np.float32  # binary targets are 0/1 floats


def _bad_folders(tmp: Path, digits: Path) -> dict[str, tuple[str, list[str]]]:
    (tmp / "empty").mkdir()
    (tmp / "one" / "cat").mkdir(parents=True)
    shutil.copy(next((digits / "1").glob("*.png")), tmp / "one" / "cat" / "a.png")
    (tmp / "hollow" / "a").mkdir(parents=True)
    (tmp / "hollow" / "b").mkdir(parents=True)
    shutil.copy(next((digits / "1").glob("*.png")), tmp / "hollow" / "a" / "a.png")
    (tmp / "notrain" / "test" / "a").mkdir(parents=True)
    return {
        "missing folder": ("nowhere", ["nowhere", "not found"]),
        "empty folder": ("empty", ["empty", "no class folders"]),
        "one class": ("one", ["one class folder ('cat')"]),
        "class without images": ("hollow", ["hollow/b", "no images"]),
        "split without train": ("notrain", ["notrain", "no train/"]),
    }


@pytest.mark.parametrize(
    "case",
    ["missing folder", "empty folder", "one class", "class without images", "split without train"],
)
def test_bad_folders_are_one_line_exit_2_and_no_run(digits, tmp_path, monkeypatch, capsys, case):
    path, names = _bad_folders(tmp_path, digits)[case]
    monkeypatch.chdir(tmp_path)
    assert tk_main("train", "cnn", "--dataset", "imagefolder", "--data-param", f"path={path}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tk: error: imagefolder: "), err
    for name in names:
        assert name in err[0], (name, err[0])
    assert not (tmp_path / "runs").exists()
