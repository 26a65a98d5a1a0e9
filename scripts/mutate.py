"""Mutation testing of the modules where a silent numeric or safety bug would hide.

``make mutate`` (every target) or ``make mutate MODULES="verify tune"``. Not part of
``make test``: it runs the selected tests once per mutant. Run it before saying an
issue that touches one of these modules is resolved.

Each target names the files mutmut mutates, optionally the functions that hold the
decision (mutant-name globs: in a large module the rest is plumbing that other tests
cover), and the few fast, in-process tests aimed at it (a test that runs ``tk`` in a
subprocess imports the unmutated code and could kill nothing). mutmut 3 copies the
code into a ``mutants/`` folder and runs pytest there; each target gets its own
folder, ``mutants/<target>/`` (ignored by git), holding links to ``toolkit/`` and
``tests/`` and a ``pyproject.toml`` with that target's ``[tool.mutmut]`` table, so
the targets' caches and test selections never invalidate each other.

A surviving mutant is either killed by a test or listed in :data:`EQUIVALENT` with the
line it changes and why no test can tell it from the original; the score is
``killed / (generated - equivalent)``. The script prints one row per target (the
table of docs/testing.md), every surviving mutant's diff, and exits 1 when a target
scores under :data:`GOAL` or an equivalence no longer matches its mutant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
GOAL = 0.90
# How mutmut runs: one child process (this machine's cores are shared), mutmut's own
# module imported rather than run as __main__ (its fork set-up expects that).
MUTMUT = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]


@dataclass(frozen=True)
class Target:
    """What one ``make mutate`` target mutates and which tests judge it."""

    files: tuple[str, ...]  # repository paths of the mutated modules
    tests: tuple[str, ...]  # pytest arguments: the fast tests aimed at these files
    functions: tuple[str, ...] = ()  # mutant-name globs; empty: every function
    # A mutant is stopped after about (its tests' time + 1 s) x this (mutmut's
    # timeout_multiplier): lower where a mutant can hang on a wait that uses no CPU.
    timeout: float = 15.0


def _m(module: str, *functions: str) -> tuple[str, ...]:
    """Mutant-name globs for ``functions`` of ``module`` (``Class.method`` for a method)."""
    globs = []
    for f in functions:
        if "." in f:
            cls, meth = f.split(".")
            globs.append(f"{module}.x\u01c1{cls}\u01c1{meth}__mutmut_*")
        else:
            globs.append(f"{module}.x_{f}__mutmut_*")
    return tuple(globs)


TARGETS: dict[str, Target] = {
    "verify": Target(
        files=("toolkit/verify/compare.py",),
        tests=(
            "tests/test_mutants_verify.py",
            "tests/test_effects_data.py::test_compare_fails_just_beyond_the_tolerance_and_passes_just_inside",
            "tests/test_effects_data.py::test_verify_on_a_real_onnx_file_fails_at_1_5_tolerances_and_passes_at_0_5",
            "tests/test_verify.py::test_compare_counts_tolerance_and_decisions",
        ),
    ),
    "tune": Target(
        files=("toolkit/tune/space.py",),
        tests=("tests/test_mutants_tune.py",),
    ),
    "batching": Target(
        files=("toolkit/serve/batching.py",),
        tests=("tests/test_mutants_serve.py",),
        timeout=4.0,
    ),
    "selection": Target(
        files=("toolkit/train/selection.py",),
        tests=("tests/test_mutants_selection.py",),
    ),
    "trust": Target(
        # ONNX's external-data check lives with the ONNX format; the rest of that
        # module is exporting, covered by the export tests.
        files=("toolkit/trust.py", "toolkit/integrity.py", "toolkit/formats/onnx.py"),
        functions=(
            "toolkit.trust.*",
            "toolkit.integrity.*",
            *_m(
                "toolkit.formats.onnx",
                "check_external_data",
                "onnx_tensors",
                "_graph_tensors",
                "_node_tensors",
            ),
        ),
        tests=(
            "tests/test_mutants_trust.py",
            "tests/test_effects_data.py::test_a_listed_file_is_checked_even_when_the_check_is_not_required",
        ),
    ),
    "step": Target(
        files=("toolkit/train/loop.py", "toolkit/train/build.py"),
        functions=_m("toolkit.train.loop", "train_step")
        + _m("toolkit.train.build", "check_precision", "autocast"),
        tests=("tests/test_mutants_step.py",),
    ),
    "preprocess": Target(
        files=("toolkit/preprocess.py", "toolkit/train/prepare.py"),
        functions=("toolkit.preprocess.*", *_m("toolkit.train.prepare", "_fit_preprocess")),
        tests=("tests/test_mutants_preprocess.py",),
    ),
    "splits": Target(
        files=("toolkit/splits.py", "toolkit/sampling.py"),
        tests=(
            "tests/test_mutants_splits.py",
            "tests/test_sampling.py",
            "tests/test_effects_data.py::test_validation_split_keeps_each_class_share_within_one_row",
        ),
    ),
    "checkpoint": Target(
        files=("toolkit/checkpoint.py",),
        tests=("tests/test_mutants_checkpoint.py",),
    ),
}

# Mutants no test can tell from the original: name -> (a fragment of the changed line
# as the mutant has it, why it is equivalent). The fragment guards against the
# numbering moving when the module changes: a name whose diff no longer holds it is
# reported as stale and fails the run.
_C = "toolkit.verify.compare."
_S = "toolkit.tune.space."
_B = "toolkit.serve.batching.x\u01c1Batcher\u01c1"
_P = "toolkit.sampling."
_TRUTH = "numpy tests this flag for truth: None acts as False"
_TAKE = "a permutation's indices are always in range: the out-of-range mode never acts"
_INT64 = "the rows are int64 numpy indices already: as_tensor keeps int64"
_K = "toolkit.checkpoint."
_KEYS = "numpy's set_state converts the key list to uint32 itself"
_GONE = "the file was just listed as present (iterdir, or list_checkpoints' is_file)"
_HASH = "record hashes the file itself when not given the hash: the same bytes, just written"
_EXCL = (
    "the file that failed its check is unlisted (not a candidate) or mismatched "
    "(skipped by the same hash test): excluding it changes nothing"
)
_ORDER = (
    "a mid-epoch checkpoint has step >= 1 in its name and the end of an epoch none "
    "(0), and the manifest lists names sorted: each of these keys orders every "
    "reachable set of checkpoints the same way"
)
_ROWS = "_run never reads its rows argument (it counts the live requests' rows itself)"
_CLOSE = "get_close_matches lists the best match first whatever n is; only that one is shown"
_RESHAPE = "numpy takes any negative size as the one to infer, like -1"
_N0 = "n == 0 never gets here: reshape(0, -1) raises first (verify's batches are >= 1)"
_NAMED = "format_of names a path by str(path) itself: the same name in every message"
_INF = "float() reads 'INF' as it reads 'inf': the same infinity"
_ZIP = "zip's strict: the two lengths were compared just above"
EQUIVALENT: dict[str, tuple[str, str]] = {
    # verify
    _C + "x_compare__mutmut_16": ("else truth).astype(None)", "astype(None) is float64"),
    _C + "x_compare__mutmut_23": ("got.astype(None)", "astype(None) is float64"),
    _C + "x_compare__mutmut_54": ("nan_to_num(r, posinf", "nan=0.0 is nan_to_num's default"),
    _C + "x_compare__mutmut_57": (
        "nan=1.0",
        "a NaN reference is outside (diff inf) unless the output is NaN too (diff 0), "
        "whatever its tolerance, and a row holding it is never decisive",
    ),
    _C + "x_compare__mutmut_58": (
        "posinf=1.0",
        "at a +inf reference the diff is 0 or the largest float, beyond any finite "
        "tolerance; its row's margin is inf (decisive) or nan (not), whatever the tolerance",
    ),
    _C + "x_compare__mutmut_100": ("r.reshape(n, -2)", _RESHAPE),
    _C + "x_compare__mutmut_106": ("g.reshape(n, -2)", _RESHAPE),
    _C + "x_compare__mutmut_112": ("tol.reshape(n, -2)", _RESHAPE),
    _C + "x_compare__mutmut_133": ("bad.reshape(n, -2)", _RESHAPE),
    _C + "x_compare__mutmut_139": ("if (n) or True else 1.0", _N0),
    _C + "x_compare__mutmut_141": ("if n else 2.0", _N0),
    _C + "x__check_runner__mutmut_39": ("strict=None", _ZIP),
    _C + "x__check_runner__mutmut_42": ("zip(refs, got, )", _ZIP),
    _C + "x__check_runner__mutmut_43": ("strict=False", _ZIP),
    # selection
    "toolkit.train.selection.x\u01c1BestWeights\u01c1__init____mutmut_7": (
        "self.same_as_model = None",
        "read once, as a condition, where None and False are both false",
    ),
    # batching
    _B + "__init____mutmut_22": ('float("INF")', _INF),
    _B + "__init____mutmut_25": ('float("inf"), float("INF"))', _INF),
    _B + "inline__mutmut_12": (
        "if self.max_batch > 1 else 2.0",
        "the share is capped at 1.0 by min(1.0, share): 2.0 and 1.0 give the same cost",
    ),
    _B + "_time__mutmut_9": ('best = float("INF")', _INF),
    _B + "_time__mutmut_16": ('return float("INF")', _INF),
    _B + "_loop__mutmut_23": (
        "if left < 0:",
        "at left == 0 exactly, wait_for(get(), 0) raises TimeoutError at once (the queue "
        "was just found empty): the same break",
    ),
    _B + "_loop__mutmut_35": ("await self._run(batch, None)", _ROWS),
    _B + "_loop__mutmut_46": ("await self._run(batch, None)", _ROWS),
    # trust
    "toolkit.formats.onnx.x__node_tensors__mutmut_6": (
        'HasField("sparse_tensor")) or True',
        "an unset message field reads as an empty SparseTensorProto, whose two tensors "
        "hold no external data",
    ),
    "toolkit.formats.onnx.x__node_tensors__mutmut_11": (
        'HasField("g")) or True',
        "an unset graph field reads as an empty GraphProto: no tensors",
    ),
    "toolkit.formats.onnx.x_check_external_data__mutmut_5": (
        "load_external_data=None",
        "onnx.load tests the flag for truth: None loads nothing, as False",
    ),
    "toolkit.trust.x_clear__mutmut_20": ("format_of(path, name=None, registry", _NAMED),
    "toolkit.trust.x_clear__mutmut_23": ("format_of(path, registry=registry)", _NAMED),
    "toolkit.trust.x_home__mutmut_14": (
        '"XDG_DATA_HOME", "XXXX"',
        "the default only goes through os.path.isabs, false for both",
    ),
    "toolkit.trust.x_remember__mutmut_54": (
        "os.pread(fd, 2, size - 1)",
        "at offset size - 1 there is one byte to read, whatever the count",
    ),
    # step
    "toolkit.train.loop.x_train_step__mutmut_11": (
        "== n_global) and False else",
        "the other branch multiplies by len(yb) * world / n_global, exactly 1.0 here",
    ),
    "toolkit.train.loop.x_train_step__mutmut_13": (
        "len(yb) / world == n_global",
        "true only for world 1 (a rank's rows are part of n_global): the same test; "
        "otherwise the factor is exactly 1.0 where the original skipped it",
    ),
    # preprocess
    "toolkit.train.prepare.x__fit_preprocess__mutmut_9": (
        "isinstance(info.standardize, bool)) or True",
        "fit_stats takes list(features) itself; a sequence that list() would change "
        "(a numpy array) already fails the truth test three lines above",
    ),
    # splits
    _P + "x__approximate_mode__mutmut_29": ("replace=None)", _TRUTH),
    _P + "x__stratified__mutmut_30": ('kind="STABLE"', "numpy reads the sort kind in any case"),
    _P + "x__stratified__mutmut_44": (
        "n_test, None)",
        "counts - n_i sums to n_test exactly: the second allocation is whole and never draws",
    ),
    _P + "x__stratified__mutmut_54": ("mode=None)", _TAKE),
    _P + "x__stratified__mutmut_56": ("take(rng.permutation(counts[i]), )", _TAKE),
    _P + "x_make_circles__mutmut_15": ("n_out, endpoint=None)", _TRUTH),
    _P + "x_make_circles__mutmut_28": ("n_in, endpoint=None)", _TRUTH),
    "toolkit.splits.x__take__mutmut_3": ("dtype=None, device", _INT64),
    "toolkit.splits.x__take__mutmut_6": ("as_tensor(rows, device=split.x.device)", _INT64),
    # checkpoint
    _K + "x__set_np_random_state__mutmut_3": ('state["keys"], dtype=None)', _KEYS),
    _K + "x__set_np_random_state__mutmut_5": ('np.array(state["keys"], )', _KEYS),
    _K + "x_cleanup__mutmut_17": ("p.unlink(missing_ok=None)", _GONE),
    _K + "x_cleanup__mutmut_18": ("p.unlink(missing_ok=False)", _GONE),
    _K + "x_write_encoded__mutmut_32": ("old.unlink(missing_ok=None)", _GONE),
    _K + "x_write_encoded__mutmut_33": ("old.unlink(missing_ok=False)", _GONE),
    _K + "x_write_encoded__mutmut_20": ("record(run_dir, path, None)", _HASH),
    _K + "x_write_encoded__mutmut_23": ("record(run_dir, path, )", _HASH),
    _K + "x_load__mutmut_18": ("exclude=None)", _EXCL),
    _K + "x_load__mutmut_20": ("newest_valid_checkpoint(path.parent.parent, )", _EXCL),
    _K + "x_list_checkpoints__mutmut_21": ("m.group(2) or 1)", _ORDER),
    _K + "x_list_checkpoints__mutmut_25": ("found.sort(key=None)", _ORDER),
    _K + "x_list_checkpoints__mutmut_28": ("0 if (t[2]) and False else 1", _ORDER),
    _K + "x_list_checkpoints__mutmut_29": ("0 if (t[2]) or True else 1", _ORDER),
    _K + "x_list_checkpoints__mutmut_30": ("1 if t[2] else 1", _ORDER),
    _K + "x_list_checkpoints__mutmut_31": ("0 if t[3] else 1", _ORDER),
    _K + "x_list_checkpoints__mutmut_32": ("0 if t[2] else 2", _ORDER),
    _K + "x_list_checkpoints__mutmut_33": ("else 1, t[2]))", _ORDER),
    # tune
    _S + "x__target__mutmut_74": ("get_close_matches(name, searchable, )", _CLOSE),
    _S + "x__target__mutmut_75": ("searchable, n=2)", _CLOSE),
    _S + "x__values__mutmut_69": (
        "if (typ is int) or True else",
        "every bound then passes check_value or Param.parse, which give a float field a float",
    ),
    _S + "x_option_type__mutmut_6": (
        "types.UnionType)) or True",
        "TrainConfig's other annotations (bool, int, str, dict[str, ...], list[str]) give "
        "the same type through get_args as without it",
    ),
}


def _workdir(name: str, target: Target) -> Path:
    """``mutants/<name>/``: links to the code and tests, and this target's mutmut table."""
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for link in ("toolkit", "tests"):
        if not (work / link).is_symlink():
            (work / link).symlink_to(ROOT / link)
    table = {
        "source_paths": ["toolkit"],
        "only_mutate": list(target.files),
        "pytest_add_cli_args_test_selection": list(target.tests),
        # quiet pytest, no cache written into the copy, no xdist workers
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:xdist"],
        "use_git_change_detection": False,
        "timeout_multiplier": target.timeout,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    text = (ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n"
    path = work / "pyproject.toml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return work


def _results(work: Path, target: Target) -> dict[str, str]:
    """Every selected mutant's status (killed, survived, no tests, timeout, ...)."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for file in target.files:
        meta = json.loads((work / "mutants" / f"{file}.meta").read_text())
        for key, code in meta["exit_code_by_key"].items():
            if not target.functions or any(fnmatch(key, g) for g in target.functions):
                out[key] = status_by_exit_code[code]
    return out


def _diff(work: Path, mutant: str) -> str:
    """mutmut's diff of one mutant against the original (``mutmut show``, in-process)."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant

    with contextlib.chdir(work):
        reset_config()  # mutmut caches the table of the folder it first read
        try:
            return get_diff_for_mutant(mutant, path=find_mutant(mutant).path)
        finally:
            reset_config()


def run_target(name: str, target: Target, run: bool = True) -> dict:
    """Run mutmut on one target (``run=False``: read its last run); its counts, score
    and surviving mutants."""
    work = _workdir(name, target)
    if run:
        _run_mutmut(name, target, work)
    return _score(name, target, work)


def _run_mutmut(name: str, target: Target, work: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = [*MUTMUT, "run", "--max-children", "1", *(target.functions or ("*",))]
    # mutmut keeps which tests reach which function from its first run and collects
    # it again only for tests it has not seen: a test edited to reach another function
    # would not be run against that function's mutants. One clean run of the tests
    # (seconds) collects it afresh.
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    log = work / "mutmut.log"
    print(f"{name}: mutmut run ({', '.join(target.files)}), log in {log.relative_to(ROOT)}")
    with log.open("w") as out:
        proc = subprocess.run(args, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:  # its own failure (the clean run failed, ...): not a score
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name}: mutmut exited {proc.returncode}; the end of {log}:\n{tail}")


def _score(name: str, target: Target, work: Path) -> dict:
    status = _results(work, target)
    killed = sorted(k for k, s in status.items() if s in ("killed", "timeout"))
    survived = sorted(k for k, s in status.items() if k not in killed)
    equivalent, stale, unexplained = [], [], []
    for key in survived:
        diff = _diff(work, key)
        if key in EQUIVALENT:
            (equivalent if EQUIVALENT[key][0] in diff else stale).append(key)
        else:
            unexplained.append((key, status[key], diff))
    judged = len(status) - len(equivalent)
    return {
        "generated": len(status),
        "killed": len(killed),
        "equivalent": equivalent,
        "stale": stale,
        "unexplained": unexplained,
        "score": len(killed) / judged if judged else 1.0,
        "command": f"make mutate MODULES={name}",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the named targets (default: all) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"targets, of: {' '.join(TARGETS)}")
    parser.add_argument("--report", action="store_true", help="the last run's results, no run")
    args = parser.parse_args(argv)
    names = args.modules or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target {unknown[0]!r}; known: {' '.join(TARGETS)}", file=sys.stderr)
        return 2
    rows = {name: run_target(name, TARGETS[name], run=not args.report) for name in names}
    ok = True
    print("\n| target | generated | killed | equivalent | score |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        n_eq = len(r["equivalent"])
        print(f"| {name} | {r['generated']} | {r['killed']} | {n_eq} | {r['score']:.1%} |")
        ok &= r["score"] >= GOAL and not r["stale"]
    for r in rows.values():
        for key in r["equivalent"]:
            print(f"equivalent: {key}: {EQUIVALENT[key][1]}")
    for r in rows.values():
        for key in r["stale"]:
            print(f"\nSTALE equivalence (its diff changed): {key}")
        for key, status, diff in r["unexplained"]:
            print(f"\n{status}: {key}\n{diff}")
    summary = WORK / "summary.json"  # every target's latest result
    kept = json.loads(summary.read_text()) if summary.is_file() else {}
    summary.write_text(json.dumps({**kept, **rows}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
