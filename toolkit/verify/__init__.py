"""Run an exported file in its own runtime and compare it with the eager model.

``verify_file`` rebuilds the eager reference from the run directory (found from the
file's metadata, or ``run=``), loads the file in the runtime that will serve it
(onnxruntime, ``torch.jit.load``, ``torch.export.load``) and feeds both the same
inputs at every batch size of a sweep: real held-out samples, random inputs and
out-of-distribution ones (large magnitude, all negative). Each output is checked
for shape, dtype, element-wise closeness and agreement of the decision (label).

The lesson taken from Optimum's validator, which passes a 1923 max diff as a
"warning" after checking one batch size: every check here either passes or fails
the file, and the odd batch size 7 catches a reshape that hard-codes the batch.

Exit codes used by ``tk verify``: 0 pass, 1 mismatch, 3 the file cannot be loaded
or does not run on any input.

Then the held-out check (:mod:`toolkit.verify.heldout`): the file and the eager
model over the run's whole test split, their accuracy (or MAE), their agreement
and the rows that differ most. A float32 file must agree on every row; a
quantized or float16 file, whose numbers are not expected to match, on at least
99% (``--min-agreement``), and that check is what decides for it.

Modules: ``inputs`` (the input
cases), ``compare`` (one check per output), ``heldout`` (the whole-split check),
``report`` (the verdict and its table), ``main`` (the entry points). Everything
public is importable from here; the runtimes (and the eager reference) live with
the formats (:mod:`toolkit.formats.runtime`).
"""

from toolkit.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL, Check, compare, run_checks
from toolkit.verify.heldout import (
    FP32_MIN_AGREEMENT,
    QUANTIZED_MIN_AGREEMENT,
    HeldOut,
    TaskReport,
    check_heldout,
    default_min_agreement,
    heldout_of,
    load_heldout,
    outputs,
)
from toolkit.verify.inputs import CASES, SEED, make_inputs
from toolkit.verify.main import (
    DEFAULT_BATCH_SIZES,
    check_min_agreement,
    find_run,
    parse_batch_sizes,
    resolve_tolerance,
    tolerance_change,
    verify_file,
    verify_loaded,
)
from toolkit.verify.report import VerifyReport

__all__ = [
    "CASES",
    "DEFAULT_ATOL",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_RTOL",
    "FP32_MIN_AGREEMENT",
    "QUANTIZED_MIN_AGREEMENT",
    "SEED",
    "Check",
    "HeldOut",
    "TaskReport",
    "VerifyReport",
    "check_heldout",
    "check_min_agreement",
    "compare",
    "default_min_agreement",
    "find_run",
    "heldout_of",
    "load_heldout",
    "make_inputs",
    "outputs",
    "parse_batch_sizes",
    "resolve_tolerance",
    "run_checks",
    "tolerance_change",
    "verify_file",
    "verify_loaded",
]
