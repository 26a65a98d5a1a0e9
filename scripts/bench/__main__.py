"""``python scripts/bench [--quick] [--out PAGE] [--threads N] [--only a,b]``: run the
sections, write the page (``make bench`` runs this)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as `python scripts/bench`: import it as `bench`
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from bench.report import Report, fmt
from bench.sizes import Sizes
from bench.timing import REPO

# Section name (for --only) -> its module under bench.sections, in page order.
SECTIONS = {
    "circle": "circle",
    "selection": "selection",
    "fashion": "fashion",
    "startup": "startup",
    "predict": "inference",
    "memory": "memory",
    "profile": "profile",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--child-memory`` is the memory section's child process)."""
    import bench

    parser = argparse.ArgumentParser(description=bench.__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (smoke test)")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="the page")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", help=f"comma-separated sections ({','.join(SECTIONS)})")
    parser.add_argument("--child-memory", help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=60_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def toolkit_files() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every source file under toolkit/, to notice edits during a run."""
    files = {}
    for p in (REPO / "toolkit").rglob("*.py"):
        with contextlib.suppress(OSError):  # a file moved away while listing
            st = p.stat()
            files[str(p.relative_to(REPO))] = (st.st_mtime_ns, st.st_size)
    return files


def run_section(name: str, sizes: Sizes, threads: int, report: Report) -> bool:
    """Measure one section into ``report``; False (and a 'failed:' section) if it raised."""
    import importlib

    t0 = time.perf_counter()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=f"tk-bench-{name}-") as tmp:
        try:
            module = importlib.import_module(f"bench.sections.{SECTIONS[name]}")
            figures, lines = module.measure(sizes, threads, Path(tmp))
            report.data[name] = figures
            report.goals += module.goals(figures)
            report.sections.append("\n".join(lines))
            ok = True
        except Exception as exc:
            # One broken section must not hide the others' figures: say so and go on.
            traceback.print_exc()
            report.sections.append(f"## {name}\n\nfailed: {exc}\n")
            ok = False
    print(f"bench: {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run every section and write the page; returns the exit status."""
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))  # run from a checkout without the editable install too
    if args.child_memory:
        from bench.sections import memory

        memory.child(args.child_memory, args.n_train, args.threads)
        return 0

    import torch

    from bench.page import render

    torch.set_num_threads(args.threads)
    sizes = Sizes.reduced() if args.quick else Sizes()
    report = Report()
    only = set(args.only.split(",")) if args.only else None
    before = toolkit_files()
    load = [os.getloadavg()[0]]
    start = time.perf_counter()
    failed = []
    for name in SECTIONS:
        if (not only or name in only) and not run_section(name, sizes, args.threads, report):
            failed.append(name)
    load.append(os.getloadavg()[0])
    after = toolkit_files()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        report.data["toolkit_changed"] = changed
        print(f"bench: warning: toolkit/ changed during the run: {changed}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report, args, time.perf_counter() - start, load))
    print(f"bench: wrote {out}", file=sys.stderr)
    for g in report.goals:
        print(f"  {'met   ' if g.met else 'MISSED'} {g.text}: {fmt(g.measured)} {g.unit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
