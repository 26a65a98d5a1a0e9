"""Comparing a file's outputs with the eager model's: one :class:`Check` per output.

Every check either passes or fails the file: same shape and dtype, every element
within ``atol + rtol*|ref|``, every decisive row with the same decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.errors import one_line
from toolkit.tasks import get_task
from toolkit.verify.inputs import CASES, make_inputs

if TYPE_CHECKING:
    import numpy as np

    from toolkit.formats import Runner

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4


@dataclass
class Check:
    """One output of one runtime at one batch size on one input case."""

    runtime: str
    inputs: str
    batch: int
    output: str
    expected_shape: list[int] | None = None
    shape: list[int] | None = None
    expected_dtype: str | None = None
    dtype: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    outside: float | None = None  # fraction of elements outside tolerance
    agreement: float | None = None  # fraction of decisive rows with the same decision
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    error: str | None = None  # the runtime raised on this input
    # False for a quantized or float16 file: its values are reported, not judged
    # (the held-out check decides); shape, dtype and running at all still are.
    exact: bool = True
    # What the values were compared with: "eager" (float32), or "eager-float64" on
    # the large and out-of-distribution inputs (see toolkit.verify.reference).
    reference: str = "eager"

    @property
    def passed(self) -> bool:
        """Same shape and dtype, every element within tolerance, every decision equal."""
        return (
            self.error is None
            and self.shape == self.expected_shape
            and self.dtype == self.expected_dtype
            and (not self.exact or (self.outside == 0.0 and self.agreement == 1.0))
        )

    def to_json(self) -> dict[str, Any]:
        """All fields plus ``passed``."""
        return {**self.__dict__, "passed": self.passed}


def compare(
    ref: np.ndarray,
    got: np.ndarray,
    task: str,
    atol: float,
    rtol: float,
    decide: bool,
    truth: np.ndarray | None = None,
) -> dict[str, Any]:
    """Shape, dtype, max abs/rel error, fraction outside ``atol + rtol*|ref|``, agreement.

    ``truth``: the values to judge against instead of ``ref``'s (a float64
    reference); ``ref`` still sets the expected shape and dtype.

    Agreement counts only *decisive* rows, where the reference's margin exceeds the
    tolerance (a logit of 1e-7 may flip sign legitimately); for regression it is the
    fraction of rows whose values are all within tolerance.
    """
    import numpy as np

    out: dict[str, Any] = {
        "expected_shape": list(ref.shape),
        "shape": list(got.shape),
        "expected_dtype": str(ref.dtype),
        "dtype": str(got.dtype),
    }
    if ref.shape != got.shape:
        return out
    r = (ref if truth is None or truth.shape != ref.shape else truth).astype(np.float64)
    g = got.astype(np.float64)
    diff = np.abs(g - r)
    same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities and NaNs match
    diff = np.where(same, 0.0, np.nan_to_num(diff, nan=np.inf))
    tol = atol + rtol * np.abs(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0))
    bad = diff > tol
    out["max_abs"] = float(diff.max()) if diff.size else 0.0
    out["max_rel"] = float((diff / np.maximum(np.abs(r), atol)).max()) if diff.size else 0.0
    out["outside"] = float(bad.mean()) if diff.size else 0.0
    n = r.shape[0] if r.ndim else 1
    rr, gg, tt = r.reshape(n, -1), g.reshape(n, -1), tol.reshape(n, -1)
    kind = get_task(task)
    decided = kind.decisions(rr, tt) if decide and rr.shape[1] else None
    if decided is None:  # nothing to decide: a row agrees when all its values are close
        rows_ok = ~bad.reshape(n, -1).any(axis=1)
        out["agreement"] = float(rows_ok.mean()) if n else 1.0
        return out
    ref_label, decisive = decided
    got_label = kind.decisions(gg, tt)[0]  # type: ignore[index]
    agree = ref_label[decisive] == got_label[decisive]
    out["agreement"] = float(agree.mean()) if agree.size else 1.0
    return out


def run_checks(
    runners: Sequence[Runner],
    reference: Runner,
    *,
    input_shape: Sequence[int],
    task: str,
    batch_sizes: Sequence[int],
    atol: float,
    rtol: float,
    heldout: np.ndarray | None,
    output_names: Sequence[str] = (),
    exact: bool = True,
    reference64: Runner | None = None,
    notes: list[str] | None = None,
) -> list[Check]:
    """Every runner x batch size x input case x output, compared with ``reference``.

    ``exact=False`` (quantized files): values are measured but only shape, dtype
    and errors decide. ``reference64`` (a float64 copy of the eager model) judges
    again the scaled, out-of-distribution cases whose values fail against float32
    eager: there float32 eager's own rounding error may be what is off. It runs only
    then (float64 convolutions are ~10x slower on a CPU); when it cannot run, the
    float32 verdict stands and a line in ``notes`` says why.
    """
    checks: list[Check] = []
    for batch in batch_sizes:
        for case, x in make_inputs(input_shape, batch, heldout).items():
            tol = {"atol": atol * CASES[case], "rtol": rtol, "exact": exact}
            refs = reference.run(x)
            found = [
                c
                for runner in runners
                for c in _check_runner(runner, x, refs, case, batch, tol, task, output_names)
            ]
            if reference64 is not None and CASES[case] != 1 and _values_failed(found):
                again, reference64 = _against_float64(
                    runners, x, refs, reference64, case, batch, tol, task, output_names, notes
                )
                found = again or found
            checks += found
    return checks


def _values_failed(checks: list[Check]) -> bool:
    """Some check failed on its values alone (right shape and dtype, it ran)."""
    return any(
        not c.passed
        and c.error is None
        and c.shape == c.expected_shape
        and c.dtype == c.expected_dtype
        for c in checks
    )


def _against_float64(
    runners: Sequence[Runner],
    x: np.ndarray,
    refs: list[np.ndarray],
    reference64: Runner,
    case: str,
    batch: int,
    tol: dict[str, Any],
    task: str,
    output_names: Sequence[str],
    notes: list[str] | None,
) -> tuple[list[Check], Runner | None]:
    """One case's checks judged against the float64 reference (``[]``: it cannot run,
    and the reference is dropped for the rest of the sweep)."""
    try:
        truth = reference64.run(x)
    except Exception as exc:  # a model float64 breaks: the float32 verdict stands
        if notes is not None:
            notes.append(
                f"no float64 reference ({one_line(exc, 120)}): "
                "out-of-distribution inputs judged against float32 eager only"
            )
        return [], None
    if len(truth) != len(refs):
        return [], reference64
    tol = {**tol, "reference": "eager-float64"}
    return [
        c
        for runner in runners
        for c in _check_runner(runner, x, refs, case, batch, tol, task, output_names, truth)
    ], reference64


def _check_runner(
    runner: Runner,
    x: np.ndarray,
    refs: list[np.ndarray],
    case: str,
    batch: int,
    tol: dict[str, Any],
    task: str,
    output_names: Sequence[str],
    truth: list[np.ndarray] | None = None,
) -> list[Check]:
    """The checks of one runner on one input: one per output, or one saying why none."""
    try:
        got = runner.run(x)
    except Exception as exc:
        error = f"runtime error: {one_line(exc, 160)}"
        return [Check(runner.name, case, batch, "*", error=error, **tol)]
    if len(got) != len(refs):
        error = f"{len(got)} outputs, eager has {len(refs)}"
        return [Check(runner.name, case, batch, "*", error=error, **tol)]
    checks = []
    for i, (r, g) in enumerate(zip(refs, got, strict=True)):
        name = output_names[i] if i < len(output_names) else f"output_{i}"
        t = truth[i] if truth is not None else None
        fields = compare(r, g, task, tol["atol"], tol["rtol"], decide=i == 0, truth=t)
        checks.append(Check(runner.name, case, batch, name, **tol, **fields))
    return checks
