"""`ComparisonOptions`: what `search-templates compare` runs, checked before any model loads.

The comparison answers, on the user's own task, the question this project grew from: does prompt-based
fine-tuning beat standard fine-tuning (a classification head on the same backbone), and by how much,
with the same k-shot splits, seeds and training budget for both. The prompt is the task's own (hand-written,
or from label names) or an exported one (`best.json`, one prompt or an ensemble).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..training import TrainConfig

METHODS = ("zero-shot", "prompt", "standard")
METHOD_NAMES = {"zero-shot": "zero-shot prompt (no training)", "prompt": "prompt-based fine-tuning",
                "standard": "standard fine-tuning (classification head)"}
DEFAULT_SEEDS = (13, 21, 42, 87, 100)  # LM-BFF's five k-shot splits


@dataclass
class ComparisonOptions:
    task: str
    prompt: str | None = None          # exported prompt file; None: the task's own prompt
    methods: tuple[str, ...] = METHODS
    model: str | None = None           # None: the exported prompt's backbone, else smollm2-135m
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    steps: int = TrainConfig.steps
    lr: float = TrainConfig.lr
    # Standard fine-tuning's own budget (None: the prompt's): a head that starts from random weights may need
    # more steps or a larger learning rate than a prompt, and a fair comparison lets the user give them.
    standard_steps: int | None = None
    standard_lr: float | None = None
    batch_size: int = TrainConfig.batch_size
    max_length: int = TrainConfig.max_length
    precision: str = "auto"
    k: int = 16
    data_dir: str | None = None
    test_limit: int | None = None
    device: str | None = None
    out: str | None = None             # None: runs/compare-<task name>
    progress: bool = True

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        self.seeds = tuple(self.seeds)

    def validate(self) -> None:
        """Every field, then the task, the prompt file and every split the comparison reads; no model loads."""
        from ..search import SearchOptions

        problem = SearchOptions.device_problem(self.device)
        if problem:
            raise UserError(f"--device: got {self.device!r}, expected {problem}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise UserError(f"--methods: got {list(self.methods)}, expected one or more of {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise UserError(f"--methods: {list(self.methods)} names a method twice")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds: got {list(self.seeds)}, expected one or more different integers")
        for name, value, low in (("--steps", self.steps, 1), ("--standard-steps", self.head_steps, 1),
                                 ("--batch-size", self.batch_size, 1),
                                 ("--max-length", self.max_length, 8), ("--k", self.k, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name}: got {value!r}, expected an integer >= {low}")
        if self.test_limit is not None and (not isinstance(self.test_limit, int) or self.test_limit < 1):
            raise UserError(f"--test-limit: got {self.test_limit!r}, expected an integer >= 1")
        TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size, max_length=self.max_length,
                    precision=self.precision).validate("training settings (--steps, --lr, --batch-size, --precision)")
        TrainConfig(steps=self.head_steps, lr=self.head_lr).validate("standard fine-tuning (--standard-steps, --standard-lr)")
        task = self.load_task()
        self.prompt_candidates(task)
        self.check_splits(task)
        from ..search import check_model_folder, check_out_folder

        check_model_folder(self.backbone_name(), "--model")
        check_out_folder(self.out_folder(task), "--out")

    def load_task(self):
        from ..data import load_task

        return load_task(self.task)

    def out_folder(self, task) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"compare-{task.name.lower()}"

    def backbone_name(self) -> str:
        if self.model:
            return self.model
        loaded = self.prompt_document()
        return loaded.document["backbone"] if loaded is not None else "smollm2-135m"

    def prompt_document(self):
        """The exported prompt file, read once (None without --prompt)."""
        if self.prompt is None:
            return None
        if getattr(self, "_document", None) is None or self._document[0] != self.prompt:
            from ..prompts import read_document

            self._document = (self.prompt, read_document(self.prompt))
        return self._document[1]

    def prompt_candidates(self, task) -> list[dict[str, Any]]:
        """The prompt(s) to fine-tune, as search candidates: one, or an ensemble's members."""
        from ..prompts import Verbalizer
        from ..search import make_candidate

        loaded = self.prompt_document()
        if loaded is None:
            if not task.has_own_prompt:
                raise UserError(f"task {task.name} has no label words of its own (its labels are no words); pass "
                                f"--prompt with a prompt a search exported (runs/<task>/best.json)")
            return [make_candidate(task.template, Verbalizer.for_task(task))]
        if list(loaded.task().labels) != list(task.labels):
            raise UserError(f"{self.prompt}: its task's labels {list(loaded.task().labels)} differ from task "
                            f"{task.name}'s {list(task.labels)}")
        return [make_candidate(member.template(), member.verbalizer(), member.demonstration_mode)
                for member in loaded.members()]

    def demonstration_settings(self) -> dict[str, Any]:
        """The exported prompt's demonstration sampler settings (LM-BFF's defaults without a prompt file)."""
        loaded = self.prompt_document()
        if loaded is None:
            return {}
        section = loaded.members()[0].document.get("demonstrations") or {}
        keys = {"filter_rate": "demo_filter_rate", "inference_samples": "demo_inference_samples",
                "encoder": "demo_encoder", "lengths": "demo_lengths"}
        return {target: section[source] for source, target in keys.items() if section.get(source) is not None}

    def check_splits(self, task) -> None:
        from ..data import load_split

        for seed in self.seeds:
            for split in ("train", "dev", "test"):
                examples = load_split(task, split, data_dir=self.data_dir, k=self.k, seed=seed)
                if split == "test" and any(example.label is None for example in examples):
                    raise UserError(f"task {task.name}: the test split (seed {seed}) has examples without a label; "
                                    f"the comparison scores every method on labelled test examples")

    @property
    def head_steps(self) -> int:
        return self.steps if self.standard_steps is None else self.standard_steps

    @property
    def head_lr(self) -> float:
        return self.lr if self.standard_lr is None else self.standard_lr

    def train_config(self, seed: int, *, standard: bool = False) -> TrainConfig:
        """The training settings of prompt-based fine-tuning, or with `standard` of the classification head."""
        steps, lr = (self.head_steps, self.head_lr) if standard else (self.steps, self.lr)
        return TrainConfig(steps=steps, lr=lr, batch_size=self.batch_size, max_length=self.max_length,
                           precision=self.resolved_precision(), seed=seed, eval_every=min(TrainConfig.eval_every, steps))

    def settings(self, task) -> dict[str, Any]:
        """What every stored result depends on besides its seed's data: a folder holding results made with
        other settings is not reused (`ResultStore`)."""
        return {"task": task.name, "labels": list(task.labels), "prompt": self.prompt_candidates(task),
                "demonstration_settings": self.demonstration_settings(),
                "model": self.backbone_name(), "steps": self.steps, "lr": self.lr, "standard_steps": self.head_steps,
                "standard_lr": self.head_lr, "batch_size": self.batch_size,
                "max_length": self.max_length, "precision": self.resolved_precision(), "k": self.k,
                "test_limit": self.test_limit}

    def resolved_precision(self) -> str:
        """"fp32" or "bf16" for the device the comparison runs on ("auto" resolved), as the search records it."""
        if self.precision != "auto":
            return self.precision
        import torch

        from ..training import resolve_precision

        return resolve_precision("auto", self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def data_hash(self, task, seed: int) -> str:
        """The hash of one seed's train/dev/test examples: a unit stored for other data is run again."""
        from ..search import data_fingerprint

        return data_fingerprint(task, data_dir=self.data_dir, k=self.k, seeds=(seed,))["sha256"]
