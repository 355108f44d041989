"""Measure the book's budgets on this machine (run with `make bench`).

1. Each chapter executed top to bottom in a fresh kernel: wall-clock seconds and
   the kernel's peak resident memory (targets: <= 40 s and <= 1 GB a chapter,
   <= 5 minutes for the whole book).
2. bnbook's from-scratch BN forward+backward against torch's native kernel on the
   same input in the same run (target: <= 1.5x), plus autograd through the
   forward pass for comparison.

Budgets live here, not in pytest: a timed assertion is flaky on a shared machine.
The script prints a table and exits 1 when a target is missed.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from bnbook import BatchNorm1d, BatchNorm2d

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_SECONDS, CHAPTER_MB, BOOK_SECONDS, BN_RATIO = 40.0, 1024.0, 300.0, 1.5
PEAK_RSS_CELL = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def run_chapter(path: Path) -> tuple[float, float]:
    """Execute one chapter in a fresh kernel; return (seconds, peak kernel memory in MB)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_RSS_CELL))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    peak_kb = int(nb.cells[-1].outputs[0]["text"].strip())
    return seconds, peak_kb / 1024


def autograd_bn(x, weight, bias, eps=1e-5):
    """BN written as plain tensor ops, differentiated by autograd (the comparison point)."""
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    var, mu = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight.view(shape) + bias.view(shape)


def time_bn(shape, repeats: int) -> dict[str, float]:
    """Median forward+backward milliseconds of each implementation, interleaved in one loop."""
    torch.manual_seed(0)
    channels = shape[1]
    ours = (BatchNorm1d if len(shape) < 4 else BatchNorm2d)(channels)
    native = (torch.nn.BatchNorm1d if len(shape) < 4 else torch.nn.BatchNorm2d)(channels)
    weight, bias = torch.ones(channels, requires_grad=True), torch.zeros(channels, requires_grad=True)
    impls = {"bnbook": ours, "torch native": native,
             "autograd": lambda x: autograd_bn(x, weight, bias)}
    x, dy = torch.randn(shape), torch.randn(shape)
    times = {name: [] for name in impls}
    for rep in range(repeats + 10):
        for name, fn in impls.items():
            xi = x.clone().requires_grad_()
            start = time.perf_counter()
            fn(xi).backward(dy)
            if rep >= 10:  # warm-up
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters to run (default: all)")
    parser.add_argument("--skip-chapters", action="store_true")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    ok = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(f"BN forward+backward, median of {args.repeats} interleaved runs (target <= {BN_RATIO}x native)")
    for shape in [(256, 512), (64, 64, 16, 16)]:
        ms = time_bn(shape, args.repeats)
        ratio = ms["bnbook"] / ms["torch native"]
        ok &= ratio <= BN_RATIO
        cells = ", ".join(f"{name} {t:.3f} ms" for name, t in ms.items())
        print(f"  {str(shape):18} {cells}; bnbook/native = {ratio:.2f}x, "
              f"autograd/native = {ms['autograd'] / ms['torch native']:.2f}x")
    if not args.skip_chapters:
        chapters = args.chapters or sorted((ROOT / "chapters").glob("*.ipynb"))
        print(f"\nChapters (targets: <= {CHAPTER_SECONDS:.0f} s, <= {CHAPTER_MB:.0f} MB each; "
              f"<= {BOOK_SECONDS:.0f} s in all)")
        total = 0.0
        for path in chapters:
            seconds, mb = run_chapter(path)
            total += seconds
            ok &= seconds <= CHAPTER_SECONDS and mb <= CHAPTER_MB
            print(f"  {path.name:40} {seconds:6.1f} s  {mb:7.0f} MB peak")
        ok &= total <= BOOK_SECONDS
        print(f"  {'whole book':40} {total:6.1f} s")
    print("\nall budgets met" if ok else "\nsome budget missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
