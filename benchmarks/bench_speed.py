"""Speed of one prompt-based fine-tuning step and of a dev evaluation, per phase, against this machine's
matmul peak, and the resident memory of a sequence of search evaluations.

    OMP_NUM_THREADS=1 AUTOPROMPT_DATA_DIR=../shared/data/lmbff \
        python benchmarks/bench_speed.py --model smollm2-135m --threads 1 --steps 3 --precision fp32 bf16

For SST-2 (k=16, seed 13, the manual prompt) and each precision:
* the matmul peak: GFLOP/s of torch.matmul on square fp32 and bf16 matrices at the thread count in use;
* per training step: tokenisation, forward (class scores + loss), backward, optimiser (clip + AdamW
  step + zero_grad), each timed separately over `--steps` steps after one warm-up step;
* a dev evaluation of 32 examples, twice (the second may reuse cached encodings);
* `fine_tune` end to end (`--steps` steps, dev scored at step 0 and every 2 steps: snapshots included);
* the cost of a best-checkpoint snapshot: the old whole-state-dict clone against the trainable-only copy.
FLOPs are counted, not guessed: `torch.utils.flop_counter.FlopCounterMode` over one extra step (every
matmul, linear and attention kernel, forward and backward separately). Beside it, the textbook estimate
2 * (parameters in matmuls) * tokens forward and twice that backward, on the padded batch.

With `--accuracy-tasks` it measures instead whether a precision moves the metrics: prompt-based
fine-tuning (`--accuracy-steps` steps, dev every 8) per task, seed and precision, test on a seeded sample
of `--test-limit` sentences, saved as results/<name>_accuracy.md:

    python benchmarks/bench_speed.py --accuracy-tasks sst2 cr --seeds 13 21 42 87 100 --precision fp32 bf16 \
        --test-limit 200

With `--micro-batching` it compares training batches run whole against micro-batches of similar length
(results/<name>.md): `python benchmarks/bench_speed.py --micro-batching --steps 6 --name speed_micro_batches`

The memory part runs in a fresh process (so its peak is its own): `--evaluations` evaluations through
`PromptEvaluator.evaluate_with`, as the search runs them, with the resident set (VmRSS) after each and
the process peak (VmHWM).

With `--freed-memory` it runs that sequence twice, in fresh processes, with freed tensor memory handed
back to the system (AUTOPROMPT_KEEP_FREED_MEMORY=0, glibc's defaults) and kept for reuse (the default),
and compares wall, user and system seconds per evaluation, page faults and resident memory:
`python benchmarks/bench_speed.py --freed-memory --precision bf16 --evaluations 6 --memory-steps 8 --clock wall
--name speed_freed_memory`
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

import torch  # noqa: E402

from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.models import load_backbone, quiet_transformers  # noqa: E402
from autoprompt_search.prompts import Prompt, Template, Verbalizer  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.training import TrainConfig, evaluate, fine_tune  # noqa: E402
from autoprompt_search.training import trainer as trainer_module  # noqa: E402

MARKER = "MEMORY-JSON:"
# CPU seconds of this process by default: on a shared machine wall time mostly measures the neighbours.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def proc_status_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def matmul_peak(dtype: torch.dtype, size: int, repeats: int) -> float:
    """GFLOP/s of size x size matmuls (2 n^3 FLOPs each), best of `repeats` after a warm-up."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        torch.matmul(a, b)
        best = min(best, clock() - start)
    return 2 * size**3 / best / 1e9


def has_field(name: str) -> bool:
    return name in TrainConfig.__dataclass_fields__


def autocast_for(precision: str, device: torch.device):
    """The trainer's own autocast context when it has one (fp32 otherwise)."""
    context = getattr(trainer_module, "precision_context", None)
    if context is None:
        return contextlib.nullcontext()
    return context(precision, device)


def matmul_parameters(model) -> int:
    """Weights of the Linear layers of the transformer body (the embedding lookup is no matmul)."""
    body = model.base_model
    return sum(m.weight.numel() for m in body.modules() if isinstance(m, torch.nn.Linear))


def step_tokens(encoded) -> tuple[int, int]:
    """(real tokens, tokens computed on the padded batch) of one causal/masked batch."""
    real = sum(len(e.input_ids) + sum(max(0, len(c) - 1) for c in e.continuations) for e in encoded)
    longest = max(len(e.input_ids) for e in encoded)
    classes = len(encoded[0].continuations)
    longest_cont = max((len(c) for e in encoded for c in e.continuations), default=1)
    padded = len(encoded) * longest + len(encoded) * classes * max(0, longest_cont - 1)
    return real, padded


def make_train_config(args, precision: str, **overrides) -> TrainConfig:
    values = dict(steps=args.steps, batch_size=args.batch_size, eval_every=2, seed=13)
    if has_field("precision"):
        values["precision"] = precision
    if args.tuning and has_field("tuning"):
        values["tuning"] = args.tuning
    values.update(overrides)
    return TrainConfig(**values)


def prepare_tuning(backbone, config: TrainConfig) -> None:
    """LoRA adapters (injected, reset, the rest frozen) when the config asks for them and the package has them."""
    if getattr(config, "tuning", "full") != "full":
        from autoprompt_search import training

        training.prepare_tuning(backbone.model, config)


def make_optimizer(trainable, config, args):
    """The trainer's AdamW in `--optimizer` form (code without training/optimizer.py: torch's default)."""
    try:
        from autoprompt_search.training.optimizer import adamw
    except ImportError:
        return torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    return adamw(trainable, lr=config.lr, weight_decay=config.weight_decay, implementation=args.optimizer)


def measure_phases(backbone, task, prompt, train, dev, args, precision: str) -> dict:
    """Per-phase seconds of `args.steps` training steps (after a warm-up step) and a dev evaluation."""
    from torch.utils.flop_counter import FlopCounterMode

    model, device = backbone.model, backbone.device
    config = make_train_config(args, precision)
    prepare_tuning(backbone, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, config, args)
    rng = random.Random(13)
    phases = {name: [] for name in ("tokenise", "forward", "backward", "optimizer")}
    tokens_real, tokens_padded = [], []
    backbone.train(True)

    def one_step(record: bool, counter=None):
        examples = rng.sample(list(train), config.batch_size)
        t0 = clock()
        encoded = [trainer_module._encode(backbone, e, prompt, (), config.max_length) for e in examples]
        t1 = clock()
        with counter or contextlib.nullcontext(), autocast_for(precision, device):
            scores = trainer_module._scores(backbone, encoded, prompt.verbalizer)
            loss = trainer_module.prompt_loss(task, scores, trainer_module._gold_targets(task, examples, scores.device))
        forward_flops = counter.get_total_flops() if counter else 0
        t2 = clock()
        with counter or contextlib.nullcontext():  # entering the counter again resets its count
            loss.backward()
        t3 = clock()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = clock()
        if record:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(seconds)
            real, padded = step_tokens(encoded)
            tokens_real.append(real)
            tokens_padded.append(padded)
        if counter:
            return forward_flops, counter.get_total_flops(), step_tokens(encoded)
        return None

    one_step(record=False)  # warm-up
    for _ in range(args.steps):
        one_step(record=True)
    forward_flops, backward_flops, (_, counted_padded) = one_step(False, FlopCounterMode(display=False))
    del optimizer
    backbone.train(False)
    # FLOPs scale with the padded tokens of the counted step; rescale to the timed steps' mean.
    scale = statistics.fmean(tokens_padded) / counted_padded
    forward_flops, backward_flops = forward_flops * scale, backward_flops * scale
    means = {name: statistics.fmean(values) for name, values in phases.items()}
    estimate_forward = 2 * matmul_parameters(model) * statistics.fmean(tokens_padded)

    from autoprompt_search import training

    clear = getattr(training, "clear_encoding_cache", None)
    if clear:
        clear()
    eval_kwargs = dict(batch_size=config.eval_batch_size, max_length=config.max_length, seed=13)
    if has_field("precision"):
        eval_kwargs["precision"] = precision
    began = clock()
    cold = evaluate(backbone, task, prompt, dev, **eval_kwargs)
    cold_seconds, began = clock() - began, clock()
    warm = evaluate(backbone, task, prompt, dev, **eval_kwargs)
    warm_seconds = clock() - began
    with FlopCounterMode(display=False) as counter:
        evaluate(backbone, task, prompt, dev, **eval_kwargs)
    eval_flops = counter.get_total_flops()
    step_seconds = sum(means.values())
    return {
        "seconds": means, "step_seconds": step_seconds,
        "tokens_real_per_step": statistics.fmean(tokens_real), "tokens_padded_per_step": statistics.fmean(tokens_padded),
        "tokens_per_second_train": statistics.fmean(tokens_real) / step_seconds,
        "flops": {"forward": forward_flops, "backward": backward_flops, "estimate_forward": estimate_forward,
                  "estimate_backward": 2 * estimate_forward, "dev_eval": eval_flops},
        "gflops_per_second": {"forward": forward_flops / means["forward"] / 1e9,
                              "backward": backward_flops / means["backward"] / 1e9,
                              "step": (forward_flops + backward_flops) / step_seconds / 1e9,
                              "dev_eval_warm": eval_flops / warm_seconds / 1e9},
        "dev_eval": {"examples": len(dev), "cold_seconds": cold_seconds, "warm_seconds": warm_seconds,
                     "tokens": warm.tokens, "tokens_per_second_warm": warm.tokens / warm_seconds,
                     "accuracy": cold.main, "same_scores": bool((cold.scores == warm.scores).all())},
        "rss_mb_after": proc_status_mb("VmRSS"),
    }


def measure_fine_tune(backbone, pristine, task, prompt, train, dev, args, precision: str) -> dict:
    """`fine_tune` end to end: `--steps` steps, dev at step 0 and every 2 steps."""
    backbone.model.load_state_dict(pristine)
    config = make_train_config(args, precision)
    extra = {"initial_state": pristine} if "initial_state" in fine_tune.__code__.co_varnames else {}
    prepare_tuning(backbone, config)
    start = clock()
    result = fine_tune(backbone, task, prompt, train, dev, config, progress=False, **extra)
    seconds = clock() - start
    backbone.model.load_state_dict(pristine)
    return {"seconds": seconds, "wall_seconds_per_step": result.seconds_per_step, "best_step": result.best_step,
            "dev": result.dev.main, "history": result.history}


def measure_snapshots(model, repeats: int = 3) -> dict:
    """Seconds of a best-checkpoint copy: the whole state dict (before) and the trainer's own snapshot."""
    def best_of(function):
        times = []
        for _ in range(repeats):
            start = clock()
            copy = function()
            times.append(clock() - start)
            del copy
        return min(times)

    full = best_of(lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})
    own = best_of(lambda: trainer_module._snapshot(model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"full_state_dict_seconds": full, "trainer_snapshot_seconds": own, "trainable_parameters": trainable}


def memory_sequence(args) -> dict:
    """Evaluations through PromptEvaluator.evaluate_with, as the search runs them; RSS after each."""
    from autoprompt_search.search import EvaluatorSettings, PromptEvaluator

    precision = args.precision[0]
    train = make_train_config(args, precision, steps=args.memory_steps, eval_every=max(1, args.memory_steps // 2))
    settings = EvaluatorSettings(task="SST-2", model=args.model, device="cpu", train=train.to_dict())
    evaluator = PromptEvaluator(settings)
    rss = {"start": proc_status_mb("VmRSS")}
    start = clock()
    state = evaluator.load_state()
    rss["loaded"] = proc_status_mb("VmRSS")
    task = state.task
    words = [dict(task.label_words), {label: word for label, word in zip(task.labels, ("bad", "good"))}]
    evaluations = []
    for index in range(args.evaluations):
        seed = (13, 21, 42, 87, 100)[index % 5]
        candidate = {"template": task.template, "label_words": words[index % 2], "demonstrations": "off"}
        began, usage = clock(), resource.getrusage(resource.RUSAGE_SELF)
        outcome = evaluator.evaluate_with(state, candidate, seed, args.memory_steps)
        after = resource.getrusage(resource.RUSAGE_SELF)
        evaluations.append({"seed": seed, "dev": outcome.dev_metric, "seconds": clock() - began,
                            "user_s": after.ru_utime - usage.ru_utime, "sys_s": after.ru_stime - usage.ru_stime,
                            "minor_faults": after.ru_minflt - usage.ru_minflt,
                            "rss_mb": proc_status_mb("VmRSS"), "peak_mb": proc_status_mb("VmHWM")})
    return {"rss_mb": rss, "evaluations": evaluations, "peak_rss_mb": proc_status_mb("VmHWM"),
            "trims": getattr(getattr(state, "memory", None), "trims", None),
            "maxrss_mb": maxrss_mb(), "seconds": clock() - start, "steps": args.memory_steps,
            "precision": precision}


def run_memory_child(args, env: dict | None = None) -> dict:
    import os

    command = [sys.executable, __file__, "--memory-child", "--model", args.model, "--threads", str(args.threads),
               "--evaluations", str(args.evaluations), "--memory-steps", str(args.memory_steps),
               "--batch-size", str(args.batch_size), "--precision", args.precision[0], "--clock", args.clock]
    if args.tuning:
        command += ["--tuning", args.tuning]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        raise SystemExit(f"memory child failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith(MARKER))
    return json.loads(line[len(MARKER):])


def accuracy_runs(args) -> None:
    """Dev and test metric of prompt FT per task x seed x precision, from the same pretrained weights."""
    from common import fmt, mean_std

    from autoprompt_search.data import limit_examples

    backbone = load_backbone(args.model, device="cpu", max_length=128)
    pristine = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    rows, lines = [], []
    for name in args.accuracy_tasks:
        task = get_task(name)
        prompt = Prompt(Template.parse(task.template), Verbalizer.for_task(task))
        for seed in args.seeds:
            train = load_split(task, "train", k=16, seed=seed)
            dev = load_split(task, "dev", k=16, seed=seed)
            test = limit_examples(load_split(task, "test", k=16, seed=seed), args.test_limit)
            for precision in args.precision:
                backbone.model.load_state_dict(pristine)
                config = make_train_config(args, precision, steps=args.accuracy_steps, eval_every=8, seed=seed)
                began = clock()
                result = fine_tune(backbone, task, prompt, train, dev, config, test=test, progress=False,
                                   initial_state=pristine)
                rows.append({"task": task.name, "seed": seed, "precision": precision, "dev": result.dev.main,
                             "test": result.test.main, "best_step": result.best_step, "seconds": clock() - began,
                             "test_examples": len(test)})
                print(rows[-1], flush=True)
        lines += [f"### {task.name} ({len(args.seeds)} seeds, {args.accuracy_steps} steps, test: "
                  f"{'a seeded sample of ' + str(args.test_limit) if args.test_limit else 'all'} sentences)", "",
                  "| precision | dev | test | seconds per run |", "|---|---|---|---|"]
        for precision in args.precision:
            mine = [r for r in rows if r["task"] == task.name and r["precision"] == precision]
            lines.append(f"| {precision} | {fmt(*mean_std([r['dev'] for r in mine]))} | "
                         f"{fmt(*mean_std([r['test'] for r in mine]))} | "
                         f"{statistics.fmean(r['seconds'] for r in mine):.0f} |")
        lines.append("")
    save(f"{args.name}_accuracy", "\n".join(lines), {"rows": rows, "args": vars(args)})


def micro_batching_runs(args) -> None:
    """CPU seconds of forward + backward for the same training batches run whole and as micro-batches
    of similar length (`backward_batch` with each `--overheads` value; 'off' = one padded batch), with
    and without random demonstrations, and the gradient's largest relative difference from 'off'."""
    from autoprompt_search.demonstrations import DemonstrationConfig, DemonstrationSampler
    from autoprompt_search.training import PromptClassifier
    from autoprompt_search.training.micro_batches import padded_tokens, plan_micro_batches

    task = get_task("sst2")
    train = load_split(task, "train", k=16, seed=13)
    backbone = load_backbone(args.model, device="cpu", max_length=128)
    backbone.train(False)  # no dropout in SmolLM2 anyway; keeps both paths the same function
    model = backbone.model
    overheads = [None if o == "off" else float(o) for o in args.overheads]
    precision = args.precision[0]
    rows = []
    for demos in ("off", "random"):
        sampler = None
        if demos == "random":
            sampler = DemonstrationSampler.from_config(train, task, DemonstrationConfig(mode="random"),
                                                       show_progress=False)
        classifier = PromptClassifier.build(backbone, task, task.template, task.label_words, sampler=sampler)
        prompt, max_length = classifier.prompt, classifier.max_length
        rng = random.Random(13)
        batches = []
        for _ in range(args.steps + 1):  # the first is a warm-up
            indices = rng.sample(range(len(train)), args.batch_size)
            examples = [train[i] for i in indices]
            encoded = [trainer_module._encode(backbone, e, prompt,
                                              prompt.demonstrations(e, i, rng) if prompt.demonstrations else (),
                                              max_length, cached=False) for i, e in zip(indices, examples)]
            batches.append((encoded, examples))
        reference = None
        for overhead in overheads:
            seconds, padded, real, groups, worst = [], [], [], [], 0.0
            for index, (encoded, examples) in enumerate(batches):
                model.zero_grad(set_to_none=True)
                start = clock()
                trainer_module.backward_batch(backbone, task, prompt, encoded, examples, overhead_tokens=overhead,
                                              precision=precision)
                elapsed = clock() - start
                lengths = [trainer_module.encoded_length(item) for item in encoded]
                plan = plan_micro_batches(lengths, overhead)
                if index == 1:  # gradient check on the first timed batch
                    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
                    if reference is None:
                        reference = grads
                    worst = float((grads - reference).norm() / reference.norm())
                if index:
                    seconds.append(elapsed)
                    padded.append(padded_tokens(lengths, plan))
                    real.append(sum(lengths))
                    groups.append(len(plan))
            model.zero_grad(set_to_none=True)
            rows.append({"demonstrations": demos, "overhead_tokens": overhead, "seconds": statistics.fmean(seconds),
                         "padded_tokens": statistics.fmean(padded), "real_tokens": statistics.fmean(real),
                         "micro_batches": statistics.fmean(groups), "gradient_relative_difference": worst})
            print(rows[-1], flush=True)
    lines = [f"Model {args.model}, SST-2 k=16 seed 13, manual prompt, batch {args.batch_size}, {args.threads} "
             f"thread(s), precision {precision}; mean CPU seconds of forward + backward over the same {args.steps} training batches "
             "(after a warm-up batch), per way of splitting them. 'off': one batch padded to its longest prompt; "
             "a number: micro-batches of similar length chosen to minimise padded tokens + that many tokens per "
             "extra micro-batch (training/micro_batches.py).", "",
             "| demonstrations | split (overhead tokens) | micro-batches | real tokens | padded tokens | "
             "forward+backward s | vs off | gradient rel. diff. vs off |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = next(r for r in rows if r["demonstrations"] == row["demonstrations"] and r["overhead_tokens"] is None)
        split = "off" if row["overhead_tokens"] is None else f"{row['overhead_tokens']:g}"
        lines.append(f"| {row['demonstrations']} | {split} | {row['micro_batches']:.1f} | {row['real_tokens']:.0f} | "
                     f"{row['padded_tokens']:.0f} | {row['seconds']:.2f} | {row['seconds'] / base['seconds']:.2f}x | "
                     f"{row['gradient_relative_difference']:.1e} |")
    save(args.name, "\n".join(lines), {"rows": rows, "args": vars(args)})


def report(data: dict) -> str:
    peak = data["matmul_peak_gflops"]
    lines = [f"Model {data['model']}, SST-2 k=16 seed 13, manual prompt, batch {data['batch_size']}, "
             f"{data['threads']} thread(s), {data['steps']} timed steps after a warm-up; seconds are "
             f"{'CPU seconds of the process' if data['args']['clock'] == 'cpu' else 'wall seconds'}. matmul peak "
             f"({data['matmul_size']}^2): fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s.", "",
             "| precision | tokenise s | forward s | backward s | optimizer s | step s | tokens/s | forward GFLOP/s "
             "| backward GFLOP/s | step GFLOP/s (% of fp32 peak) | dev eval cold s | dev eval warm s | dev acc | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for precision, row in data["configs"].items():
        s, g, d = row["seconds"], row["gflops_per_second"], row["dev_eval"]
        lines.append(f"| {precision} | {s['tokenise']:.3f} | {s['forward']:.3f} | {s['backward']:.3f} | "
                     f"{s['optimizer']:.3f} | {row['step_seconds']:.3f} | {row['tokens_per_second_train']:.0f} | "
                     f"{g['forward']:.1f} | {g['backward']:.1f} | {g['step']:.1f} ({100 * g['step'] / peak['fp32']:.0f}%) | "
                     f"{d['cold_seconds']:.2f} | {d['warm_seconds']:.2f} | {d['accuracy']:.3f} | {row['rss_mb_after']:.0f} |")
    lines += ["", "FLOPs per step (counted by FlopCounterMode / estimate 2*N*tokens on the padded batch, "
              "N = Linear weights of the body):"]
    for precision, row in data["configs"].items():
        f = row["flops"]
        lines.append(f"- {precision}: forward {f['forward'] / 1e9:.1f} / {f['estimate_forward'] / 1e9:.1f} GFLOP, "
                     f"backward {f['backward'] / 1e9:.1f} / {f['estimate_backward'] / 1e9:.1f} GFLOP; "
                     f"{row['tokens_real_per_step']:.0f} real, {row['tokens_padded_per_step']:.0f} padded tokens; "
                     f"dev eval {f['dev_eval'] / 1e9:.1f} GFLOP")
    if data["fine_tune"]:
        lines += ["", "| precision | fine_tune s (total) | wall s/step (training only, the trainer's own timer) "
                  "| best step | dev |", "|---|---|---|---|---|"]
    for precision, row in data["fine_tune"].items():
        lines.append(f"| {precision} | {row['seconds']:.1f} | {row['wall_seconds_per_step']:.2f} | {row['best_step']} | "
                     f"{row['dev']:.3f} |")
    snap = data["snapshot"]
    lines += ["", f"Best-checkpoint copy: whole state dict {snap['full_state_dict_seconds']:.3f} s, the trainer's "
              f"snapshot {snap['trainer_snapshot_seconds']:.3f} s ({snap['trainable_parameters'] / 1e6:.1f}M trainable "
              "parameters)."]
    if data.get("memory"):
        lines += ["", memory_report(data["memory"])]
    return "\n".join(lines)


def memory_report(memory: dict) -> str:
    rss = ", ".join(f"{e['rss_mb']:.0f}" for e in memory["evaluations"])
    seconds = ", ".join(f"{e['seconds']:.0f}" for e in memory["evaluations"])
    return (f"Memory ({len(memory['evaluations'])} evaluations of {memory['steps']} steps through "
            f"PromptEvaluator.evaluate_with, {memory['precision']}, fresh process): RSS after loading "
            f"{memory['rss_mb']['loaded']:.0f} MB; after each evaluation {rss} MB; peak (VmHWM) "
            f"{memory['peak_rss_mb']:.0f} MB. Seconds per evaluation: {seconds}.")


def freed_memory_runs(args) -> None:
    """The memory sequence with freed memory handed back (glibc's defaults) and kept (the default)."""
    runs = {"handed back": run_memory_child(args, {"AUTOPROMPT_KEEP_FREED_MEMORY": "0"}),
            "kept": run_memory_child(args, {"AUTOPROMPT_KEEP_FREED_MEMORY": "1"})}
    lines = [f"{args.evaluations} evaluations of {args.memory_steps} training steps each through "
             f"PromptEvaluator.evaluate_with ({args.model}, SST-2 manual prompt, {args.precision[0]}, "
             f"{args.threads} thread(s), fresh process per mode); seconds are {args.clock} seconds.", "",
             "| freed memory | evaluation | seconds | user s | system s | minor faults | RSS after MB | peak MB | dev |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, memory in runs.items():
        for index, e in enumerate(memory["evaluations"]):
            lines.append(f"| {mode} | {index + 1} | {e['seconds']:.1f} | {e['user_s']:.1f} | {e['sys_s']:.1f} | "
                         f"{e['minor_faults']} | {e['rss_mb']:.0f} | {e['peak_mb']:.0f} | {e['dev']:.3f} |")
    lines += ["", "| freed memory | total seconds | user s | system s | peak MB | trims |", "|---|---|---|---|---|---|"]
    for mode, memory in runs.items():
        ev = memory["evaluations"]
        lines.append(f"| {mode} | {sum(e['seconds'] for e in ev):.1f} | {sum(e['user_s'] for e in ev):.1f} | "
                     f"{sum(e['sys_s'] for e in ev):.1f} | {memory['peak_rss_mb']:.0f} | {memory.get('trims')} |")
    save(args.name, "\n".join(lines), {"runs": runs, "args": vars(args)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "auto"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--optimizer", default="fused", choices=["fused", "default"],
                        help="AdamW implementation in the phase timings (training/optimizer.py)")
    parser.add_argument("--tuning", default=None, help="passed to TrainConfig.tuning when the trainer has it")
    parser.add_argument("--evaluations", type=int, default=4, help="evaluations in the memory sequence (0: skip)")
    parser.add_argument("--memory-steps", type=int, default=4, help="training steps of each memory evaluation")
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: CPU seconds of this process (default; robust on a shared machine), wall: wall time")
    parser.add_argument("--name", default="speed")
    parser.add_argument("--accuracy-tasks", nargs="+", default=None,
                        help="instead of speed: dev/test metrics per precision on these tasks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--accuracy-steps", type=int, default=32)
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--skip-fine-tune", action="store_true",
                        help="skip the end-to-end fine_tune runs (the memory sequence times whole evaluations too)")
    parser.add_argument("--memory-only", action="store_true", help="only the memory sequence (in a fresh process)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--freed-memory", action="store_true",
                        help="the memory sequence with freed memory handed back vs kept (fresh process each)")
    parser.add_argument("--micro-batching", action="store_true",
                        help="instead of the phases: whole vs length-grouped micro-batches (--overheads)")
    parser.add_argument("--overheads", nargs="+", default=["off", "0", "24", "64"],
                        help="micro-batch overheads in tokens to compare ('off': no splitting)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    quiet_transformers()
    if args.memory_child:
        print(MARKER + json.dumps(memory_sequence(args)))
        return
    if not has_field("precision") and args.precision != ["fp32"]:
        print("this trainer has no precision setting: measuring fp32 only")
        args.precision = ["fp32"]
    if args.tuning and not has_field("tuning"):
        print("this trainer has no tuning setting: --tuning ignored")
        args.tuning = None
    if args.accuracy_tasks:
        accuracy_runs(args)
        return
    if args.micro_batching:
        micro_batching_runs(args)
        return
    if args.freed_memory:
        freed_memory_runs(args)
        return
    if args.memory_only:
        memory = run_memory_child(args)
        save(args.name, memory_report(memory), {"memory": memory, "args": vars(args)})
        return
    peak = {"fp32": matmul_peak(torch.float32, args.matmul_size, 5),
            "bf16": matmul_peak(torch.bfloat16, args.matmul_size, 5)}
    task = get_task("sst2")
    train = load_split(task, "train", k=16, seed=13)
    dev = load_split(task, "dev", k=16, seed=13)[:32]
    start = clock()
    backbone = load_backbone(args.model, device="cpu", max_length=128)
    load_seconds = clock() - start
    prepare_tuning(backbone, make_train_config(args, "fp32"))  # adapters exist before the weights are copied
    pristine = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
    prompt = Prompt(Template.parse(task.template), Verbalizer.for_task(task))
    data = {"model": args.model, "threads": args.threads, "batch_size": args.batch_size, "steps": args.steps,
            "matmul_size": args.matmul_size, "matmul_peak_gflops": peak, "load_seconds": load_seconds,
            "configs": {}, "fine_tune": {}, "args": vars(args)}
    for precision in args.precision:
        backbone.model.load_state_dict(pristine)
        data["configs"][precision] = measure_phases(backbone, task, prompt, train, dev, args, precision)
        if not args.skip_fine_tune:
            data["fine_tune"][precision] = measure_fine_tune(backbone, pristine, task, prompt, train, dev, args, precision)
    data["snapshot"] = measure_snapshots(backbone.model)
    data["rss_mb_main"] = {"now": proc_status_mb("VmRSS"), "peak": proc_status_mb("VmHWM")}
    del backbone, pristine
    if args.evaluations:
        data["memory"] = run_memory_child(args)
    save(args.name, report(data), data)


if __name__ == "__main__":
    main()
