"""The comparison of ``tk verify`` at its edges: each test kills mutants of
``toolkit/verify/compare.py`` that the effect tests let live (``make mutate
MODULES=verify``; docs/testing.md lists the few left as equivalent).

Expected values come from the definition (``|got - ref| > atol + rtol*|ref|``,
decisive rows only), computed by hand on arrays small enough to read.
"""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.formats import Runner
from toolkit.verify.compare import Check, compare, run_checks
from toolkit.verify.inputs import CASES

BIG = np.finfo(np.float64).max


def test_an_error_exactly_at_the_tolerance_is_inside():
    ref = np.array([[0.0], [1.0]])
    got = np.array([[1e-3], [1.0]])  # |diff| == atol exactly (rtol 0): inside
    out = compare(ref, got, "regression", 1e-3, 0.0, decide=True)
    assert out["outside"] == 0.0 and out["agreement"] == 1.0
    assert out["max_abs"] == 1e-3


def test_max_rel_is_the_error_over_the_reference_magnitude():
    ref = np.array([[2.0], [4.0]])
    got = np.array([[2.5], [4.0]])
    out = compare(ref, got, "regression", 1e-5, 1e-4, decide=True)
    assert out["max_rel"] == 0.25 and out["max_abs"] == 0.5
    # near zero the relative error is over atol, not over |ref|
    out = compare(np.array([[0.0]]), np.array([[1e-3]]), "regression", 1e-2, 0.0, decide=True)
    assert out["max_rel"] == pytest.approx(1e-3 / 1e-2)


def test_rows_without_columns_and_a_scalar_output():
    empty = np.zeros((3, 0))
    out = compare(empty, empty.copy(), "multiclass", 1e-5, 1e-4, decide=True)
    assert (out["max_abs"], out["max_rel"], out["outside"], out["agreement"]) == (0, 0, 0, 1)
    scalar = compare(np.array(2.0), np.array(1.0), "regression", 1e-5, 1e-4, decide=True)
    assert scalar["shape"] == [] and scalar["outside"] == 1.0 and scalar["agreement"] == 0.0
    assert compare(np.array(2.0), np.array(2.0), "regression", 1e-5, 1e-4, True)["outside"] == 0


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf
@pytest.mark.parametrize("inf", [np.inf, -np.inf])
def test_an_infinite_reference_gets_no_relative_tolerance(inf):
    """At ``ref = ±inf`` the tolerance is atol alone: even rtol = 1 must not make a
    finite output (whose error counts as the largest float) pass."""
    out = compare(np.array([[inf], [1.0]]), np.array([[0.0], [1.0]]), "regression", 1e-5, 1.0, True)
    assert out["outside"] == 0.5 and out["agreement"] == 0.5
    assert out["max_abs"] == BIG
    same = compare(np.array([[inf]]), np.array([[inf]]), "regression", 1e-5, 1.0, True)
    assert same["outside"] == 0.0


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf
def test_a_minus_infinite_logit_does_not_widen_its_row_tolerance():
    """Multiclass: decisive when the top two are over 2 * the row's largest tolerance
    apart. A -inf logit's tolerance is atol (its |ref| counts as 0), so the row
    [0.5, 0.35, -inf] (margin 0.15, tolerances 0.05, 0.035, ~0) is decisive, and the
    output that swaps its top two disagrees."""
    ref = np.array([[0.5, 0.35, -np.inf]])
    got = np.array([[0.35, 0.5, -np.inf]])
    out = compare(ref, got, "multiclass", 1e-6, 0.1, decide=True)
    assert out["agreement"] == 0.0


def test_without_decisions_a_row_agrees_only_when_all_its_values_are_close():
    ref = np.array([[2.0], [-3.0]])
    got = np.array([[3.0], [-3.0]])  # row 0: same sign (same decision), far outside
    undecided = compare(ref, got, "binary", 1e-5, 1e-4, decide=False)
    assert undecided["agreement"] == 0.5 and undecided["outside"] == 0.5
    decided = compare(ref, got, "binary", 1e-5, 1e-4, decide=True)
    assert decided["agreement"] == 1.0 and decided["outside"] == 0.5


def test_no_decisive_row_is_full_agreement():
    ref = np.array([[1e-7], [-1e-7]])  # every margin inside the tolerance
    out = compare(ref, -ref, "binary", 1e-5, 1e-4, decide=True)
    assert out["agreement"] == 1.0 and out["outside"] == 0.0


class _Raises:
    def __init__(self, message: str):
        self.message = message

    def __call__(self, x):
        raise RuntimeError(self.message)


def _eager(x):
    # two outputs: a binary logit per row and a second tensor (not a decision)
    return [x[:, :1].astype(np.float32) * 2.0, x.astype(np.float32)]


def _checks(runner: Runner, **kw):
    args = {"input_shape": (2,), "task": "binary", "batch_sizes": [3], "atol": 1e-5, "rtol": 1e-4}
    args.update(kw)
    return run_checks([runner], Runner("eager", _eager), heldout=None, **args)


def test_a_runtime_that_raises_is_one_failed_check_per_input_with_its_message():
    long = "x" * 400
    checks = _checks(Runner("broken", _Raises(long)), exact=False)
    assert [(c.inputs, c.batch) for c in checks] == [(case, 3) for case in list(CASES)[1:]]
    for c in checks:
        assert c.runtime == "broken" and c.output == "*" and not c.passed
        assert c.error == "runtime error: " + ("RuntimeError: " + long)[:157] + "..."
        assert (c.atol, c.rtol, c.exact) == (1e-5 * CASES[c.inputs], 1e-4, False)
        assert c.to_json()["passed"] is False and c.to_json()["error"] == c.error


def test_a_runtime_with_the_wrong_number_of_outputs_fails_each_input():
    checks = _checks(Runner("short", lambda x: _eager(x)[:1]), batch_sizes=[2], exact=False)
    assert [(c.inputs, c.batch) for c in checks] == [(case, 2) for case in list(CASES)[1:]]
    for c in checks:
        assert (c.runtime, c.output, c.error) == ("short", "*", "1 outputs, eager has 2")
        assert (c.atol, c.exact) == (1e-5 * CASES[c.inputs], False)


def test_only_the_first_output_is_judged_by_decisions_and_outputs_get_their_names():
    def shifted(x):  # every value 0.5 away: the logit keeps its sign, nothing is close
        return [o + np.float32(0.5) for o in _eager(x)]

    checks = _checks(Runner("shifted", shifted), output_names=["logit"], batch_sizes=[4])
    by_output = {}
    for c in checks:
        by_output.setdefault(c.output, []).append(c)
        assert (c.batch, c.atol, c.rtol) == (4, 1e-5 * CASES[c.inputs], 1e-4)
        assert c.outside == 1.0 and not c.passed
    assert set(by_output) == {"logit", "output_1"}
    # decisive rows (|2x| well clear of 0) kept their sign except those 0.5 moved
    # across zero; the second output has no decisions: no row is close
    assert all(c.agreement == 0.0 for c in by_output["output_1"])
    assert any(c.agreement > 0.0 for c in by_output["logit"])
    assert {tuple(c.shape) for c in by_output["logit"]} == {(4, 1)}
    assert {tuple(c.shape) for c in by_output["output_1"]} == {(4, 2)}


def test_held_out_rows_are_an_input_case():
    heldout = np.array([[1.0, 2.0]], dtype=np.float32)
    checks = run_checks(
        [Runner("same", _eager)], Runner("eager", _eager), input_shape=(2,), task="binary",
        batch_sizes=[1, 2], atol=1e-5, rtol=1e-4, heldout=heldout,
    )  # fmt: skip
    assert sorted({(c.inputs, c.batch) for c in checks}) == sorted(
        (case, b) for case in CASES for b in (1, 2)
    )
    assert all(c.passed for c in checks)
    check = Check("same", "random", 1, "output_0")
    assert check.to_json()["passed"] is False  # nothing measured: not a pass


# ------------------------------------------------ the float64 reference (ood cases)
class _Counting:
    """A runtime that records the inputs it ran on (and can raise, or drop outputs)."""

    def __init__(self, fn, fail: str | None = None):
        self.fn, self.fail, self.seen = fn, fail, []

    def __call__(self, x):
        self.seen.append(x)
        if self.fail is not None:
            raise RuntimeError(self.fail)
        return self.fn(x)


def _eager64(x):
    return [x[:, :1].astype(np.float64) * 2.0, x.astype(np.float64)]


def _off32(x):  # float32 eager whose own rounding is off by 0.01 everywhere
    return [o + np.float32(0.01) for o in _eager(x)]


def _sweep(runner, eager=_off32, ref64=None, notes=None):
    args = {"input_shape": (2,), "task": "binary", "batch_sizes": [3], "atol": 1e-5, "rtol": 1e-4}
    return run_checks([runner], Runner("eager", eager), heldout=None, output_names=["logit"],
                      reference64=ref64, notes=notes, **args)  # fmt: skip


def test_the_float64_reference_rejudges_only_failing_out_of_distribution_cases():
    ref64 = _Counting(_eager64)
    notes: list[str] = []
    file = _Counting(_eager)
    checks = _sweep(Runner("file", file), ref64=Runner("eager64", ref64), notes=notes)
    assert notes == []
    ood = [case for case in CASES if CASES[case] != 1]
    # called once per out-of-distribution case, on that case's very inputs
    assert len(ref64.seen) == len(ood) == 2
    # the file runs again for the re-judged cases: random, ood-large twice, ood-negative twice
    assert len(file.seen) == 5
    assert ref64.seen[0] is file.seen[1] and ref64.seen[1] is file.seen[3]
    assert [(c.inputs, c.output) for c in checks] == [
        (case, out) for case in list(CASES)[1:] for out in ("logit", "output_1")
    ]
    for c in checks:
        assert (c.runtime, c.batch, c.rtol, c.exact) == ("file", 3, 1e-4, True)
        assert c.atol == 1e-5 * CASES[c.inputs]
        if c.inputs in ood:  # the file is float64 eager to float32 precision: it passes
            assert (c.reference, c.passed, c.outside) == ("eager-float64", True, 0.0)
            assert c.expected_dtype == "float32"  # the shape and dtype are still eager's
        else:  # in distribution float32 eager is the reference, and this file is off it
            assert (c.reference, c.passed, c.outside) == ("eager", False, 1.0)


def test_the_float64_reference_runs_only_when_values_fail():
    for runner in [
        Runner("same", _off32),  # passes against float32 eager: nothing to re-judge
        Runner("broken", _Raises("no")),  # failed by an error, not by its values
        Runner("shape", lambda x: [_off32(x)[0], _off32(x)[1][:, :1]]),  # failed by a shape
        Runner("dtype", lambda x: [_off32(x)[0], _off32(x)[1].astype(np.float64)]),  # a dtype
    ]:
        ref64 = _Counting(_eager64)
        checks = _sweep(runner, ref64=Runner("eager64", ref64))
        assert ref64.seen == [], runner.name
        assert all(c.reference == "eager" for c in checks)
    assert all(c.passed for c in _sweep(Runner("same", _off32)))


def test_a_float64_reference_that_cannot_run_leaves_the_float32_verdict_and_a_note():
    long = "y" * 300
    ref64 = _Counting(_eager64, fail=long)
    notes: list[str] = []
    checks = _sweep(Runner("file", _eager), ref64=Runner("eager64", ref64), notes=notes)
    assert len(ref64.seen) == 1  # dropped for the rest of the sweep after its failure
    assert notes == [
        f"no float64 reference ({('RuntimeError: ' + long)[:117]}...): "
        "out-of-distribution inputs judged against float32 eager only"
    ]
    assert all(c.reference == "eager" and not c.passed for c in checks)
    _sweep(Runner("file", _eager), ref64=Runner("eager64", _Counting(_eager64, fail="x")))
    # one output instead of two: that case keeps its verdict, the next one tries again
    short = _Counting(lambda x: _eager64(x)[:1])
    checks = _sweep(Runner("file", _eager), ref64=Runner("eager64", short), notes=notes)
    assert len(short.seen) == 2 and len(notes) == 1
    assert all(c.reference == "eager" and not c.passed for c in checks)


def test_compare_judges_against_the_truth_only_when_it_has_the_reference_shape():
    ref = np.array([[1.0, 2.0]], dtype=np.float32)
    got = np.array([[1.5, 2.0]], dtype=np.float32)
    truth = np.array([[1.5, 2.0]], dtype=np.float64)
    judged = compare(ref, got, "regression", 1e-5, 1e-4, decide=False, truth=truth)
    assert (judged["outside"], judged["agreement"], judged["max_abs"]) == (0.0, 1.0, 0.0)
    assert judged["expected_dtype"] == "float32"
    other = compare(ref, got, "regression", 1e-5, 1e-4, decide=False, truth=truth.reshape(2, 1))
    assert other == compare(ref, got, "regression", 1e-5, 1e-4, decide=False)
    assert other["outside"] == 0.5
