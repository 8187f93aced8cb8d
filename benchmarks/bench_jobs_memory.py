"""Memory of a whole search under `--jobs N`: the resident sets of the search process and all its workers,
summed and sampled every 0.5 s, which is what a laptop must hold (a worker's own peak, as `/usr/bin/time`
reports, says nothing about the sum).

    python benchmarks/bench_jobs_memory.py --jobs 2 --name jobs_memory -- --task sst2

Everything after `--` goes to `search-templates` unchanged; the output folder is runs/jobs_memory/<name>-jobs<N>
(removed first, so that the search starts from nothing). Saves results/<name>.{md,json}: peak summed resident set,
the largest number of processes seen, each process's own peak, wall time, and the exported prompt.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree(root: int) -> list[int]:
    children, found, todo = children_of(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def resident_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2])
    parser.add_argument("--name", default="jobs_memory")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("search_args", nargs=argparse.REMAINDER, help="after --: arguments of search-templates")
    args = parser.parse_args()
    search_args = [a for a in args.search_args if a != "--"] or ["--task", "sst2"]
    executable = Path(sys.executable).with_name("search-templates")
    rows = []
    for jobs in args.jobs:
        out = Path("runs/jobs_memory") / f"{args.name}-jobs{jobs}"
        shutil.rmtree(out, ignore_errors=True)
        command = [str(executable), *search_args, "--jobs", str(jobs), "--out", str(out), "--quiet"]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak_sum, most_processes, own_peaks = 0, 0, {}
        while process.poll() is None:
            pids = tree(process.pid)
            sizes = {pid: resident_bytes(pid) for pid in pids}
            peak_sum = max(peak_sum, sum(sizes.values()))
            most_processes = max(most_processes, sum(1 for size in sizes.values() if size > 0))
            for pid, size in sizes.items():
                own_peaks[pid] = max(own_peaks.get(pid, 0), size)
            time.sleep(args.interval)
        stderr = process.stderr.read()
        if process.returncode != 0:
            raise SystemExit(f"search-templates --jobs {jobs} failed ({process.returncode}):\n{stderr[-2000:]}")
        best = json.loads((out / "best.json").read_text(encoding="utf-8"))
        big = sorted((size for size in own_peaks.values() if size > 100 * 2**20), reverse=True)
        rows.append({"jobs": jobs, "peak_sum_mb": peak_sum / 2**20, "processes": most_processes,
                     "own_peaks_mb": [round(size / 2**20) for size in big], "wall_s": time.perf_counter() - start,
                     "template": (best.get("template") or {}).get("lmbff"), "label_words": best.get("label_words"),
                     "dev": (best.get("dev") or {}).get("mean"), "test": (best.get("test") or {}).get("mean")})
        print(rows[-1], flush=True)
    lines = [f"`search-templates {' '.join(search_args)} --jobs N`, each from an empty output folder; resident sets of "
             f"the search process and its workers summed every {args.interval} s.", "",
             "| jobs | peak summed resident set MB | processes | each process's own peak MB (over 100 MB) | wall s | "
             "exported template | dev | test |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['jobs']} | {row['peak_sum_mb']:.0f} | {row['processes']} | "
                     f"{', '.join(map(str, row['own_peaks_mb']))} | {row['wall_s']:.0f} | `{row['template']}` | "
                     f"{row['dev']} | {row['test']} |")
    save(args.name, "\n".join(lines), {"rows": rows})


if __name__ == "__main__":
    main()
