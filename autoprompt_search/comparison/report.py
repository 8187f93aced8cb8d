"""The comparison's summary: per method the test metric over seeds (mean, std, each seed), prompt-based
against standard fine-tuning seed by seed, a Markdown table and a plot. Incomplete comparisons say "partial"
and which units are missing."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .options import METHOD_NAMES


@dataclass
class MethodSummary:
    method: str
    tests: dict[int, float] = field(default_factory=dict)     # seed -> test metric
    devs: dict[int, float] = field(default_factory=dict)
    best_steps: dict[int, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def mean(self) -> float | None:
        values = list(self.tests.values())
        return sum(values) / len(values) if values else None

    @property
    def std(self) -> float | None:
        values = list(self.tests.values())
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass
class ComparisonSummary:
    task: str
    metric: str
    methods: list[MethodSummary]
    missing: list[str]
    settings: dict[str, Any]

    def method(self, name: str) -> MethodSummary | None:
        return next((m for m in self.methods if m.method == name), None)

    def prompt_against_standard(self) -> tuple[float, int, int] | None:
        """(mean over shared seeds of prompt minus standard, seeds prompt is ahead, shared seeds)."""
        prompt, standard = self.method("prompt"), self.method("standard")
        if prompt is None or standard is None:
            return None
        shared = sorted(set(prompt.tests) & set(standard.tests))
        if not shared:
            return None
        differences = [prompt.tests[s] - standard.tests[s] for s in shared]
        return sum(differences) / len(differences), sum(d > 0 for d in differences), len(shared)

    def answer(self) -> str:
        """One sentence: has prompt-based fine-tuning beaten standard fine-tuning on this task?"""
        versus = self.prompt_against_standard()
        if versus is None:
            return "prompt-based vs standard fine-tuning: run both methods to compare them"
        difference, ahead, shared = versus
        prompt, standard = self.method("prompt"), self.method("standard")
        verdict = (f"beats standard fine-tuning by {100 * difference:.1f}" if difference > 0 else
                   f"trails standard fine-tuning by {-100 * difference:.1f}" if difference < 0 else
                   "ties with standard fine-tuning at 0.0")
        return (f"{self.task}: prompt-based fine-tuning {verdict} points of {self.metric} ({cell(prompt)} vs "
                f"{cell(standard)}), ahead on {ahead} of {shared} seed(s)" + (" (partial)" if self.missing else ""))


def summarise(task, settings: Mapping[str, Any], rows: Mapping[str, Mapping[int, Mapping[str, Any]]],
              missing: Sequence[str]) -> ComparisonSummary:
    """`rows`: method -> seed -> row (an ensemble's rows already combined)."""
    methods = []
    for method, by_seed in rows.items():
        summary = MethodSummary(method)
        for seed, row in sorted(by_seed.items()):
            if row.get("test") is not None:
                summary.tests[seed] = row["test"]
                summary.devs[seed] = row["dev"]
                summary.best_steps[seed] = row.get("best_step")
                summary.seconds += row.get("seconds") or 0.0
        methods.append(summary)
    return ComparisonSummary(task.name, task.metric, methods, list(missing), dict(settings))


def cell(summary: MethodSummary | None) -> str:
    """"mean ± std" of a method's test metric x 100 (the mean alone for one seed; "-" for none)."""
    if summary is None or summary.mean is None:
        return "-"
    return f"{100 * summary.mean:.1f}" + (f" ± {100 * summary.std:.1f}" if summary.std is not None else "")


def markdown(summary: ComparisonSummary, command: str | None = None) -> str:
    s = summary.settings
    lines = ([f"Command: `{command}`", ""] if command else []) + [
        f"# {summary.task}: prompt-based vs standard fine-tuning" + (" (partial)" if summary.missing else ""), "",
        f"Backbone `{s['model']}`, K={s['k']}, {s['steps']} steps at learning rate {s['lr']}"
        + ("" if (s["standard_steps"], s["standard_lr"]) == (s["steps"], s["lr"]) else
           f" (standard fine-tuning: {s['standard_steps']} steps at {s['standard_lr']})")
        + f", batch {s['batch_size']}, "
        f"precision {s['precision']}; test examples: {s['test_limit'] or 'all'}. Each method keeps its best dev "
        f"checkpoint (step 0 included). Test metric ({summary.metric}) x 100.", "",
        summary.answer() + ".", "",
        "| method | test mean ± std | dev mean | test per seed | best step per seed | seconds |",
        "|---|---|---|---|---|---|"]
    for method in summary.methods:
        per_seed = ", ".join(f"{seed}: {100 * value:.1f}" for seed, value in method.tests.items()) or "-"
        steps = ", ".join(str(step) for step in method.best_steps.values()) or "-"
        dev = sum(method.devs.values()) / len(method.devs) if method.devs else None
        lines.append(f"| {METHOD_NAMES[method.method]} | {cell(method)} | "
                     f"{'-' if dev is None else f'{100 * dev:.1f}'} | {per_seed} | {steps} | {method.seconds:.0f} |")
    if summary.method("zero-shot") is not None and len(summary.method("zero-shot").tests) == 1:
        lines += ["", "Zero-shot scoring does not depend on the seed's training examples (no demonstrations), so it "
                      "ran once."]
    prompt = [f"`{c['template']}` {json.dumps(c['label_words'], ensure_ascii=False)}" + (f" (demonstrations: {c['demonstrations']})"
                                                          if c.get("demonstrations", "off") != "off" else "")
              for c in s["prompt"]]
    lines += ["", ("Prompt: " if len(prompt) == 1 else f"Prompt: an ensemble of {len(prompt)}: ") + "; ".join(prompt)]
    if summary.missing:
        lines += ["", f"Partial: not run yet: {', '.join(summary.missing)}. Run the same command again to continue."]
    return "\n".join(lines) + "\n"


def plot(summary: ComparisonSummary, path: str | Path) -> Path | None:
    """Each method's test metric per seed (dots) and mean ± std (bar); None when nothing is finished."""
    methods = [m for m in summary.methods if m.tests]
    if not methods:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 1.0 + 0.7 * len(methods)))
    for position, method in enumerate(methods):
        axes.barh(position, 100 * method.mean, xerr=100 * method.std if method.std is not None else None,
                  color="#9ecae1", edgecolor="#3182bd", capsize=4)
        axes.scatter([100 * v for v in method.tests.values()], [position] * len(method.tests), color="#08306b",
                     s=14, zorder=3)
    axes.set_yticks(range(len(methods)), [METHOD_NAMES[m.method] for m in methods])
    axes.invert_yaxis()
    axes.set_xlabel(f"test {summary.metric} x 100 (bar: mean ± std over seeds; dots: seeds)")
    axes.set_title(f"{summary.task}, {summary.settings['model']}, K={summary.settings['k']}"
                   + (" (partial)" if summary.missing else ""))
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
