"""Start-up time of the commands: each case is a fresh process, timed from outside (wall clock and the
child's CPU seconds, which a busy machine inflates less than wall time).

Cases per model:
* `render` with the snapshot cache off: what every command paid before the cache (GGUF conversion);
* `render` through the CLI with a cold cache (this run converts and writes the snapshot) and a warm one;
* render's own work through `load_encoder` (tokenizer only, no weights), cold and warm cache: what
  `render` costs once it calls `load_encoder` instead of `load_backbone`;
* `--help` and `leaderboard` (no model), for reference.

Every cache is a fresh temporary folder, so the numbers do not depend on what this machine has cached.

    OMP_NUM_THREADS=1 AUTOPROMPT_DATA_DIR=../shared/data/lmbff python benchmarks/bench_startup.py
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

CLI = [sys.executable, "-m", "autoprompt_search.cli"]
TEMPLATE = "*cls**sent_0*_It_was*mask*.*sep+*"
ENCODER_SCRIPT = """
import sys
from autoprompt_search.data import load_split
from autoprompt_search.models import load_encoder
from autoprompt_search.prompts import Template, Verbalizer
from autoprompt_search.tasks import get_task
task = get_task("sst2")
encoder = load_encoder(sys.argv[1])
template, verbalizer = Template.parse(sys.argv[2]), Verbalizer.for_task(task)
for example in load_split(task, "train", seed=13)[:1]:
    encoded = encoder.encode(example, template, verbalizer)
    print(encoded.text, encoder.tokenizer.convert_ids_to_tokens(encoded.input_ids))
"""


def timed(command: list[str], cache: str) -> dict:
    env = {**os.environ, "AUTOPROMPT_MODEL_CACHE": cache, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m"])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each warm or cache-free case")
    parser.add_argument("--name", default="startup")
    args = parser.parse_args()

    rows: list[dict] = []

    def record(model: str, case: str, command: list[str], cache: str, repeats: int = 1) -> None:
        for run in range(repeats):
            result = {"model": model, "case": case, "run": run, **timed(command, cache)}
            print(result, flush=True)
            rows.append(result)
            save(args.name, _markdown(rows), {"rows": rows})  # saved after every unit of work

    with tempfile.TemporaryDirectory() as scratch:
        run_folder = _small_leaderboard(Path(scratch) / "run")
        record("-", "--help", [*CLI, "--help"], "off", args.repeats)
        record("-", "leaderboard (2 rows)", [*CLI, "leaderboard", "--out", str(run_folder)], "off", args.repeats)
        for model in args.models:
            render = [*CLI, "render", "--task", "sst2", "--model", model, "--template", TEMPLATE, "-n", "1"]
            encoder = [sys.executable, "-c", ENCODER_SCRIPT, model, TEMPLATE]
            record(model, "render, cache off (before)", render, "off")
            cache = str(Path(scratch) / f"cache-{model}-cli")
            record(model, "render (CLI), cold cache", render, cache)
            record(model, "render (CLI), warm cache", render, cache, args.repeats)
            cache = str(Path(scratch) / f"cache-{model}-encoder")
            record(model, "render via load_encoder, cold cache", encoder, cache)
            record(model, "render via load_encoder, warm cache", encoder, cache, args.repeats)


def _small_leaderboard(folder: Path) -> Path:
    from autoprompt_search.search import Evaluation, Leaderboard

    folder.mkdir()
    board = Leaderboard(folder / "leaderboard.sqlite")
    candidate = {"template": TEMPLATE, "label_words": {"0": "terrible", "1": "great"}, "demonstrations": "off"}
    for seed, metric in ((13, 0.8), (21, 0.7)):
        board.record_evaluation(Evaluation(config_hash="bench", candidate_id="c1", candidate=candidate, seed=seed,
                                           budget=8, rung=0, dev_metric=metric))
    board.close()
    return folder


def _markdown(rows: list[dict]) -> str:
    lines = ["## Start-up of the commands (fresh process each; wall and CPU seconds)", "",
             "| model | case | runs | wall s (each run) | CPU s (each run) |", "|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["case"]), []).append(row)
    for (model, case), group in groups.items():
        walls = " / ".join(f"{r['wall_s']:.1f}" for r in group)
        cpus = " / ".join(f"{r['cpu_s']:.1f}" for r in group)
        lines.append(f"| {model} | {case} | {len(group)} | {walls} | {cpus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
