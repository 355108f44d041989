"""Run every chapter under several base seeds and tabulate every claim (`make seeds`).

Each (chapter, seed) job executes the notebook in a fresh process with ``BNBOOK_SEED=<seed>`` and
``BNBOOK_CLAIMS_LOG=<file>``; with the log set, :func:`bnbook.claim` records every claim (text,
held, measured numbers) and does not stop at a failed one, so one run sees all of a chapter's
claims. Jobs run ``--jobs`` at a time (default 2: both cores busy).

Writes ``<out>/claims.md`` (a table: one row per claim, one column per seed, a failed claim with
its measured numbers), ``<out>/claims.json`` (everything) and prints the summary: claims x seeds
held, chapters that raised, each chapter's slowest run. Exits 1 if any claim failed or any chapter
raised. Claims are matched across seeds by their order in the chapter (claim 1, 2, ...), so a
claim whose text contains a measured number still lines up.

    python scripts/seeds.py --seeds "0 1 2 3 4 5 6 7 8 9" --jobs 2
    python scripts/seeds.py --chapters gamma_beta higher_order --seeds "3 4"
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import chapter_list

ROOT = Path(__file__).resolve().parents[1]
LOG_VARIABLE = "BNBOOK_CLAIMS_LOG"  # bnbook.claims.LOG_VARIABLE (not imported: the parent needs no torch)


# How a job runs a chapter. "ipython" (the default): the notebook's code cells, exported in order by nbconvert,
# run as one script in one IPython process -- the same code and order as in a kernel, without the kernel
# messaging that can stall under load with widget cells (jupyter/nbclient#312). "nbclient": a real kernel,
# as `make test` (nbval) and the book build run chapters.
RUNNERS = {
    "ipython": ("import sys, nbformat, subprocess; from nbconvert import PythonExporter; "
                "code, _ = PythonExporter().from_notebook_node(nbformat.read(sys.argv[1], as_version=4)); "
                "script = sys.argv[4]; open(script, 'w').write(code); "
                "sys.exit(subprocess.run([sys.executable, '-m', 'IPython', '--no-banner', '--colors=NoColor', "
                "script], cwd=sys.argv[3], timeout=int(sys.argv[2])).returncode)"),
    "nbclient": ("import sys, nbformat; from nbclient import NotebookClient; "
                 "nb = nbformat.read(sys.argv[1], as_version=4); "
                 "NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name='python3', "
                 "resources={'metadata': {'path': sys.argv[3]}}).execute()"),
}


def run_one(chapter: Path, seed: int, timeout: int, runner: str = "ipython") -> dict:
    """Execute one chapter under one base seed in a subprocess; return its claims, time and error."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "claims.jsonl"
        env = dict(os.environ, BNBOOK_SEED=str(seed), MPLBACKEND="Agg", **{LOG_VARIABLE: str(log)})
        env.setdefault("TQDM_DISABLE", "1")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RUNNERS[runner], str(chapter), str(timeout),
                               str(chapter.parent), str(Path(tmp) / "chapter.py")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace")
        seconds = time.perf_counter() - start
        claims = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    error = None if proc.returncode == 0 else _last_error(proc.stdout)
    return {"chapter": chapter.stem, "seed": seed, "seconds": seconds, "error": error, "claims": claims}


def _last_error(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors[-1] if errors else (lines[-1] if lines else "failed with no output"))[:300]


def _numbers(measured: dict) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in measured.items())[:200]


def table(results: list[dict], seeds: list[int]) -> tuple[str, dict]:
    """The markdown table and the summary counts."""
    by_chapter: dict[str, dict[int, dict]] = {}
    for r in results:
        by_chapter.setdefault(r["chapter"], {})[r["seed"]] = r
    lines = ["| chapter | # | claim | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|---|" + "---|" * len(seeds)]
    held = total = 0
    failures, errors, slowest = [], [], {}
    for chapter, runs in sorted(by_chapter.items()):
        slowest[chapter] = max(r["seconds"] for r in runs.values())
        errors += [f"{chapter} (seed {s}): {r['error']}" for s, r in sorted(runs.items()) if r["error"]]
        n_claims = max(len(r["claims"]) for r in runs.values())
        for i in range(n_claims):
            text = next(r["claims"][i]["text"] for r in runs.values() if len(r["claims"]) > i)
            cells = []
            for s in seeds:
                r = runs.get(s)
                c = r["claims"][i] if r and len(r["claims"]) > i else None
                total += 1
                if c is None:
                    cells.append("not reached")
                    failures.append(f"{chapter} #{i + 1} seed {s}: not reached ({text[:80]})")
                elif c["held"]:
                    held += 1
                    cells.append("✔")
                else:
                    cells.append(f"✘ {_numbers(c['measured'])}")
                    failures.append(f"{chapter} #{i + 1} seed {s}: {text[:80]} ({_numbers(c['measured'])})")
            lines.append(f"| {chapter} | {i + 1} | {text.replace('|', '/')[:120]} | " + " | ".join(cells) + " |")
    summary = {"held": held, "total": total, "failures": failures, "errors": errors, "slowest": slowest}
    return "\n".join(lines) + "\n", summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0 1 2 3 4 5 6 7 8 9", help="base seeds, space-separated")
    parser.add_argument("--jobs", type=int, default=2, help="chapters executed at once")
    chapter_list.add_argument(parser)
    parser.add_argument("--out", default=str(ROOT / "_build" / "seeds"), help="folder for claims.md and .json")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds a run (ipython) or a cell (nbclient) may take")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="ipython", help="how a chapter is executed")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.replace(",", " ").split()]
    except ValueError:
        parser.error(f"--seeds must be integers, got {args.seeds!r}")
    if not seeds:
        parser.error("--seeds names no seed")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    paths = chapter_list.selected(parser, args.chapters)
    jobs = [(p, s) for s in seeds for p in paths]
    print(f"running {len(paths)} chapters x {len(seeds)} seeds = {len(jobs)} runs, {args.jobs} at a time", flush=True)
    start = time.perf_counter()
    results = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(lambda job: run_one(*job, args.timeout, args.runner), jobs):
            flag = "raised: " + r["error"] if r["error"] else \
                f"{sum(c['held'] for c in r['claims'])}/{len(r['claims'])} claims held"
            print(f"  {r['chapter']:<28} seed {r['seed']:<3} {r['seconds']:6.1f} s  {flag}", flush=True)
            results.append(r)
    md, summary = table(results, seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.md").write_text(md, encoding="utf-8")
    (out / "claims.json").write_text(json.dumps({"seeds": seeds, "results": results, "summary": summary},
                                                indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"\nclaims x seeds held: {summary['held']}/{summary['total']}  (table: {out / 'claims.md'})")
    print("slowest run per chapter: " + ", ".join(f"{c} {s:.1f} s" for c, s in summary["slowest"].items()))
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    for line in summary["errors"]:
        print("RAISED  " + line)
    for line in summary["failures"]:
        print("FAILED  " + line)
    return 1 if summary["failures"] or summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
