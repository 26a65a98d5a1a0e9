"""Never train on silently wrong data (issue 19): hostile folders, images and tables.

Each case runs tk in this process and asserts the exit code, that stderr is one
``tk: error:`` line with no traceback (or that the run's notes say what was left
out, filled or dropped), that a refused run leaves no run directory, and that
nothing else under the case's folder changed. Images and tables are tiny and
written here: symbolic link loops, links to ``/`` and outside the folder, 16-bit
PNGs checked pixel by pixel, a decompression bomb, scikit-learn's shipped CSVs,
holes in text columns, latin-1, gzip and binary files named ``.csv``, 1e308, and a
really installed dataset plugin that yields NaN and inf.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import sklearn
from conftest import build_wheel, pip_install_target
from hostile import assert_one_line, assert_unchanged, run, snapshot
from PIL import Image

from toolkit import plugins
from toolkit.images import decode_pixels

SKLEARN_DATA = Path(sklearn.__file__).parent / "datasets" / "data"
SIZE = 8  # every image is SIZE x SIZE
EPOCHS = ("--epochs", "1")


# ---------------------------------------------------------------- helpers


def png16(path: Path, a: np.ndarray) -> Path:
    """A real 16-bit PNG written byte by byte: (H, W) gray or (H, W, 3) RGB, big-endian."""
    a = np.asarray(a, dtype=">u2")
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def bomb(path: Path) -> Path:
    """A PNG that claims 40000 x 40000 pixels: PIL refuses it as a decompression bomb."""
    png16(path, np.zeros((1, 1), np.uint16))
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def photos(root: Path) -> Path:
    """Two classes of six 8x8 RGB PNGs: cat dark, dog light."""
    rng = np.random.default_rng(0)
    for label, level in (("cat", 50), ("dog", 200)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.normal(level, 10, (SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def gradient() -> np.ndarray:
    """16-bit values spanning the range: 0, 257, ..., 65535 and the rest in between."""
    return (np.arange(SIZE * SIZE, dtype=np.uint32).reshape(SIZE, SIZE) * 1040).astype(np.uint16)


def train_images(capsys, root: Path, *extra: str):
    return run(
        capsys,
        "train",
        "cnn",
        "--dataset",
        "imagefolder",
        "--data-param",
        f"path={root}",
        "--param",
        "channels=4",
        "--param",
        "blocks=1",
        *EPOCHS,
        *extra,
    )


def train_csv(capsys, *params: str, extra: tuple[str, ...] = ()):
    args = [a for p in params for a in ("--data-param", p)]
    return run(
        capsys, "train", "mlp", "--dataset", "csv", "--param", "hidden=4", *args, *EPOCHS, *extra
    )


def latest_config(cwd: Path) -> dict:
    return json.loads((cwd / "runs" / "latest" / "config.json").read_text())


def refused(outcome, cwd: Path, before: dict, *needles: str) -> str:
    """Exit 2, one line holding the needles, no run directory, nothing else changed."""
    line = assert_one_line(outcome, 2, *needles)
    assert not (cwd / "runs").exists()
    assert_unchanged(before, snapshot(cwd))
    return line


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh working directory (runs/ goes here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- image folders


def test_a_link_loop_reads_every_image_once_and_says_so(here, capsys):
    root = photos(here / "ph")
    (root / "cat" / "up").symlink_to("..")  # cat/up/dog/... would be dogs labelled cat
    (root / "all").symlink_to(".")  # a class folder that is the whole folder again
    before = snapshot(root)
    out = train_images(capsys, root)
    assert out.code == 0, out.err
    notes = latest_config(here)["data_notes"]
    assert notes[0].startswith(f"{root}: 12 images, 2 classes"), notes
    left = next(n for n in notes if n.startswith("left out"))
    assert "links to a parent folder (a loop): 1 (all)" in left, left
    assert "symbolic links leaving their folder: 1 (cat/up)" in left, left
    assert_unchanged(before, snapshot(root))


def test_a_link_to_the_root_of_the_disk_is_not_walked(here, capsys):
    root = photos(here / "ph")
    (root / "dog" / "everything").symlink_to("/")
    (root / "everything").symlink_to("/")  # as a class folder too
    before = snapshot(here)
    out = train_images(capsys, root)
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here), allowed=[here / "runs"])
    notes = latest_config(here)["data_notes"]
    assert notes[0].startswith(f"{root}: 12 images"), notes
    assert any("symbolic links leaving their folder: 2" in n for n in notes), notes


def test_links_outside_the_folder_and_duplicate_files_are_left_out(here, capsys):
    root = photos(here / "ph")
    elsewhere = photos(here / "elsewhere")
    (root / "cat" / "borrowed.png").symlink_to(elsewhere / "cat" / "0.png")
    (root / "cat" / "dog0.png").symlink_to(root / "dog" / "0.png")  # a dog labelled cat
    (root / "dog" / "again.png").symlink_to("0.png")  # the same file twice
    os.link(root / "dog" / "1.png", root / "dog" / "hard.png")  # a hard link: one file
    before = snapshot(here)
    out = train_images(capsys, root)
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here), allowed=[here / "runs"])
    notes = latest_config(here)["data_notes"]
    assert notes[0].startswith(f"{root}: 12 images"), notes
    left = next(n for n in notes if n.startswith("left out"))
    assert "symbolic links leaving their folder: 2" in left, left
    assert "files already read through another path: 2" in left, left


def test_a_class_of_nothing_but_links_elsewhere_is_one_line(here, capsys):
    root = photos(here / "ph")
    (root / "bird").mkdir()
    (root / "bird" / "a.png").symlink_to(root / "cat" / "0.png")
    before = snapshot(here)
    out = train_images(capsys, root)
    refused(out, here, before, "bird has no images", "symbolic links leaving their folder")


def test_predict_reads_each_file_of_a_looping_folder_once(here, capsys):
    root = photos(here / "ph")
    assert train_images(capsys, root).code == 0
    (root / "cat" / "up").symlink_to("..")
    (root / "dog" / "twice.png").symlink_to("0.png")
    before = snapshot(here)
    out = run(capsys, "predict", "latest", "--input", str(root), "--json")
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here))
    rows = json.loads(out.out)["predictions"]
    assert sorted(r["file"] for r in rows) == sorted(
        f"{c}/{i}.png" for c in ("cat", "dog") for i in range(6)
    )
    warning = [line for line in out.err.splitlines() if line.startswith("tk: warning:")]
    assert len(warning) == 1 and "left out 2 paths" in warning[0], out.err


# ---------------------------------------------------------------- 16-bit and odd images


@pytest.mark.parametrize("kind", ["gray", "rgb", "I;16 via Pillow", "I (32-bit TIFF)"])
def test_16_bit_images_decode_to_their_high_byte(tmp_path, kind):
    g = gradient()
    path = tmp_path / ("x.tif" if kind.startswith("I (") else "x.png")
    if kind == "gray":
        png16(path, g)
    elif kind == "rgb":
        png16(path, np.stack([g, g, g], axis=-1))
    elif kind.startswith("I;16"):
        Image.fromarray(g).save(path)
    else:
        Image.fromarray(g.astype(np.int32)).save(path)
    want = (g >> 8).astype(np.uint8)
    assert want[0, 1] == 4 and (want == 255).sum() == 1  # convert() alone: 63 of 64 at 255
    for mode in ("L", "RGB"):
        pixels, resized = decode_pixels(path, (SIZE, SIZE), mode)
        assert not resized
        assert pixels.dtype == np.uint8
        for channel in pixels:
            np.testing.assert_array_equal(channel, want)


def test_16_bit_pngs_train_and_predict_with_the_same_pixels(here, capsys):
    from tk_data.images import load_imagefolder

    from toolkit.predict.tabular import read_for_model

    root = here / "scans"
    g = gradient()
    for label, flip in (("a", False), ("b", True)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            png16(root / label / f"{i}.png", (65535 - g) if flip else g)
    data = load_imagefolder(path=str(root), grayscale=True, test_fraction=0.25)
    pixels, labels = data["train"]
    assert pixels.dtype == np.uint8
    for row, label in zip(pixels, labels, strict=True):
        want = ((65535 - g) if label else g) >> 8
        np.testing.assert_array_equal(row[0], want.astype(np.uint8))
    out = train_images(capsys, root, "--data-param", "grayscale=true")
    assert out.code == 0, out.err
    config = latest_config(here)
    x = read_for_model(root / "a" / "0.png", config)
    np.testing.assert_allclose(x[0, 0], (g >> 8) / 255, rtol=1e-6)
    out = run(capsys, "predict", "latest", "--input", str(root / "b"))
    assert out.code == 0 and len(out.out.strip().splitlines()) == 5, (out.out, out.err)


def test_float_and_out_of_range_pixels_are_skipped_or_refused(here, capsys):
    root = photos(here / "ph")
    Image.fromarray(np.ones((SIZE, SIZE), np.float32)).save(root / "cat" / "float.tif")
    Image.fromarray(np.full((SIZE, SIZE), 70000, np.int32)).save(root / "dog" / "wide.tif")
    out = train_images(capsys, root)
    assert out.code == 0, out.err
    notes = latest_config(here)["data_notes"]
    assert notes[0].startswith("skipped 2 unreadable images"), notes
    assert "32-bit float pixels" in notes[0], notes
    shutil.rmtree(here / "runs")
    before = snapshot(here)
    out = train_images(capsys, root, "--strict-data")
    refused(out, here, before, "2 unreadable sample(s)")


def test_predict_skips_a_decompression_bomb_and_names_it(here, capsys):
    root = photos(here / "ph")
    assert train_images(capsys, root).code == 0
    bomb(root / "cat" / "bomb.png")
    (root / "cat" / "junk.png").write_bytes(b"not an image")
    before = snapshot(here)
    out = run(capsys, "predict", "latest", "--input", str(root / "cat"), "--json")
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here))
    assert [r["file"] for r in json.loads(out.out)["predictions"]] == [f"{i}.png" for i in range(6)]
    warnings = [line for line in out.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "Traceback" not in out.err, out.err
    assert warnings[0].startswith("tk: warning: skipped 2 of 8 images"), warnings
    assert "bomb.png" in warnings[0] and "decompression bomb" in warnings[0], warnings
    assert "junk.png: cannot identify image file" in warnings[0], warnings


def test_predict_on_a_bomb_alone_is_one_line(here, capsys):
    root = photos(here / "ph")
    assert train_images(capsys, root).code == 0
    lone = here / "lone"
    lone.mkdir()
    bomb(lone / "bomb.png")
    before = snapshot(here)
    assert_one_line(
        run(capsys, "predict", "latest", "--input", str(lone / "bomb.png")),
        2,
        "bomb.png",
        "decompression bomb",
    )
    assert_one_line(
        run(capsys, "predict", "latest", "--input", str(lone)), 2, "no readable image among 1"
    )
    assert_unchanged(before, snapshot(here))


def test_a_bomb_in_a_training_folder_is_skipped_and_counted(here, capsys):
    root = photos(here / "ph")
    bomb(root / "dog" / "bomb.png")
    out = train_images(capsys, root)
    assert out.code == 0, out.err
    notes = latest_config(here)["data_notes"]
    assert notes[0].startswith("skipped 1 unreadable images (first: ") and "bomb" in notes[0]


# ---------------------------------------------------------------- scikit-learn's own files


def test_iris_as_shipped_trains_with_its_class_names(here, capsys):
    out = train_csv(capsys, f"path={SKLEARN_DATA / 'iris.csv'}", "target=target")
    assert out.code == 0, out.err
    config = latest_config(here)
    assert config["class_names"] == ["setosa", "versicolor", "virginica"]
    assert config["feature_names"] == ["feature_0", "feature_1", "feature_2", "feature_3"]
    assert "scikit-learn's layout (150 rows, 4 features)" in config["data_notes"][0]


def test_a_class_name_of_iris_as_the_target_is_one_line(here, capsys):
    before = snapshot(here)
    out = train_csv(capsys, f"path={SKLEARN_DATA / 'iris.csv'}", "target=virginica")
    refused(out, here, before, "'virginica' is a class name", "target=target")


# name -> (target, features, task, classes) the file reads as; None: refused, and why.
SKLEARN_FILES = {
    "iris.csv": ("target", 4, "multiclass", 3),
    "wine_data.csv": ("target", 13, "multiclass", 3),
    "breast_cancer.csv": ("target", 30, "binary", 2),
    "digits.csv.gz": ("column_65", 64, "multiclass", 10),
    "diabetes_data_raw.csv.gz": ("column_10", 9, "regression", None),
    "linnerud_exercise.csv": ("Jumps", 2, "multiclass", 17),  # few integers: classes
    "linnerud_physiological.csv": ("Pulse", 2, "multiclass", 11),
    "diabetes_target.csv.gz": ("column_1", None, "no feature columns besides the target", None),
}


def test_every_csv_scikit_learn_ships_is_covered():
    shipped = {p.name for p in SKLEARN_DATA.iterdir() if ".csv" in p.name}
    assert shipped == set(SKLEARN_FILES)


@pytest.mark.parametrize("name", sorted(SKLEARN_FILES))
def test_scikit_learn_csv_reads_as_shipped_or_is_refused_in_one_line(here, capsys, name):
    from tk_data.tabular import load_csv

    target, width, task, classes = SKLEARN_FILES[name]
    path = SKLEARN_DATA / name
    if width is None:
        before = snapshot(here)
        refused(train_csv(capsys, f"path={path}", f"target={target}"), here, before, name, task)
        return
    data = load_csv(path=str(path), target=target)
    info = data["info"]
    assert info.feature_shape == (width,) and info.target == task, info
    assert info.num_classes == classes
    rows = len(data["train"][0]) + len(data["test"][0])
    expected = {
        "iris.csv": 150,
        "wine_data.csv": 178,
        "breast_cancer.csv": 569,
        "digits.csv.gz": 1797,
        "diabetes_data_raw.csv.gz": 442,
    }.get(name, 20)
    assert rows == expected
    assert np.isfinite(data["train"][0]).all()


# ---------------------------------------------------------------- holes in tables


def people(path: Path, sex_gap: bool = True, target_gaps: int = 0) -> Path:
    """age, sex, town -> bought: 40 rows; row 4's sex empty, the first targets missing."""
    rng = np.random.default_rng(1)
    lines = ["age,sex,town,bought"]
    for i in range(40):
        sex = "M" if i % 3 else "F"
        if sex_gap and i == 3:
            sex = ""
        bought = "" if i < target_gaps else str(int(rng.random() < 0.5))
        lines.append(f"{20 + i},{sex},{('north', 'south')[i % 2]},{bought}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_missing_text_value_is_refused_without_a_strategy(here, capsys):
    people(here / "p.csv")
    before = snapshot(here)
    out = train_csv(capsys, "path=p.csv", "target=bought")
    refused(out, here, before, "p.csv", "row 4", "column 'sex'", "fillna-text=mode")


def test_fillna_mean_fills_text_with_its_most_frequent_training_value(here, capsys):
    from toolkit.predict.tabular import read_for_model

    people(here / "p.csv")
    before = snapshot(here)
    out = train_csv(capsys, "path=p.csv", "target=bought", "fillna=mean")
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here), allowed=[here / "runs"])
    config = latest_config(here)
    assert config["inputs"]["fill"]["sex"] == "M"  # 26 M, 13 F among the given values
    assert (
        "filled 1 missing values: sex 1 with the most frequent training value 'M'"
        in (config["data_notes"])
    )
    (here / "new.csv").write_text("age,sex,town\n30,,north\n30,M,north\n")
    x = read_for_model(here / "new.csv", config)
    np.testing.assert_array_equal(x[0], x[1])  # the gap reads as training filled it


def test_rows_with_a_missing_target_are_dropped_and_counted(here, capsys):
    people(here / "p.csv", sex_gap=False, target_gaps=3)
    before = snapshot(here)
    out = train_csv(capsys, "path=p.csv", "target=bought")
    refused(out, here, before, "row 1", "(the target)", "drop-missing-target=true")
    out = train_csv(capsys, "path=p.csv", "target=bought", "drop-missing-target=true")
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here), allowed=[here / "runs"])
    notes = latest_config(here)["data_notes"]
    assert "37 rows" in notes[0], notes
    dropped = "dropped 3 rows whose target 'bought' is missing (rows 1, 2, 3; "
    assert any(n.startswith(dropped) for n in notes), notes


# ---------------------------------------------------------------- files that are not tables


def _bad_files(tmp: Path) -> dict[str, tuple[bytes, tuple[str, ...]]]:
    rows = b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"
    return {
        "duplicate columns": (b"a,b,a,y\n1,2,3,0\n4,5,6,1\n", ("line 1, columns 1 and 3", "'a'")),
        "gzip named .csv": (__import__("gzip").compress(rows), ("gzip-compressed", "t.csv.gz")),
        "binary named .csv": (bytes(range(256)) * 4, ("binary data", "NUL byte at offset 0")),
        "zip named .csv": (b"PK\x03\x04" + bytes(60), ("a zip archive",)),
        "1e308": (b"a,b,y\n1,2,0\n3,1e308,1\n5,6,0\n7,8,1\n", ("row 2", "column 'b'", "float32")),
        "inf": (b"a,b,y\n1,2,0\n3,inf,1\n5,6,0\n7,8,1\n", ("row 2", "column 'b'", "not finite")),
    }


@pytest.mark.parametrize(
    "case",
    ["duplicate columns", "gzip named .csv", "binary named .csv", "zip named .csv", "1e308", "inf"],
)
def test_a_file_that_is_not_a_clean_table_is_one_line(here, capsys, case):
    data, needles = _bad_files(here)[case]
    (here / "t.csv").write_bytes(data)
    before = snapshot(here)
    line = refused(train_csv(capsys, "path=t.csv", "target=y"), here, before, "t.csv", *needles)
    assert line.isprintable(), line  # never raw bytes


def test_a_latin_1_file_trains_and_predicts_with_its_letters(here, capsys):
    towns = ["Zürich", "Genève", "Bern"]
    lines = ["a,town,y"] + [f"{i},{towns[i % 3]},{i % 2}" for i in range(30)]
    (here / "l.csv").write_bytes("\n".join(lines).encode("latin-1"))
    before = snapshot(here)
    out = train_csv(capsys, "path=l.csv", "target=y")
    assert out.code == 0, out.err
    assert_unchanged(before, snapshot(here), allowed=[here / "runs"])
    config = latest_config(here)
    town = next(c for c in config["inputs"]["columns"] if c["name"] == "town")
    assert town["categories"] == ["Bern", "Genève", "Zürich"]
    assert "decoded as cp1252 (not UTF-8)" in config["data_notes"][0]
    (here / "new.csv").write_bytes("a,town\n4,Zürich\n".encode("latin-1"))
    out = run(capsys, "predict", "latest", "--input", "new.csv")
    assert out.code == 0, out.err


def test_1e308_in_a_file_to_predict_is_one_line(here, capsys):
    people(here / "p.csv", sex_gap=False)
    assert train_csv(capsys, "path=p.csv", "target=bought").code == 0
    (here / "new.csv").write_text("age,sex,town\n1e308,M,north\n")
    before = snapshot(here)
    out = run(capsys, "predict", "latest", "--input", "new.csv")
    assert_one_line(out, 2, "row 1", "column 'age'", "float32")
    assert_unchanged(before, snapshot(here))


# ---------------------------------------------------------------- a plugin's NaN and inf

NAN_PLUGIN = """
from toolkit import DatasetSpec, Param, hookimpl

def load(bad="nan", where="x"):
    import numpy as np
    x = np.linspace(-1, 1, 40, dtype=np.float32).reshape(20, 2)
    y = (x[:, 0] > 0).astype(np.float32)
    value = {"nan": np.nan, "inf": np.inf, "big": 1e308}[bad]
    if where == "x":
        x = x.astype(np.float64)
        x[13, 1] = value
    else:
        y = y.astype(np.float64)
        y[13] = value
    return {"train": (x[:16], y[:16]), "test": (x[16:], y[16:])}

@hookimpl
def tk_register_datasets(register):
    register(DatasetSpec(name="holes", load=load, feature_shape=(2,), target="regression",
                         params=[Param("bad", str, "nan"), Param("where", str, "x")]))
"""


@pytest.fixture(scope="module")
def holes_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("holes")
    wheel = build_wheel(
        root / "wheels",
        "tk-test-holes",
        "0.1.0",
        {"tk_test_holes.py": NAN_PLUGIN},
        {"holes": "tk_test_holes"},
    )
    return pip_install_target(wheel, root / "site")


@pytest.mark.parametrize(
    ("bad", "where", "needle"),
    [
        ("nan", "x", "row 14, feature 2: nan"),
        ("inf", "y", "row 14, the target: inf"),
        ("big", "x", "row 14, feature 2: inf"),
    ],
)
def test_a_plugin_yielding_nan_or_inf_is_refused_before_a_run(
    here, capsys, monkeypatch, holes_site, bad, where, needle
):
    monkeypatch.syspath_prepend(str(holes_site))
    monkeypatch.setenv("TK_LOAD_PLUGINS", "tk-torch,tk-test-holes")
    plugins.reset()
    try:
        before = snapshot(here)
        out = run(
            capsys,
            "train",
            "mlp",
            "--dataset",
            "holes",
            "--data-param",
            f"bad={bad}",
            "--data-param",
            f"where={where}",
            *EPOCHS,
        )
        refused(out, here, before, "dataset 'holes' split 'train'", needle)
    finally:
        plugins.reset()


# ---------------------------------------------------------------- where the data is


def test_a_relative_path_and_a_missing_category_go_through_export_from_elsewhere(
    here, capsys, monkeypatch
):
    """Trained with path=p.csv and fillna-text=missing; exported, verified and predicted
    from another directory; then the file changes and the held-out check says so."""
    import hashlib

    from toolkit.predict.tabular import read_for_model

    people(here / "p.csv")
    out = train_csv(
        capsys, "path=p.csv", "target=bought", "fillna-text=missing", extra=("--name", "gaps")
    )
    assert out.code == 0, out.err
    run_dir = here / "runs" / "mlp" / "gaps"
    config = json.loads((run_dir / "config.json").read_text())
    path = str(here / "p.csv")
    assert config["data_params"]["path"] == path
    assert config["data_files"]["path"] == {
        "path": path,
        "kind": "file",
        "size": (here / "p.csv").stat().st_size,
        "sha256": hashlib.sha256((here / "p.csv").read_bytes()).hexdigest(),
    }
    sex = next(c for c in config["inputs"]["columns"] if c["name"] == "sex")
    assert sex == {
        "name": "sex",
        "kind": "category",
        "categories": ["F", "M", "<missing>"],
        "missing": "<missing>",
    }
    assert any("sex 1 with the category '<missing>'" in n for n in config["data_notes"])
    elsewhere = here / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = run(capsys, "export", str(run_dir), "--format", "onnx")
    assert out.code == 0 and "tk: warning" not in out.err, out.err
    assert "held-out test split (8 rows" in out.out, out.out
    (elsewhere / "new.csv").write_text("age,sex,town\n30,,north\n30,F,north\n")
    x = read_for_model(elsewhere / "new.csv", config)
    assert list(x[0, 1:4]) == [0, 0, 1] and list(x[1, 1:4]) == [1, 0, 0]
    eager = run(capsys, "predict", str(run_dir), "--input", "new.csv", "--json")
    onnx = run(capsys, "predict", str(run_dir / "model.onnx"), "--input", "new.csv", "--json")
    assert eager.code == onnx.code == 0, (eager.err, onnx.err)
    probs = [[r["probability"] for r in json.loads(o.out)["predictions"]] for o in (eager, onnx)]
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)
    assert probs[0][0] != probs[0][1]  # the missing category is a value of its own
    with open(here / "p.csv", "a") as fh:  # the file changes after training
        fh.write("99,M,north,1\n")
    out = run(capsys, "verify", str(run_dir / "model.onnx"), "--run", str(run_dir))
    first = out.err.splitlines()[0]
    assert first.startswith(f"tk: warning: {path} (path) changed since the run was trained")
    assert first.endswith("bytes); its held-out split is rebuilt from it as it is now"), first


def test_an_image_folder_is_recorded_by_count_and_digest(here, capsys):
    from toolkit.models import run_data

    root = photos(here / "ph")
    assert train_images(capsys, root).code == 0
    config = latest_config(here)
    record = config["data_files"]["path"]
    assert record["kind"] == "folder" and record["files"] == 12 and len(record["digest"]) == 64
    capsys.readouterr()
    run_data(config)  # what export and verify --run rebuild the held-out split with
    assert capsys.readouterr().err == ""
    (root / "cat" / "0.png").unlink()
    run_data(config)
    err = capsys.readouterr().err
    assert (
        err.startswith(
            f"tk: warning: {root} (path) changed since the run was trained (12 -> 11 files)"
        )
        and len(err.splitlines()) == 1
    )


def test_resuming_on_changed_data_is_refused_and_the_run_untouched(here, capsys):
    people(here / "p.csv", sex_gap=False)
    assert train_csv(capsys, "path=p.csv", "target=bought", extra=("--name", "r")).code == 0
    with open(here / "p.csv", "a") as fh:
        fh.write("99,M,north,1\n")
    before = snapshot(here)
    out = run(capsys, "train", "--resume", "runs/mlp/r", "--epochs", "2")
    assert_one_line(
        out,
        2,
        "resuming",
        "p.csv (path) changed since the run was trained",
        "--allow-config-change",
    )
    assert_unchanged(before, snapshot(here))


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".json"])
def test_1e308_in_plain_numbers_to_predict_is_one_line(here, capsys, suffix):
    assert run(capsys, "train", "circle", "--epochs", "1").code == 0
    path = here / f"points{suffix}"
    if suffix == ".npy":
        np.save(path, np.array([[0.5, 0.5], [1e308, 0.0]]))
    else:
        path.write_text("0.5,0.5\n1e308,0\n" if suffix == ".csv" else "[[0.5, 0.5], [1e308, 0]]")
    before = snapshot(here)
    out = run(capsys, "predict", "latest", "--input", path.name)
    assert_one_line(out, 2, path.name, "row 2, column 1", "float32")
    assert_unchanged(before, snapshot(here))
