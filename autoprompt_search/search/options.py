"""Options of `search-templates --task ...` and what they choose: the evaluator settings, the
strategy and the executor.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from ..training import EMBEDDING_MODES, PRECISIONS, TUNING_MODES, TrainConfig
from .candidates import DEMO_MODES, FINALIST_MODES
from .settings import EvaluatorSettings
from .ensemble import ENSEMBLE_MEMBERS
from .executors import make_executor
from .path_checks import check_model_folder, check_out_folder, looks_like_path
from .prompt_origin import check_derived_prompt
from .selection import SELECTIONS
from .strategies import Exhaustive, SuccessiveHalving


def device_problem(device: str | None) -> str | None:
    """None when `device` is usable here; else what was expected. Checked before any model loads."""
    if device is None:
        return None
    import torch

    text = str(device).strip()
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        return "cpu, cuda, cuda:N or mps"
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "a device this machine has: no CUDA GPU is available here (use --device cpu)"
        if parsed.index is not None and parsed.index >= count:
            return f"a GPU index below {count} (this machine has {count} CUDA device(s))"
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            return "a device this machine has: MPS is not available here (use --device cpu)"
    elif parsed.type != "cpu":
        return "cpu, cuda, cuda:N or mps"
    return None


@dataclass
class SearchOptions:
    """Options of `search-templates --task ...`; also read from a TOML/JSON file (`--config`)."""

    task: str
    model: str = "smollm2-135m"
    generator: str = "auto"  # auto | none | causal | <T5 model name or folder>
    data_dir: str | None = None
    k: int = 16
    # One k-shot split by default (LM-BFF searches per split too; on 2 cores each seed doubles the race).
    seeds: tuple[int, ...] = (13,)
    out: str = "runs/search"
    n_templates: int = 4
    beam_width: int = 16
    generator_steps: int | None = None  # decoding steps; None: 18 for T5 (LM-BFF), 10 for a causal generator
    # Which generated templates become candidates: the n_templates best by zero-shot dev metric among
    # all the beam returned ("zero_shot"), or the best by generation score ("score", LM-BFF's order).
    template_screening: str = "zero_shot"
    # The zero-shot screening's examples: "dev" (the race's split) or "train" (so dev is not used twice).
    screening_split: str = "dev"
    # The causal generator's beam objective: LM-BFF's "likelihood" of the filled template, or
    # "discriminative" (the gold label word's margin over the other classes' words, with a fluency prior).
    template_objective: str = "likelihood"
    instruction_templates: int = 0  # > 0: also ask a causal backbone to write templates, in this many prompts
    n_mappings: int = 2
    label_k: int = 20
    # How the label search ranks candidate words: LM-BFF's summed "logprob", or class-conditional "pmi"
    # (words likelier for one class than for all examples, not words likely everywhere).
    label_ranking: str = "logprob"
    # Causal backbones: re-score the candidates as whole words with the classifier's own class score.
    label_whole_words: bool = False
    # Restrict each class's candidate words to this many nearest tokens of the task's own word for it (or the
    # word its label name gives) in the backbone's output-embedding space (LM-BFF's TREC setting): searched
    # words stay near the meaning of the class instead of whatever fits 16 training examples best.
    label_neighbours: int | None = None
    # > 1: also one candidate whose classes have up to this many label words each, taken from the label
    # search (top assignments, then the ranked candidates), their scores combined by log-mean-exp.
    label_words_per_class: int = 1
    # > 0: the task's own prompt uses its words with up to this many synonyms each (auto_label/synonyms.py).
    label_synonyms: int = 0
    template_files: tuple[str, ...] = ()
    mapping_files: tuple[str, ...] = ()
    demonstrations: tuple[str, ...] = ("off",)
    # Demonstration modes tried after the race on its `demo_finalists` best candidates, at the full budget
    # (finalists.py): the few prompts that matter get demonstrations without doubling the race.
    finalist_demonstrations: tuple[str, ...] = ()
    demo_finalists: int = 2
    demo_filter_rate: float = 0.5  # filtered: share of each class's examples most similar to the query
    demo_inference_samples: int = 4  # demonstration sets averaged per query (LM-BFF 16; fewer on a CPU)
    demo_encoder: str = "minilm-l6"  # filtered: sentence encoder
    strategy: str = "halving"  # halving | exhaustive
    min_steps: int = 8
    max_steps: int = 32
    eta: float = 3.0
    lr: float = TrainConfig.lr
    batch_size: int = TrainConfig.batch_size
    max_length: int = TrainConfig.max_length
    # "lora": LoRA adapters only; under "full", embeddings "freeze" keeps the token embeddings (training/config.py).
    tuning: str = TrainConfig.tuning
    lora_rank: int = TrainConfig.lora_rank
    lora_alpha: float = TrainConfig.lora_alpha
    embeddings: str = TrainConfig.embeddings
    # bf16 autocast of training and scoring ("bf16"), fp32, or "auto": bf16 where the hardware has it natively
    # (the default: it matched fp32 within the seeds' spread on SST-2 and CR, results/speed_precision_accuracy.md).
    precision: str = "auto"
    # The most padded tokens per training micro-batch (None: no bound): less memory for more passes, the same
    # gradient. Not in the configuration hash, like `jobs`: it changes how a result is computed, not which.
    micro_batch_tokens: int | None = None
    # Evaluations at once; 0: one per CPU core as memory allows, decided once the model is loaded (one on a GPU).
    # Not the default: 2 one-thread workers ran SST-2 9% faster than 1 with 2 threads here (results/demo_timing.md).
    jobs: int = 1
    backend: str = "loky"  # loky | dask | ray (with --jobs > 1 or a scheduler)
    scheduler: str | None = None
    device: str | None = None
    test: bool = True
    test_limit: int | None = None
    progress: bool = True
    retry_failed: bool = False  # evaluations recorded as failed are skipped on resume unless this is set
    # Halving keeps the task's own prompt (manual, or the starting prompt of a task file without one) in
    # the race to the final rung, where only a candidate that beats it at full budget can win.
    keep_task_prompt: bool = True
    # The export rule (selection.py); not in the configuration hash: it chooses among stored evaluations.
    selection: str = "paired-loss"
    selection_alpha: float = 0.1
    # The top-m candidates' averaged class probabilities as one more final candidate (0: none; not hashed);
    # off by default: its members' training to the final budget costs about one more final rung.
    ensemble_size: int = 0
    # Which of them are averaged: "top" all (LM-BFF), "forward" the export's pick and those of the rest that
    # raise the pick's mean dev gold log-probability when averaged in (ensemble.py).
    ensemble_members: str = "top"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "search options",
                  origins: Mapping[str, str] | None = None) -> "SearchOptions":
        """Options from plain data (a config file, parsed flags). `origins` names where each field
        came from (`--max-steps`, `search.toml, line 3: field 'max_steps'`) for the error messages;
        a field without one is called `<source>: field '<name>'`."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {unknown}; expected some of {sorted(known)}")
        where = _namer(source, origins)
        values = dict(values)
        for name, value in values.items():
            values[name] = _typed(name, value, cls.__dataclass_fields__[name].type, where)
        options = cls(**values)
        options.validate(source, origins=origins)
        return options

    def validate(self, source: str = "search options", *, origins: Mapping[str, str] | None = None) -> None:
        """Every field's type and value, with no file or model touched (see `check_inputs` for those)."""
        where = _namer(source, origins)
        for name, spec in self.__dataclass_fields__.items():
            setattr(self, name, _typed(name, getattr(self, name), spec.type, where))

        def need(ok: bool, name: str, expected: str):
            if not ok:
                raise UserError(f"{where(name)}: got {getattr(self, name)!r}, expected {expected}")

        for name in ("task", "model", "generator", "out", "demo_encoder"):
            need(bool(getattr(self, name).strip()), name, "a non-empty string")
        need(self.strategy in ("halving", "exhaustive"), "strategy", "'halving' or 'exhaustive'")
        need(self.template_screening in ("zero_shot", "score"), "template_screening", "'zero_shot' or 'score'")
        need(self.screening_split in ("dev", "train"), "screening_split", "'dev' or 'train'")
        need(self.template_objective in ("likelihood", "discriminative"), "template_objective",
             "'likelihood' or 'discriminative'")
        need(self.instruction_templates >= 0, "instruction_templates", "an integer >= 0")
        need(all(m in DEMO_MODES for m in self.demonstrations) and bool(self.demonstrations), "demonstrations",
             f"a non-empty list of {DEMO_MODES}")
        need(len(set(self.demonstrations)) == len(self.demonstrations), "demonstrations", "distinct modes")
        need(all(m in FINALIST_MODES for m in self.finalist_demonstrations), "finalist_demonstrations",
             f"a list of {FINALIST_MODES}")
        need(len(set(self.finalist_demonstrations)) == len(self.finalist_demonstrations), "finalist_demonstrations",
             "distinct modes")
        need(self.demo_finalists >= 1, "demo_finalists", "an integer >= 1")
        need(0 < self.demo_filter_rate <= 1, "demo_filter_rate", "a number in (0, 1]")
        need(self.demo_inference_samples >= 1, "demo_inference_samples", "an integer >= 1")
        need(len(self.seeds) >= 1, "seeds", "at least one seed")
        need(len(set(self.seeds)) == len(self.seeds), "seeds", "distinct seeds (each names one k-shot split)")
        need(all(seed >= 0 for seed in self.seeds), "seeds", "seeds >= 0")
        need(self.k >= 1, "k", "an integer >= 1 (examples per class)")
        need(self.n_templates >= 0, "n_templates", "an integer >= 0")
        need(self.n_mappings >= 0, "n_mappings", "an integer >= 0")
        need(self.beam_width >= 1, "beam_width", "an integer >= 1")
        need(self.label_k >= 1, "label_k", "an integer >= 1")
        need(self.label_ranking in ("logprob", "pmi"), "label_ranking", "'logprob' or 'pmi'")
        need(self.label_neighbours is None or self.label_neighbours >= self.label_k, "label_neighbours",
             f"an integer >= label_k ({self.label_k}): each class's candidates are taken from its neighbours")
        need(self.label_words_per_class >= 1, "label_words_per_class", "an integer >= 1")
        need(self.label_synonyms >= 0, "label_synonyms", "an integer >= 0")
        need(self.label_words_per_class == 1 or self.n_mappings > 0, "label_words_per_class",
             "1 when n_mappings is 0 (the words come from the label search)")
        need(self.generator_steps is None or self.generator_steps >= 1, "generator_steps", "an integer >= 1")
        need(self.min_steps >= 1, "min_steps", "an integer >= 1")
        need(self.max_steps >= self.min_steps, "max_steps", f"an integer >= min_steps ({self.min_steps})")
        need(math.isfinite(self.eta) and self.eta > 1, "eta", "a finite number > 1 (the halving rate)")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0")
        need(self.tuning in TUNING_MODES, "tuning", " or ".join(repr(m) for m in TUNING_MODES))
        need(self.embeddings in EMBEDDING_MODES, "embeddings", " or ".join(repr(m) for m in EMBEDDING_MODES))
        need(self.precision in PRECISIONS, "precision", ", ".join(repr(p) for p in PRECISIONS))
        need(self.lora_rank >= 1, "lora_rank", "an integer >= 1")
        need(self.micro_batch_tokens is None or self.micro_batch_tokens >= 1, "micro_batch_tokens",
             "an integer >= 1 (padded tokens per training micro-batch)")
        need(math.isfinite(self.lora_alpha) and self.lora_alpha > 0, "lora_alpha", "a finite number > 0")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.max_length >= 8, "max_length", "an integer >= 8 (tokens)")
        need(self.jobs >= 0, "jobs", "an integer >= 1, or 0 to let the search decide")
        need(self.selection in SELECTIONS, "selection", ", ".join(repr(rule) for rule in SELECTIONS))
        need(math.isfinite(self.selection_alpha) and 0 < self.selection_alpha < 1, "selection_alpha",
             "a number in (0, 1)")
        need(self.ensemble_size == 0 or self.ensemble_size >= 2, "ensemble_size", "0 (no ensemble) or an integer >= 2")
        need(self.ensemble_members in ENSEMBLE_MEMBERS, "ensemble_members", " or ".join(map(repr, ENSEMBLE_MEMBERS)))
        need(self.backend in ("loky", "dask", "ray", "serial"), "backend", "loky, dask, ray or serial")
        need(self.test_limit is None or self.test_limit >= 1, "test_limit", "an integer >= 1")
        need(self.scheduler is None or bool(self.scheduler.strip()), "scheduler", "an address such as tcp://host:8786")
        problem = device_problem(self.device)
        if problem:
            raise UserError(f"{where('device')}: got {self.device!r}, expected {problem}")

    # For the other commands' --device and --model (the CLI reaches them through the package).
    device_problem = staticmethod(device_problem)

    @staticmethod
    def check_model(name: str, where: str = "--model") -> None:
        check_model_folder(name, where)

    def check_inputs(self, *, origins: Mapping[str, str] | None = None, source: str = "search options"):
        """Everything the search will read, checked before any model loads (only a masked LM's
        tokenizer is read, for its label words): the task, the output folder, model folders, every
        template and mapping against the task, and each seed's data files. Returns the task."""
        self.validate(source, origins=origins)
        return _check_search_inputs(self, _namer(source, origins))

    def resolved_precision(self) -> str:
        """"fp32" or "bf16": "auto" resolved for the device the search will run on, so that the
        configuration hash says what was computed (a leaderboard moved to a machine without native
        bf16 does not mix fp32 results into bf16 ones)."""
        if self.precision != "auto":
            return self.precision
        import torch

        from ..training import resolve_precision

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return resolve_precision("auto", device)

    def settings(self) -> EvaluatorSettings:
        train = TrainConfig(steps=self.max_steps, lr=self.lr, batch_size=self.batch_size, tuning=self.tuning,
                            lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, embeddings=self.embeddings,
                            precision=self.resolved_precision(), micro_batch_tokens=self.micro_batch_tokens,
                            max_length=self.max_length, eval_every=max(1, min(TrainConfig.eval_every, self.min_steps)))
        task_file = self.task if self.task.endswith(".json") else None
        return EvaluatorSettings(task=self.task, model=self.model, data_dir=self.data_dir, k=self.k,
                                 device=self.device, train=train.to_dict(),
                                 test_at_steps=self.max_steps if self.test else None, test_limit=self.test_limit,
                                 task_file=task_file, cache_dir=str(Path(self.out) / "cache"),
                                 demo_filter_rate=float(self.demo_filter_rate),
                                 demo_inference_samples=self.demo_inference_samples, demo_encoder=self.demo_encoder)


def make_strategy(options: SearchOptions, protected: tuple[str, ...] = ()):
    """The budget strategy; `protected`: candidate ids halving never drops (see SuccessiveHalving)."""
    if options.strategy == "exhaustive":
        return Exhaustive(options.max_steps, tuple(options.seeds))
    return SuccessiveHalving(options.min_steps, options.max_steps, tuple(options.seeds), eta=options.eta,
                             first_rung="zero_shot", protected=tuple(protected) if options.keep_task_prompt else ())


def search_executor(options: SearchOptions):
    """Where evaluations run: this process, local joblib workers, or a cluster. A scheduler address
    means a cluster even without --backend (the default backend, loky, cannot use one)."""
    if options.scheduler and options.backend in ("loky", "serial"):
        if options.backend == "serial":
            raise UserError(f"--scheduler {options.scheduler} needs --backend dask or ray, not serial")
        return make_executor("dask", n_jobs=options.jobs, scheduler_address=options.scheduler)
    # jobs 0 is decided by run_pipeline once the model is loaded; undecided, evaluations run here.
    if options.backend == "serial" or (options.jobs in (0, 1) and options.scheduler is None):
        return make_executor("serial")
    if options.backend == "loky":
        return make_executor("joblib", n_jobs=options.jobs)
    return make_executor(options.backend, n_jobs=options.jobs, scheduler_address=options.scheduler)


def _namer(source: str, origins: Mapping[str, str] | None):
    def where(name: str) -> str:
        return (origins or {}).get(name) or f"{source}: field {name!r}"
    return where


_SCALARS = {"int": (int, "an integer"), "float": (float, "a number"), "bool": (bool, "true or false"),
            "str": (str, "a string")}


def _typed(name: str, value: Any, annotation: str, where) -> Any:
    """`value` checked against the field's annotation (`int`, `float | None`, `tuple[int, ...]`):
    returned as the field's type (a list becomes a tuple, an integer a float where a float is due)."""
    annotation = str(annotation).replace(" ", "")
    optional = annotation.endswith("|None")
    base = annotation.removesuffix("|None")
    if value is None and optional:
        return None
    if base.startswith("tuple["):
        item_type, item_text = _SCALARS[base[len("tuple["):].split(",")[0]]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise UserError(f"{where(name)}: got {value!r}, expected a list of {item_text.split(' ', 1)[1]}s")
        items = tuple(_scalar(name, v, item_type, item_text, where, whole=value) for v in value)
        return items
    kind, text = _SCALARS[base]
    return _scalar(name, value, kind, text + (" or nothing" if optional else ""), where)


def _scalar(name: str, value: Any, kind: type, text: str, where, whole: Any = None) -> Any:
    if kind is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        given = f"{value!r} (a string)" if isinstance(value, str) else repr(value)
        what = f"a list of {text.split(' ', 1)[1]}s" if whole is not None else text
        if whole is not None:
            given = f"{list(whole)!r} (item {given})"
        raise UserError(f"{where(name)}: got {given}, expected {what}" + ("; write it without quotes" if
                        isinstance(value, str) and kind is not str else ""))
    return value


def _check_search_inputs(options: SearchOptions, where):
    from ..data import load_split, load_task
    from ..prompts import Template, Verbalizer, mapping_entries, template_lines

    task = load_task(options.task)
    check_out_folder(Path(options.out), where("out"))
    check_model_folder(options.model, where("model"))
    if "filtered" in (*options.demonstrations, *options.finalist_demonstrations):
        check_model_folder(options.demo_encoder, where("demo_encoder"))
    if options.generator not in ("auto", "none", "causal") and looks_like_path(options.generator):
        check_model_folder(options.generator, where("generator"))
    templates = [(f"task {task.name}'s manual template", Template.parse(task.template))]
    for path in options.template_files:
        templates += template_lines(path)
    for origin, template in templates:
        for mode in options.demonstrations:
            try:
                template.validate(num_sentences=task.num_sentences, num_labels=task.num_classes,
                                  demonstrations=mode != "off")
            except UserError as error:
                raise UserError(f"{origin}: {error}" + (f" (--demonstrations {mode})" if
                                                        "demonstration" in str(error) else "")) from None
    task = _derived_prompt_checked(options, task, where)
    verbalizers = [(f"task {task.name}'s label words", Verbalizer.for_task(task))
                   ] if task.label_words_source != "search" else []
    for path in options.mapping_files:
        verbalizers += mapping_entries(path, task)
    _check_label_words(options, verbalizers)
    splits = ("train", "dev", "test") if options.test else ("train", "dev")
    for seed in options.seeds:
        for split in splits:
            try:
                load_split(task, split, data_dir=options.data_dir, k=options.k, seed=seed)
            except UserError as error:
                hint = "; or pass --no-test (test = false)" if split == "test" else ""
                raise UserError(f"{error}{hint}") from None
    return task


def _derived_prompt_checked(options: SearchOptions, task, where):
    """A task without hand-written label words: words from label names that are not one token of the
    backbone (a masked LM scores one token, the template generators place one) fall back to searched
    words, which need the label search (see `prompt_origin`). Reads only the tokenizer."""
    tokenizer = None
    if task.label_words_source == "label_names":
        from ..models import load_tokenizer_only

        tokenizer = load_tokenizer_only(options.model)
    return check_derived_prompt(task, options.n_mappings, where("n_mappings"), tokenizer)


def _check_label_words(options: SearchOptions, verbalizers) -> None:
    """A masked LM scores one token at the mask, so each label word must be one token that it knows."""
    from ..models import detect_kind, load_tokenizer, resolve_model
    from ..prompts import single_token_ids

    source = resolve_model(options.model)
    if detect_kind(source) != "mlm":
        return
    tokenizer = load_tokenizer(source)
    for origin, verbalizer in verbalizers:
        try:
            single_token_ids(tokenizer, verbalizer)
        except UserError as error:
            raise UserError(f"{origin}: {error}") from None
