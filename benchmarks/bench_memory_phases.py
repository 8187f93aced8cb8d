"""Where the search's resident memory goes: evaluations run through the search's own evaluator
(`PromptEvaluator`: pretrained weights kept for the next candidate, the freed-memory policy between
evaluations), by default the demo's final rung (the manual prompt, then a label-first template, 32 steps each,
then the test set). The resident set is sampled every 0.1 s and its peak reported per evaluation and phase:
training (steps and dev evaluations) and test scoring.

    python benchmarks/bench_memory_phases.py --variants keep no-keep --tuning full lora --threads 1

Variants, each in a fresh process:
  keep       the default: freed tensor memory kept in the heap for the next step (training/memory.py), the
             pretrained weights read back from the model's files (models/pretrained_weights.py); since commit
             e12896d the default also asks for huge pages (THP_MEM_ALLOC_ENABLE=1), so files measured before it
             had keep without them
  keep-copy  as keep, with the pretrained weights kept as a copy in memory (the code before)
  no-keep    AUTOPROMPT_KEEP_FREED_MEMORY=0: glibc's own thresholds, the heap trimmed before every evaluation
  keep-64mb, keep-256mb  as keep, with only freed blocks up to 64 or 256 MB kept (AUTOPROMPT_KEPT_BLOCK_MB);
             larger ones mapped afresh and handed back, as without keeping
  keep-one-arena  as keep, with every thread allocating from glibc's main heap (MALLOC_ARENA_MAX=1): a
             thread's own arena grows in heaps of at most 64 MB and maps larger blocks afresh whatever the threshold
  keep-thp, keep-no-thp, no-keep-thp, no-keep-no-thp  keep or no-keep with PyTorch's tensors of 2 MB and more
             asked to be backed by transparent huge pages (THP_MEM_ALLOC_ENABLE=1) or not (=0), whatever the default
  cast-every-pass  as keep, LoRA's frozen projections cast by autocast in every pass and each adapter's input
             cast up to fp32 by peft (the code before `training.tuning.adapted_projections_in`)
Each variant runs once per `--micro-batch-tokens` value (0: no bound; N: `TrainConfig.micro_batch_tokens`).
Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, child_result, save, saved_under_same_args  # noqa: E402

VARIANTS = {"keep": {}, "keep-copy": {}, "no-keep": {"AUTOPROMPT_KEEP_FREED_MEMORY": "0"}, "cast-every-pass": {},
            "keep-64mb": {"AUTOPROMPT_KEPT_BLOCK_MB": "64"}, "keep-256mb": {"AUTOPROMPT_KEPT_BLOCK_MB": "256"},
            "keep-one-arena": {"MALLOC_ARENA_MAX": "1"},
            "keep-thp": {"THP_MEM_ALLOC_ENABLE": "1"}, "keep-no-thp": {"THP_MEM_ALLOC_ENABLE": "0"},
            "no-keep-thp": {"AUTOPROMPT_KEEP_FREED_MEMORY": "0", "THP_MEM_ALLOC_ENABLE": "1"},
            "no-keep-no-thp": {"AUTOPROMPT_KEEP_FREED_MEMORY": "0", "THP_MEM_ALLOC_ENABLE": "0"}}
TEMPLATES = ("*cls**sent_0*_It_was*mask*.*sep+*", "*cls*_is_a*mask*_thing.*+sent_0**sep+*")


class ResidentSampler(threading.Thread):
    def __init__(self, read, period: float = 0.1):
        super().__init__(daemon=True)
        self.read, self.period, self.samples, self.stopped = read, period, [], False

    def run(self):
        while not self.stopped:
            self.samples.append((time.perf_counter(), self.read()))
            time.sleep(self.period)

    def peak(self, start: float, end: float) -> float | None:
        inside = [mb for t, mb in self.samples if start <= t <= end and mb is not None]
        return max(inside) if inside else None


def measure(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from autoprompt_search.search.evaluator import PromptEvaluator
    from autoprompt_search.search.settings import EvaluatorSettings
    from autoprompt_search.tasks import get_task
    from autoprompt_search.training import TrainConfig, keep_freed_memory, resident_mb, trainer

    if args.child_variant == "keep-copy":
        import autoprompt_search.models as models

        in_memory = models.weights_to_restore
        models.weights_to_restore = lambda model, prefer_disk=True: in_memory(model, prefer_disk=False)
    if args.child_variant == "cast-every-pass":
        import contextlib

        trainer.adapted_projections_in = lambda model, dtype: contextlib.nullcontext(0)
    if args.keep_past_memory_check and args.child_variant != "no-keep":
        import autoprompt_search.search.evaluator as evaluator_module

        evaluator_module.kept_memory_fits = lambda *a, **k: True  # measure keeping where the search would not keep
    task = get_task(args.task)
    train = {**TrainConfig().to_dict(), "precision": args.precision, "tuning": args.child_tuning,
             "micro_batch_tokens": args.child_tokens or None}
    if args.child_tuning == "lora":
        train["lr"] = args.lora_lr
    settings = EvaluatorSettings(task=task.name, model=args.model, data_dir=args.data_dir, train=train,
                                 test_at_steps=args.steps, test_limit=args.test_limit or None)
    evaluator = PromptEvaluator(settings)
    marks: dict[str, float] = {}
    evaluate = trainer.evaluate

    def marking_evaluate(*a, desc="eval", **k):
        if desc == "test":
            marks["test_start"] = time.perf_counter()
        return evaluate(*a, desc=desc, **k)

    trainer.evaluate = marking_evaluate
    sampler = ResidentSampler(resident_mb)
    sampler.start()
    state = evaluator.load_state()
    kept = keep_freed_memory()  # the evaluator's decision: kept, or handed back where keeping would not fit
    loaded = resident_mb()
    rows = []
    pristine = type(state.pristine).__name__ if state.pristine is not None else "none"
    for template in args.templates:
        candidate = {"template": template, "label_words": dict(task.label_words),
                     "demonstrations": "off"}
        marks.clear()
        start = time.perf_counter()
        outcome = evaluator.evaluate_with(state, candidate, args.seed, args.steps)
        end = time.perf_counter()
        test_start = marks.get("test_start", end)
        rows.append({"template": template, "train_peak_mb": sampler.peak(start, test_start),
                     "test_peak_mb": sampler.peak(test_start, end), "end_mb": resident_mb(),
                     "train_s": test_start - start, "test_s": end - test_start, "dev": outcome.dev_metric,
                     "test": outcome.test_metric, "best_step": outcome.extra.get("best_step")})
    sampler.stopped = True
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"freed_memory_kept": kept, "huge_pages_asked": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
            "anon_huge_pages_mb": anon_huge_pages_mb(), "page_faults": usage.ru_minflt, "kernel_s": usage.ru_stime,
            "user_s": usage.ru_utime, "variant": args.child_variant, "tuning": args.child_tuning,
            "micro_batch_tokens": args.child_tokens or None,
            "pristine": pristine, "loaded_mb": loaded,
            "evaluations": rows}


def anon_huge_pages_mb() -> float | None:
    """Resident memory of this process backed by transparent huge pages now (Linux), else None."""
    try:
        with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--test-limit", type=int, default=0, help="first N test examples (0: all)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tuning", nargs="+", default=["full"], choices=["full", "lora"])
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="memory_phases")
    parser.add_argument("--keep-past-memory-check", action="store_true",
                        help="keep variants keep freed memory even where the search's check (KEPT_MEMORY_FACTOR times "
                             "the estimated evaluation memory must fit in what is available) would hand it back")
    parser.add_argument("--child-variant", help=argparse.SUPPRESS)
    parser.add_argument("--micro-batch-tokens", type=int, nargs="+", default=[0],
                        help="bounds on the padded tokens of a training micro-batch, each in its own process (0: none)")
    parser.add_argument("--child-tuning", help=argparse.SUPPRESS)
    parser.add_argument("--child-tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_variant is not None:
        print(json.dumps(measure(args)))
        return
    planned = [(tuning, variant, tokens or None) for tuning in args.tuning for variant in args.variants
               for tokens in args.micro_batch_tokens]
    runs = stored_runs(args)
    for tuning, variant, tokens in planned:
        if any(unit_of(run) == (tuning, variant, tokens) for run in runs):
            continue
        command = [sys.executable, __file__, *sys.argv[1:], "--child-variant", variant, "--child-tuning", tuning,
                   "--child-tokens", str(tokens or 0)]
        runs.append(child_result(command, env={**os.environ, **VARIANTS[variant]}))
        print(runs[-1], flush=True)
        report(args, runs, planned)  # after every process, so that a stopped run keeps what it measured


def unit_of(run: dict) -> tuple:
    return run["tuning"], run["variant"], run.get("micro_batch_tokens") or None


# Which processes run, not how each one measures: a later run may add variants to the same file.
UNIT_ARGS = ("variants", "tuning", "micro_batch_tokens")


def stored_runs(args) -> list[dict]:
    """The processes an earlier run with the same settings (perhaps other variants) saved under --name."""
    saved = saved_under_same_args(RESULTS / f"{args.name}.json", args,
                                  lambda key: key in UNIT_ARGS or key.startswith("child_"))
    return saved.get("runs", []) if saved is not None else []


def report(args, runs: list[dict], planned: list[tuple]) -> None:
    lines = [f"{args.model}, {args.task} (k-shot seed {args.seed}), {args.steps} steps of 8 then the test set "
             f"({args.test_limit or 'all'} examples), precision {args.precision}, {args.threads} thread(s), through the "
             "search's evaluator (the pretrained weights kept for the next candidate under full fine-tuning); the "
             "evaluations run one after another in one process, as in a search. Resident set sampled every 0.1 s.", "",
             "| tuning | variant | micro-batch tokens | pretrained weights | after loading MB | template | training peak MB | "
             "test scoring peak MB | at the end MB | training s | test s | dev | test | best step |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for r in run["evaluations"]:
            lines.append(f"| {run['tuning']} | {run['variant']} | {run.get('micro_batch_tokens') or 'no bound'} | {run['pristine']} | {run['loaded_mb']:.0f} | `{r['template']}` | "
                         f"{r['train_peak_mb']:.0f} | {r['test_peak_mb']:.0f} | {r['end_mb']:.0f} | {r['train_s']:.0f} | "
                         f"{r['test_s']:.0f} | {r['dev']:.4f} | {r['test']:.4f} | {r['best_step']} |")
    lines += ["", "Per process (loading and every evaluation above): minor page faults, kernel and user CPU seconds.", "",
              "| tuning | variant | micro-batch tokens | freed memory kept | THP_MEM_ALLOC_ENABLE | huge pages at the end MB | "
              "page faults | kernel s | user s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        if "page_faults" in run:
            lines.append(f"| {run['tuning']} | {run['variant']} | {run.get('micro_batch_tokens') or 'no bound'} | "
                         f"{run['freed_memory_kept']} | {run.get('huge_pages_asked', 'not recorded')} | "
                         f"{_mb(run.get('anon_huge_pages_mb'))} | {run['page_faults']} | {run['kernel_s']:.0f} | {run['user_s']:.0f} |")
    missing = [" ".join(str(part) for part in unit if part) for unit in planned
               if not any(unit_of(run) == unit for run in runs)]
    if missing:
        lines += ["", f"Partial: not measured yet: {', '.join(missing)} (the same command measures them)."]
    save(args.name, "\n".join(lines), {"runs": runs, "args": vars(args)})


def _mb(value) -> str:
    return "not recorded" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
