"""Helpers shared by the benchmark scripts: saving results with the command that produced them."""
from __future__ import annotations

import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent.parent / "results"


def child_result(command: list[str], env: dict | None = None) -> dict:
    """Run one measurement in a fresh process (so that one measurement's heap cannot change the next one's)
    and return the JSON object it prints last."""
    import subprocess

    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def environment() -> dict:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def count_scoring_cpu(trainer_module) -> list[float]:
    """Wrap `trainer_module.evaluate` (dev and test scoring) so that its CPU seconds add up in the returned
    one-element list: a benchmark leaves them out of its CPU seconds per training step."""
    seconds = [0.0]
    evaluate = trainer_module.evaluate

    def timed(*args, **kwargs):
        start = time.process_time()
        try:
            return evaluate(*args, **kwargs)
        finally:
            seconds[0] += time.process_time() - start

    trainer_module.evaluate = timed
    return seconds


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(mean: float, std: float, scale: float = 100.0) -> str:
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def save(name: str, markdown: str, data: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    header = f"Command: `{command_line()}`\n\nEnvironment: `{json.dumps(environment())}`\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n", encoding="utf-8")
    payload = {"command": command_line(), "environment": environment(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
    print(header + markdown)
    print(f"saved results/{name}.md and results/{name}.json")


RUN_ONLY_ARGS = ("tasks", "name", "resume", "threads", "data_dir", "device")


def previous_reports(name: str, args) -> tuple[list[dict], list[str]]:
    """Reports saved by an earlier run of the same benchmark with the same settings, and its commands.

    Lets a long benchmark go on where it stopped (`--resume`) instead of recomputing finished tasks.
    Settings that only say what to run now (task list, threads, paths) may differ; any other differs -> error.
    """
    saved = saved_under_same_args(RESULTS / f"{name}.json", args, lambda key: key in RUN_ONLY_ARGS)
    if saved is None:
        return [], []
    return saved.get("tasks", []), saved.get("commands", [saved["command"]])


def saved_under_same_args(path: Path, args, ignored: Callable[[str], bool]) -> dict | None:
    """The results file an earlier run saved at `path` (None where there is none), refused when it was run
    with other arguments than `args`, leaving out those `ignored` names."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    old = {k: v for k, v in saved.get("args", {}).items() if not ignored(k)}
    new = {k: v for k, v in vars(args).items() if not ignored(k)}
    if old != new:
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise SystemExit(f"{path}: cannot resume, settings differ in {changed}; use another --name")
    return saved


def load_benchmark_backbone(model: str, threads: int | None = None, **kwargs):
    """The backbone and a copy of its pretrained weights, to reset to before every run."""
    import copy

    import torch

    from autoprompt_search.models import load_backbone, quiet_transformers

    if threads:
        torch.set_num_threads(threads)
    quiet_transformers()
    backbone = load_backbone(model, **kwargs)
    return backbone, copy.deepcopy(backbone.model.state_dict())


def resumable_state(path: Path, settings: dict, empty: dict) -> dict:
    """What an earlier run saved in `path` under the same `settings` (a fresh `empty` state when there is
    none); a run with other settings is refused, so units of different settings never mix."""
    if not path.exists():
        return {"settings": settings, **empty, "commands": []}
    state = json.loads(path.read_text(encoding="utf-8"))
    if state["settings"] != settings:
        changed = sorted(k for k in state["settings"].keys() | settings.keys() if state["settings"].get(k) != settings.get(k))
        raise SystemExit(f"{path}: cannot resume, settings differ in {changed}; use another --name")
    return state


def write_json_atomic(path: Path, value: dict) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(value, indent=2, default=float) + "\n", encoding="utf-8")
    temporary.replace(path)


def merge_missing(target: dict, saved: dict) -> None:
    """Add to `target` what `saved` holds and `target` lacks, at any depth; where both hold a value (a
    list included), the target's stays."""
    for key, value in saved.items():
        if key not in target:
            target[key] = value
        elif isinstance(target[key], dict) and isinstance(value, dict):
            merge_missing(target[key], value)


def save_merged(path: Path, state: dict) -> None:
    """Write `state` to `path` after taking in the units another process saved there since this one read
    it, so that two runs of a benchmark on disjoint tasks (one per core) can fill one results file.
    `state` is updated in place with those units."""
    lock_path = path.with_suffix(".json.lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no advisory locks on this platform: run one process per results file
            pass
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("settings") == state.get("settings"):
                mine = state.get("commands", [])
                merge_missing(state, saved)
                state["commands"] = saved.get("commands", []) + [c for c in mine if c not in saved.get("commands", [])]
        write_json_atomic(path, state)
