"""`run_comparison`: every unit (method x seed, an ensemble's members one by one) the options ask for, each
stored as soon as it finishes, then the summary, `comparison.md` and `comparison.png` in the output folder.

Prompt units run first and share one loaded backbone (the search's evaluator restores its pretrained
weights before each); standard fine-tuning loads the backbone with a fresh classification head per seed
after that backbone is released; nothing stays loaded when it returns. A unit that fails is recorded with its
error and tried again next run; the others go on.
"""
from __future__ import annotations

import traceback
from typing import Any, Callable

from tqdm.auto import tqdm

from ..search import clear_process_state
from .methods import ensemble_row, prompt_unit, standard_unit
from .options import ComparisonOptions
from .report import ComparisonSummary, markdown, plot, summarise
from .store import ResultStore, unit_key


def planned_units(options: ComparisonOptions, candidates: list[dict[str, Any]]) -> list[tuple[str, int, int | None]]:
    """(method, seed, member) in the order they run; member is None for standard fine-tuning and for a
    single prompt. Zero-shot runs on the first seed only when no prompt shows demonstrations: without them
    its scores do not depend on the seed's training examples."""
    members: list[int | None] = [None] if len(candidates) == 1 else list(range(len(candidates)))
    demonstrations = any(c.get("demonstrations", "off") != "off" for c in candidates)
    units = []
    for method in ("zero-shot", "prompt", "standard"):
        if method not in options.methods:
            continue
        seeds = options.seeds if method != "zero-shot" or demonstrations else options.seeds[:1]
        for seed in seeds:
            for member in (members if method != "standard" else [None]):
                units.append((method, seed, member))
    return units


def run_comparison(options: ComparisonOptions, *, say: Callable[[str], None] = print,
                   command: str | None = None, run_units: bool = True,
                   after_unit: Callable[[ResultStore], None] | None = None) -> ComparisonSummary:
    """Run the units not stored yet (none with `run_units=False`: only summarise what is stored, the rest
    listed as missing), then write the summary files. `after_unit` sees the store after each unit is put in it
    (a benchmark keeps a copy where run folders do not last)."""
    options.validate()
    task = options.load_task()
    folder = options.out_folder(task)
    store = ResultStore(folder, options.settings(task))
    candidates = options.prompt_candidates(task)
    units = planned_units(options, candidates)
    hashes = {seed: options.data_hash(task, seed) for seed in options.seeds}

    def finished(method: str, seed: int, member: int | None) -> dict[str, Any] | None:
        row = store.get(unit_key(method, seed, member), hashes[seed])
        return None if row is None or "failed" in row else row

    todo = [unit for unit in units if finished(*unit) is None]
    if len(todo) < len(units):
        say(f"{folder}: {len(units) - len(todo)} of {len(units)} unit(s) already done, reused")
    released = False
    for method, seed, member in tqdm(todo if run_units else [], desc="compare", disable=not options.progress):
        if method == "standard" and not released:
            clear_process_state()  # the prompt units' backbone, before a second copy loads with a head
            released = True
        key = unit_key(method, seed, member)
        try:
            if method == "standard":
                row = standard_unit(options, task, seed)
            else:
                row = prompt_unit(options, task, candidates[member or 0], seed, 0 if method == "zero-shot" else options.steps)
        except (KeyboardInterrupt, MemoryError):
            say(f"stopped during {key}; the {len(store.units)} finished unit(s) are in {store.path}: run again to go on")
            raise
        except Exception as error:  # noqa: BLE001 - recorded, reported, retried next run; the rest goes on
            store.put(key, hashes[seed], {"failed": f"{type(error).__name__}: {error}",
                                          "traceback": traceback.format_exc(limit=8)})
            say(f"{key} failed: {type(error).__name__}: {error}")
        else:
            store.put(key, hashes[seed], row)
        if after_unit is not None:
            after_unit(store)
    clear_process_state()  # nothing stays loaded once the comparison returns
    summary = summarise(task, store.settings, _rows_by_method(task, units, finished),
                        missing=[unit_key(*unit) for unit in units if finished(*unit) is None])
    folder.mkdir(parents=True, exist_ok=True)  # also when nothing has run yet
    (folder / "comparison.md").write_text(markdown(summary, command), encoding="utf-8")
    plot(summary, folder / "comparison.png")
    return summary


def _rows_by_method(task, units, finished) -> dict[str, dict[int, dict[str, Any]]]:
    """method -> seed -> row; an ensemble's row on a seed once all its members are done there."""
    grouped: dict[str, dict[int, list]] = {}
    for method, seed, member in units:
        grouped.setdefault(method, {}).setdefault(seed, []).append(finished(method, seed, member))
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for method, by_seed in grouped.items():
        rows[method] = {}
        for seed, parts in by_seed.items():
            if any(part is None for part in parts):
                continue
            rows[method][seed] = parts[0] if len(parts) == 1 else ensemble_row(task, parts)
    return rows
