"""The trust gate and run integrity, decision by decision: each test kills mutants of
``toolkit/trust.py``, ``toolkit/integrity.py`` and ONNX's external-data check in
``toolkit/formats/onnx.py`` (``make mutate MODULES=trust``).

Files that "run code" here are zip archives laid out as TorchScript or pt2 (what
``formats.detect_format`` decides from); the gate never opens them, so no model is
needed. ONNX files are built with ``onnx.helper``; tk's record of its exports
lives in a temporary ``TK_HOME``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import pytest

from toolkit import integrity, trust
from toolkit.errors import ExportError, UsageError, one_line
from toolkit.formats import META_FILE, ExportFormat, Runner
from toolkit.formats.onnx import check_external_data
from toolkit.integrity import IntegrityError
from toolkit.registry import Registry


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "tk-home"
    monkeypatch.setenv("TK_HOME", str(path))
    return path


def _archive(path: Path, pt2: bool = False, extra: bytes = b"", meta: bytes | None = None) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/data.pkl", b"not unpickled" + extra)
        if meta is not None:
            zf.writestr(f"model/extra/{META_FILE}", meta)
        if pt2:
            zf.writestr("model/archive_format", b"pt2")
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------- where the record is
def test_home_is_tk_home_then_xdg_then_local_share(monkeypatch, tmp_path):
    monkeypatch.setenv("TK_HOME", "~/tkh")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trust.home() == tmp_path / "tkh"  # expanded
    assert trust.store_path() == tmp_path / "tkh" / "exports.sha256"
    monkeypatch.setenv("TK_HOME", "")  # empty: not set
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert trust.home() == tmp_path / "xdg" / "tk"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # invalid by the spec: ignored
    assert trust.home() == tmp_path / ".local" / "share" / "tk"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("TK_HOME")
    assert trust.home() == tmp_path / ".local" / "share" / "tk"


# ------------------------------------------------------------------- the record itself
def test_remember_appends_sha256sum_lines_and_exported_matches_whole_hashes(home, tmp_path):
    a, b = "a" * 64, "b" * 64
    assert not trust.exported(a)  # no record yet
    trust.remember(tmp_path / "x.pt", a)
    trust.remember("rel.pt", b)
    lines = trust.store_path().read_text().splitlines()
    assert lines == [f"{a}  {tmp_path / 'x.pt'}", f"{b}  {Path('rel.pt').absolute()}"]
    assert trust.exported(a) and trust.exported(b)
    assert not trust.exported("c" * 64)
    assert not trust.exported(a[:63])  # a prefix of a recorded hash is not it
    assert oct(trust.store_path().stat().st_mode & 0o777) == "0o644"


def test_a_name_with_a_newline_or_backslash_is_escaped_as_sha256sum_does(home, tmp_path):
    h = "d" * 64
    trust.remember(tmp_path / "odd\nname\\.pt", h)
    shown = str(tmp_path / "odd\nname\\.pt").replace("\\", "\\\\").replace("\n", "\\n")
    assert trust.store_path().read_bytes() == f"\\{h}  {shown}\n".encode()
    assert trust.exported(h)  # the escape marker is not part of the hash
    h2 = "e" * 64
    trust.remember(tmp_path / "back\\slash.pt", h2)
    assert trust.store_path().read_text().splitlines()[-1].startswith(f"\\{h2}  ")


def test_a_torn_last_line_matches_nothing_and_the_next_line_starts_fresh(home, tmp_path):
    h = "f" * 64
    home.mkdir(parents=True)
    trust.store_path().write_bytes(h.encode() + b"  /some/where")  # no newline: torn
    trust.remember(tmp_path / "y.pt", "1" * 64)
    lines = trust.store_path().read_text().split("\n")
    assert lines[1] == f"{'1' * 64}  {tmp_path / 'y.pt'}" and lines[2] == ""
    assert trust.exported("1" * 64)


def test_an_unreadable_record_is_a_usage_error(home):
    home.mkdir(parents=True)
    trust.store_path().mkdir()  # a directory where the file should be
    with pytest.raises(UsageError) as info:
        trust.exported("a" * 64)
    assert info.value.message.startswith(f"cannot read tk's record of its exports {home}")
    assert info.value.hint == "--trust if you trust where the file came from"


# ------------------------------------------------------------------------- the gate
def test_code_files_load_only_when_recorded_or_trusted(home, tmp_path):
    ts = tmp_path / "model.pt"
    data = _archive(ts)
    with pytest.raises(UsageError) as info:
        trust.clear(ts)
    assert info.value.message == (
        f"refusing to load TorchScript file {ts}: loading it runs code, and this tk "
        f"installation did not export these bytes (sha256 {_sha(data)[:12]} is not in "
        f"{trust.store_path()})"
    )
    assert info.value.hint == "--trust if you trust where it came from"
    trusted = trust.clear(ts, trust=True)
    assert (trusted.source, trusted.format, trusted.reason, trusted.name) == (
        data, "torchscript", trust.TRUSTED, str(ts)
    )  # fmt: skip
    assert trusted.allows_pickles
    trust.remember(tmp_path / "elsewhere.pt", _sha(data))  # the hash vouches, not the path
    cleared = trust.clear(str(ts))
    assert (cleared.source, cleared.format, cleared.reason, cleared.name) == (
        data, "torchscript", "exported by this tk installation", str(ts)
    )  # fmt: skip
    assert not cleared.allows_pickles
    pt2 = tmp_path / "model.pt2"
    _archive(pt2, pt2=True)
    with pytest.raises(UsageError, match=r"^refusing to load torch.export file "):
        trust.clear(pt2)
    assert trust.clear(pt2, trust=True).format == "pt2"


def test_onnx_runs_no_code_and_is_checked_for_integrity(tmp_path):
    path = tmp_path / "model.onnx"
    _onnx(path)
    cleared = trust.clear(path)
    assert (cleared.source, cleared.format, cleared.reason, cleared.name) == (
        str(path), "onnx", "runs no code", str(path)
    )  # fmt: skip
    assert not cleared.allows_pickles and cleared.metadata() == {}
    _manifest(tmp_path, {"model.onnx": "0" * 64})
    with pytest.raises(IntegrityError):
        trust.clear(path)
    escape = tmp_path / "escape.onnx"
    _onnx(escape, location="../secret.bin")
    with pytest.raises(IntegrityError):
        trust.clear(escape)


def test_a_code_file_listed_in_a_manifest_must_match_it_even_with_trust(home, tmp_path):
    ts = tmp_path / "model.pt"
    _archive(ts)
    _manifest(tmp_path, {"model.pt": "0" * 64})
    with pytest.raises(IntegrityError):
        trust.clear(ts, trust=True)


def _refuses_missing_file_and_folder(call, missing: Path) -> None:
    """``call`` on a path that is not there, then on a folder: one line each."""
    with pytest.raises(UsageError) as info:
        call(missing)
    assert info.value.message == f"no such file: {missing}"
    assert info.value.hint == "tk export, then the path of the file it wrote"
    with pytest.raises(UsageError) as info:
        call(missing.parent)
    assert info.value.message == f"not a file: {missing.parent}"


def test_missing_paths_and_own_exports(tmp_path):
    _refuses_missing_file_and_folder(trust.clear, tmp_path / "nope.pt")
    data = _archive(tmp_path / "m.pt", pt2=True)
    pt2, ts = trust.formats().format("pt2"), trust.formats().format("torchscript")
    own = trust.own_export(data, pt2)
    assert (own.source, own.format, own.reason, own.name) == (
        data, "pt2", "being exported by tk", "the in-memory export"
    )  # fmt: skip
    assert own.metadata() == {} and own.extra == {}
    extra = {"model.bin": b"companion"}
    assert trust.own_export(data, pt2, extra).extra == extra
    # an exporter whose bytes its own format does not detect: never written
    with pytest.raises(ExportError) as info:
        trust.own_export(data, ts)
    assert info.value.message == "the torchscript exporter wrote bytes that are detected as pt2"
    assert info.value.hint == "fix detect() of the plugin that registers torchscript"


def test_a_file_that_changes_from_an_archive_while_read_is_refused(tmp_path, monkeypatch):
    """The format is decided again on the bytes read; an archive that is one no
    more (swapped between the two reads) is an ExportError, not loaded as ONNX."""
    ts = tmp_path / "model.pt"
    _archive(ts)
    real = Path.read_bytes

    def swapped(self):
        return b"not an archive any more" if self == ts else real(self)

    monkeypatch.setattr(Path, "read_bytes", swapped)
    with pytest.raises(ExportError) as info:
        trust.clear(ts, trust=True)
    assert info.value.message == f"{ts} changed while it was being read"
    assert info.value.hint == "run the command again"


# ------------------------------------------------------------------------ manifests
def _manifest(run: Path, files: dict[str, str], **extra) -> None:
    (run / "manifest.json").write_text(json.dumps({"version": 1, "files": files, **extra}))


def test_record_forget_and_read_back_keep_other_keys(tmp_path):
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    assert integrity.read_manifest(run) == {}
    (run / "b.bin").write_bytes(b"bee")
    (run / "sub" / "a.bin").write_bytes(b"ay")
    _manifest(run, {}, exports={"/x": "1"})
    assert integrity.record(run, run / "b.bin") == _sha(b"bee")
    assert integrity.record(run, run / "sub" / "a.bin", sha256="c" * 64) == "c" * 64
    data = json.loads((run / "manifest.json").read_text())
    assert data == {
        "version": 1,
        "files": {"b.bin": _sha(b"bee"), "sub/a.bin": "c" * 64},
        "exports": {"/x": "1"},
    }
    assert list(data["files"]) == ["b.bin", "sub/a.bin"]  # sorted
    integrity.forget(run, "b.bin")
    integrity.forget(run, "never-listed")
    assert integrity.read_manifest(run) == {"sub/a.bin": "c" * 64}
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match=r"manifest.json is corrupt \(not valid JSON\)$"):
        integrity.read_manifest(run)
    (run / "manifest.json").write_text(json.dumps({"version": 1}))
    assert integrity.read_manifest(run) == {}


def test_a_manifest_is_found_up_to_three_levels_up_and_only_when_it_lists_the_file(tmp_path):
    run = tmp_path / "run"
    (run / "a" / "b" / "c").mkdir(parents=True)
    f, g, h, x = run / "a" / "f", run / "a" / "b" / "g", run / "a" / "b" / "h", run / "x"
    far = run / "a" / "b" / "c" / "i"
    for p in (f, g, h, x, far):
        p.write_bytes(b"1")
    one = _sha(b"1")
    _manifest(run, {"a/f": one, "a/b/g": one, "x": "0" * 64, "a/b/c/i": one})
    assert integrity.find_manifest(f) == (run, "a/f")
    assert integrity.find_manifest(g) == (run, "a/b/g")  # the third parent
    assert integrity.find_manifest(far) is None  # the fourth: too far
    assert integrity.find_manifest(h) is None  # not listed
    _manifest(run / "a" / "b", {"other": one})  # a nearer manifest not listing it
    assert integrity.find_manifest(g) == (run, "a/b/g")
    assert integrity.check_file(g) is True
    assert integrity.check_file(g, sha256=one) is True
    with pytest.raises(IntegrityError):
        integrity.check_file(g, sha256="0" * 64)  # the given hash is what is compared
    with pytest.raises(IntegrityError) as info:
        integrity.check_file(x, required=True)
    assert info.value.message == (
        f"{x} does not match its sha256 in {run / 'manifest.json'} "
        "(corrupt or modified); refusing to load it"
    )
    assert info.value.exit_code == 3
    assert integrity.check_file(h) is False
    with pytest.raises(IntegrityError) as info:
        integrity.check_file(h, required=True)
    assert info.value.message == f"{h} is not listed in its run's manifest.json; refusing it"


def test_record_export_lists_only_files_inside_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "m.onnx").write_bytes(b"m")
    (tmp_path / "out.onnx").write_bytes(b"o")
    integrity.record_export(run, tmp_path / "out.onnx", "1" * 64)
    assert not (run / "manifest.json").exists()
    integrity.record_export(run, run / "m.onnx", "2" * 64)
    assert integrity.read_manifest(run) == {"m.onnx": "2" * 64}


# -------------------------------------------------------------- ONNX external data
def _tensor(name: str, location: str | None):
    import onnx
    from onnx import helper

    t = helper.make_tensor(name, onnx.TensorProto.FLOAT, [1], [1.0])
    if location is not None:
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.float_data[:]
        if location:
            t.external_data.add(key="location", value=location)
        t.external_data.add(key="offset", value="0")
    return t


def _onnx(path: Path, location: str | None = None, where: str = "initializer") -> None:
    """A one-node model whose tensor ``w`` may read external data from ``location``."""
    import onnx
    from onnx import helper

    t = _tensor("w", location)
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    inits, nodes, functions = [], [], []
    if where == "initializer":
        inits = [t]
        nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    elif where == "sparse":
        idx = helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0])
        sparse = helper.make_sparse_tensor(t, idx, [1])
        nodes = [helper.make_node("Constant", [], ["c"], sparse_value=sparse),
                 helper.make_node("Add", ["x", "c"], ["y"])]  # fmt: skip
    elif where == "attribute":
        nodes = [helper.make_node("Constant", [], ["c"], value=t),
                 helper.make_node("Add", ["x", "c"], ["y"])]  # fmt: skip
    elif where == "subgraph":
        inner = helper.make_graph(
            [helper.make_node("Constant", [], ["c"], value=t)], "body", [],
            [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [1])],
        )  # fmt: skip
        cond = helper.make_tensor("cond", onnx.TensorProto.BOOL, [], [True])
        inits = [cond]
        nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)]
    elif where == "graphs":  # an attribute holding a list of graphs
        inner = helper.make_graph(
            [helper.make_node("Constant", [], ["c"], value=t)], "body", [],
            [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [1])],
        )  # fmt: skip
        node = helper.make_node("G", ["x"], ["y"], domain="tk")
        node.attribute.append(helper.make_attribute("bodies", [inner]))
        nodes = [node]
    elif where == "function":
        fn = helper.make_function(
            "tk", "F", ["a"], ["b"],
            [helper.make_node("Constant", [], ["b"], value=t)],
            [helper.make_opsetid("", 17)],
        )  # fmt: skip
        functions = [fn]
        nodes = [helper.make_node("F", ["x"], ["y"], domain="tk")]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("tk", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize(
    "where", ["initializer", "sparse", "attribute", "subgraph", "graphs", "function"]
)
def test_external_data_outside_the_directory_is_refused_wherever_the_tensor_is(tmp_path, where):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"\0" * 4)
    ok = tmp_path / "m" / "ok.onnx"
    _onnx(ok, "w.bin", where)
    check_external_data(ok)
    bad = tmp_path / "m" / "bad.onnx"
    _onnx(bad, "../secret.bin", where)
    with pytest.raises(IntegrityError) as info:
        check_external_data(bad)
    assert info.value.message == (
        f"refusing {bad}: tensor 'w' reads external data from '../secret.bin', "
        "outside the model's directory"
    )
    assert info.value.hint == "re-export it with tk export (weights embedded in one file)"


def test_every_way_out_of_the_directory_is_refused(tmp_path):
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"\0" * 4)
    os.symlink(tmp_path, folder / "up")  # a link leaving the directory
    os.symlink(folder / "sub", folder / "inside")  # a link that stays inside
    for location, refused in [
        ("sub/w.bin", False), ("inside/w.bin", False), ("./sub/w.bin", False),
        ("", True), (str(folder / "sub" / "w.bin"), True), ("sub/../sub/w.bin", True),
        ("up/m/sub/w.bin", False), ("up/w.bin", True), ("up", True),
    ]:  # fmt: skip
        path = folder / "t.onnx"
        _onnx(path, location)
        if refused:
            with pytest.raises(IntegrityError, match="outside the model's directory"):
                check_external_data(path)
        else:
            check_external_data(path)
    # the directory is the one the path names, even through a link to the model
    (tmp_path / "other").mkdir()
    (tmp_path / "outside").mkdir()
    _onnx(folder / "t.onnx", "sub/w.bin")
    os.symlink(folder / "t.onnx", tmp_path / "other" / "link.onnx")
    os.symlink(tmp_path / "outside", tmp_path / "other" / "sub")  # other/sub leads out
    with pytest.raises(IntegrityError):
        check_external_data(tmp_path / "other" / "link.onnx")
    check_external_data(folder / "t.onnx")


def test_a_file_that_is_not_onnx_is_an_export_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x01junk")
    with pytest.raises(ExportError) as info:
        check_external_data(path)
    assert info.value.message.startswith(f"cannot read {path} as onnx: ")
    assert info.value.hint == "re-export it with tk export"


# ------------------------------------------------------------- what mutants showed
def test_the_record_is_made_under_a_home_whose_parents_do_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("TK_HOME", str(tmp_path / "a" / "b" / "home"))
    trust.remember(tmp_path / "m.pt", "a" * 64)
    assert trust.exported("a" * 64)


def test_a_name_with_only_a_newline_is_escaped(home, tmp_path):
    h = "9" * 64
    trust.remember(tmp_path / "two\nlines.pt", h)
    assert trust.store_path().read_text().count("\n") == 1  # one line, the name escaped
    assert trust.store_path().read_text().startswith("\\" + h)


def test_a_one_byte_torn_record_and_junk_before_a_hash(home, tmp_path):
    home.mkdir(parents=True)
    trust.store_path().write_bytes(b"x")  # a kill after the first byte of a line
    trust.remember(tmp_path / "m.pt", "2" * 64)
    assert trust.store_path().read_bytes().split(b"\n")[:2] == [
        b"x", f"{'2' * 64}  {tmp_path / 'm.pt'}".encode()
    ]  # fmt: skip
    assert trust.exported("2" * 64)
    trust.store_path().write_bytes(f"X{'3' * 64}  /p\n".encode())
    assert not trust.exported("3" * 64)  # only sha256sum's backslash may precede a hash


def _swap_bytes(monkeypatch, path: Path, data: bytes) -> None:
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: data if self == path else real(self))


def test_the_bytes_loaded_are_the_bytes_checked(home, tmp_path, monkeypatch):
    """The manifest is compared with the bytes read for loading, not the file again."""
    ts = tmp_path / "model.pt"
    on_disk = _archive(ts)
    _manifest(tmp_path, {"model.pt": _sha(on_disk)})
    other = _archive(tmp_path / "other.pt", extra=b"swapped")
    _swap_bytes(monkeypatch, ts, other)
    with pytest.raises(IntegrityError):
        trust.clear(ts, trust=True)


def test_bytes_that_turn_into_a_damaged_archive_name_the_file(tmp_path, monkeypatch):
    ts = tmp_path / "model.pt"
    _archive(ts)
    _swap_bytes(monkeypatch, ts, b"PK\x03\x04 damaged")
    with pytest.raises(ExportError) as info:
        trust.clear(ts, trust=True)
    assert info.value.message.startswith(f"cannot read {ts}: a damaged zip archive")


def test_metadata_errors_name_the_file_not_the_bytes(tmp_path):
    ts = tmp_path / "model.pt"
    _archive(ts, meta=b"[1]")
    with pytest.raises(ExportError) as info:
        trust.clear(ts, trust=True).metadata()
    assert info.value.message.startswith(f"cannot read {ts} as torchscript: ValueError")


def test_an_unreadable_onnx_path_says_why_in_at_most_200_characters(tmp_path):
    import onnx

    folder = tmp_path / ("d" * 150 + ".onnx")  # a directory: onnx names it in its error
    folder.mkdir()
    try:
        onnx.load(str(folder), load_external_data=False)
    except Exception as exc:
        why = one_line(exc, 200)
    assert len(why) == 200
    with pytest.raises(ExportError) as info:
        check_external_data(folder)
    assert info.value.message == f"cannot read {folder} as onnx: {why}"


# ------------------------------------------------- formats from a plugin's registry
class _Toy(ExportFormat):
    """A plugin's format that runs no code, keeping a ``.bin`` beside its file."""

    name, suffix, companions = "toy", ".toy", (".bin",)

    def __init__(self, meta=None, fail: Exception | None = None):
        self.meta, self.fail, self.loads = meta or {}, fail, []

    def detect(self, probe):
        return probe.head.startswith(b"TOYF")

    def read_metadata(self, source):
        if self.fail is not None:
            raise self.fail
        return dict(self.meta)

    def load(self, cleared, *, cuda=True, threads=None):
        warnings.warn("old runtime", FutureWarning, stacklevel=1)
        warnings.warn("older runtime", DeprecationWarning, stacklevel=1)
        warnings.warn("worth seeing", UserWarning, stacklevel=1)
        self.loads.append((cleared.name, cuda, threads))
        if self.fail is not None:
            raise self.fail
        return [Runner("toy", lambda x: [x])]


class _ToyCode(_Toy):
    """A plugin's format whose loading runs code."""

    name, suffix, companions, can_carry_code = "toycode", ".tc", (), True

    def detect(self, probe):
        return probe.head.startswith(b"TOYC")


def _registry(*formats) -> Registry:
    registry = Registry()
    for fmt in formats:
        registry.formats[fmt.name] = fmt
    return registry


def test_a_plugin_format_is_detected_through_the_given_registry(home, tmp_path):
    reg = _registry(_Toy(), _ToyCode())
    path = tmp_path / "model.toy"
    path.write_bytes(b"TOYF model")
    (tmp_path / "model.bin").write_bytes(b"weights")
    cleared = trust.clear(path, registry=reg)
    assert (cleared.format, cleared.reason, cleared.source) == ("toy", "runs no code", str(path))
    assert trust.companions(reg.formats["toy"], path) == [tmp_path / "model.bin"]
    assert trust.format_of(b"TOYF", registry=reg).name == "toy"
    # tk's own formats come first, whatever the registry holds
    onnx_file = tmp_path / "m.onnx"
    _onnx(onnx_file)
    assert trust.format_of(onnx_file, registry=reg).name == "onnx"
    assert trust.detect_format(onnx_file) == "onnx"
    code = tmp_path / "model.tc"
    code.write_bytes(b"TOYC model")
    with pytest.raises(UsageError, match=r"^refusing to load toycode file "):
        trust.clear(code, registry=reg)
    assert trust.clear(code, trust=True, registry=reg).source == b"TOYC model"


def test_a_companion_must_be_a_plain_file_beside_and_match_the_manifest(tmp_path):
    reg = _registry(_Toy())
    path = tmp_path / "model.toy"
    path.write_bytes(b"TOYF model")
    with pytest.raises(UsageError) as info:
        trust.clear(path, registry=reg)
    assert info.value.message == f"{path} needs model.bin beside it (a plain file, not a link)"
    assert info.value.hint == "copy both files, or tk export again"
    (tmp_path / "elsewhere.bin").write_bytes(b"weights")
    os.symlink(tmp_path / "elsewhere.bin", tmp_path / "model.bin")  # a link to a real file
    with pytest.raises(UsageError, match=r"needs model\.bin beside it"):
        trust.clear(path, registry=reg)
    (tmp_path / "model.bin").unlink()
    (tmp_path / "model.bin").write_bytes(b"weights")
    _manifest(tmp_path, {"model.toy": _sha(b"TOYF model"), "model.bin": "0" * 64})
    with pytest.raises(IntegrityError):  # the companion is checked too
        trust.clear(path, registry=reg)
    _manifest(tmp_path, {"model.toy": _sha(b"TOYF model"), "model.bin": _sha(b"weights")})
    assert trust.clear(path, registry=reg).format == "toy"


def test_bytes_no_format_takes_are_named_as_the_file_or_the_export(tmp_path):
    """Every zip archive is TorchScript or pt2 to tk's own formats, and anything else
    falls back to ONNX: only a registry without a fallback leaves bytes unclaimed."""
    reg = _registry(_Toy())
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk, not a model")
    data = junk.read_bytes()
    for call, name in [
        (lambda: trust.clear(junk, registry=reg), str(junk)),
        (lambda: trust.format_of(junk, registry=reg), str(junk)),
        (lambda: trust.format_of(str(junk), registry=reg), str(junk)),
        (lambda: trust.format_of(data, registry=reg), "an in-memory export"),
        (lambda: trust.format_of(data, name="x.bin", registry=reg), "x.bin"),
    ]:
        with pytest.raises(ExportError) as info:
            call()
        assert info.value.message == f"cannot read {name}: no installed export format recognises it"
        assert info.value.hint == "tk list formats"
    damaged = b"PK\x03\x04 damaged"
    for call, name in [
        (lambda: trust.detect_format(damaged, name="d.pt"), "d.pt"),
        (lambda: trust.detect_format(damaged), "an in-memory export"),
        (lambda: trust.read_metadata(damaged, name="r.pt"), "r.pt"),
        (lambda: trust.read_metadata(damaged), "an in-memory export"),
        (lambda: trust.own_export(damaged, trust.formats().format("pt2")), "the pt2 export"),
        (lambda: trust.format_of(damaged), "an in-memory export"),
    ]:
        with pytest.raises(ExportError) as info:
            call()
        assert info.value.message.startswith(f"cannot read {name}: a damaged zip archive")


def test_read_metadata_names_the_file_and_stamps_the_detected_format(tmp_path):
    _refuses_missing_file_and_folder(trust.read_metadata, tmp_path / "nope.onnx")
    ts = tmp_path / "model.pt"
    data = _archive(ts, meta=b'{"format": "onnx", "task": "binary"}')
    assert trust.read_metadata(ts) == {"format": "torchscript", "task": "binary"}
    assert trust.read_metadata(str(ts)) == {"format": "torchscript", "task": "binary"}
    assert trust.read_metadata(data) == {"format": "torchscript", "task": "binary"}
    plain = tmp_path / "m.onnx"
    _onnx(plain)
    assert trust.read_metadata(plain) == {}  # nothing stored: nothing stamped
    bad = _archive(tmp_path / "bad.pt", meta=b"[1]")
    for source, name, what in [
        (tmp_path / "bad.pt", None, str(tmp_path / "bad.pt")),
        (bad, None, "an in-memory export"),
        (bad, "b.pt", "b.pt"),
    ]:
        with pytest.raises(ExportError) as info:
            trust.read_metadata(source, name=name)
        assert info.value.message.startswith(f"cannot read {what} as torchscript: ")
        assert info.value.hint == "re-export it with tk export"
    long = _Toy(fail=ValueError("v" * 400))
    with pytest.raises(ExportError) as info:
        trust._metadata(long, b"TOYF", "f.toy")
    assert info.value.message == f"cannot read f.toy as toy: {one_line(ValueError('v' * 400), 200)}"
    assert len(one_line(ValueError("v" * 400), 200)) == 200


@pytest.mark.filterwarnings("ignore:worth seeing:UserWarning")
def test_runners_come_only_from_the_gate_and_a_load_failure_is_an_export_error(tmp_path):
    toy = _Toy()
    path = tmp_path / "model.toy"
    path.write_bytes(b"TOYF model")
    (tmp_path / "model.bin").write_bytes(b"weights")
    cleared = trust.clear(path, registry=_registry(toy))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runners = trust.load_runners(cleared, cuda=False, threads=3)
    assert [r.name for r in runners] == ["toy"] and toy.loads == [(str(path), False, 3)]
    # the runtime's deprecation warnings are not the user's business; others are
    assert [(w.category, str(w.message)) for w in seen] == [(UserWarning, "worth seeing")]
    trust.load_runners(cleared)
    assert toy.loads[-1] == (str(path), True, None)
    cleared.runners()  # CUDA too unless told otherwise
    assert toy.loads[-1] == (str(path), True, None)
    with pytest.raises(TypeError, match=r"^load_runners takes what toolkit.trust.clear returned$"):
        trust.load_runners(str(path))
    broken = trust.Cleared(str(path), _Toy(fail=ValueError("w" * 400)), "runs no code", "f.toy")
    with pytest.raises(ExportError) as info:
        broken.runners()
    assert info.value.message == f"cannot load f.toy as toy: {one_line(ValueError('w' * 400), 240)}"
    assert info.value.hint == "re-export it with tk export"
    own = ExportError("the runtime said no", "its own hint")
    with pytest.raises(ExportError) as info:
        trust.Cleared(str(path), _Toy(fail=own), "runs no code", "f.toy").runners()
    assert info.value is own
