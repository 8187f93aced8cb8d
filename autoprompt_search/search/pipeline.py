"""The search engine: candidates (template x label words x demonstrations), their evaluation by
prompt-based fine-tuning, and the pipeline behind `search-templates --task ...`.

A candidate is a plain JSON dict ``{"template": <LM-BFF syntax>, "label_words": {label: word},
"demonstrations": "off"|"random"|"filtered"}``; its id is the hash of that dict, so the same prompt
found by two sources is evaluated once. `PromptEvaluator` is the picklable evaluation function the
scheduler calls (in this process, joblib workers or Dask workers): it loads the backbone once per
process and restores the pretrained weights before every evaluation.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..demonstrations import demonstration_fn, with_demonstration_lengths
from ..errors import UserError
from .scheduler import EvalOutcome, LazyEvaluator
from ..tasks import Example, TaskSpec, get_task
from ..prompts import Template
from ..prompts import Prompt
from ..auto_template import round_robin_by_format, screen_by_zero_shot
from ..training import TrainConfig, evaluate, fine_tune
from ..prompts import Verbalizer

DEMO_MODES = ("off", "random", "filtered")


def make_candidate(template: Template | str, verbalizer: Verbalizer | Mapping[str, str],
                   demonstrations: str = "off") -> dict[str, Any]:
    if isinstance(template, str):
        template = Template.parse(template)
    words = verbalizer.to_mapping() if isinstance(verbalizer, Verbalizer) else dict(verbalizer)
    if demonstrations not in DEMO_MODES:
        raise UserError(f"demonstrations: expected one of {DEMO_MODES}, got {demonstrations!r}")
    return {"template": template.to_lmbff(), "label_words": words, "demonstrations": demonstrations}


def candidate_grid(templates: Sequence[Template], verbalizers: Sequence[Verbalizer],
                   demo_modes: Sequence[str] = ("off",)) -> list[dict[str, Any]]:
    """Every template x label-word mapping x demonstration mode, duplicates removed, order kept."""
    seen, grid = set(), []
    for template, verbalizer, mode in itertools.product(templates, verbalizers, demo_modes):
        candidate = make_candidate(template, verbalizer, mode)
        key = json.dumps(candidate, sort_keys=True)
        if key not in seen:
            seen.add(key)
            grid.append(candidate)
    return grid


@dataclass
class EvaluatorSettings:
    """Everything that determines an evaluation besides (candidate, seed, steps). Hashed into the
    leaderboard's configuration hash, so changing any of it never reuses stale results."""

    task: str
    model: str = "smollm2-135m"
    data_dir: str | None = None
    k: int = 16
    device: str | None = None
    train: dict = field(default_factory=lambda: TrainConfig().to_dict())
    test_at_steps: int | None = None  # score the test set at this budget (the final rung)
    test_limit: int | None = None
    demo_filter_rate: float = 0.5
    demo_inference_samples: int = 4
    demo_encoder: str = "minilm-l6"
    # With demonstrations: overrides of the task's LM-BFF lengths (max_length, first_sent_limit,
    # other_sent_limit; see demonstrations.demo_prompt_settings). Empty: LM-BFF's settings.
    demo_lengths: dict = field(default_factory=dict)
    cache_dir: str | None = None
    task_file: str | None = None  # custom task spec, re-registered in worker processes


@dataclass
class _State:
    backbone: Any
    pristine: dict
    task: TaskSpec
    splits: dict = field(default_factory=dict)
    samplers: dict = field(default_factory=dict)


class PromptEvaluator(LazyEvaluator):
    def __init__(self, settings: EvaluatorSettings):
        self.settings = settings

    def state_config(self) -> dict[str, Any]:
        s = self.settings
        return {"model": s.model, "device": s.device, "max_length": s.train.get("max_length", 128),
                "task": s.task, "task_file": s.task_file}

    def load_state(self) -> _State:
        from ..models import load_backbone, quiet_transformers

        quiet_transformers()
        task = load_task(self.settings.task, self.settings.task_file)
        backbone = load_backbone(self.settings.model, device=self.settings.device,
                                 max_length=self.settings.train.get("max_length", 128))
        pristine = {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}
        return _State(backbone, pristine, task)

    def split(self, state: _State, split: str, seed: int) -> list[Example]:
        from ..data import limit_examples, load_split

        key = (split, seed)
        if key not in state.splits:
            examples = load_split(state.task, split, data_dir=self.settings.data_dir, k=self.settings.k, seed=seed)
            if split == "test":
                examples = limit_examples(examples, self.settings.test_limit)
            state.splits[key] = examples
        return state.splits[key]

    def sampler(self, state: _State, mode: str, seed: int):
        """The demonstration sampler over this seed's training split (None when mode is "off")."""
        if mode == "off":
            return None
        from ..demonstrations import DemonstrationConfig, DemonstrationSampler

        key = (mode, seed)
        if key not in state.samplers:
            config = DemonstrationConfig(mode=mode, filter_rate=self.settings.demo_filter_rate,
                                         encoder=self.settings.demo_encoder)
            cache = Path(self.settings.cache_dir or Path.home() / ".cache" / "autoprompt_search" / "embeddings")
            state.samplers[key] = DemonstrationSampler.from_config(
                self.split(state, "train", seed), state.task, config, cache_dir=cache, device=self.settings.device,
                show_progress=False)
        return state.samplers[key]

    def prompt_for(self, state: _State, candidate: Mapping[str, Any], seed: int,
                   queries: Sequence[Example] = ()) -> Prompt:
        """The candidate's prompt; with demonstrations, drawn from this seed's training split (filtered
        mode embeds `queries` up front) and rendered with the demonstration lengths."""
        task = state.task
        sampler = self.sampler(state, candidate.get("demonstrations", "off"), seed)
        demos = None
        if sampler is not None:
            sampler.prepare_queries(list(queries))
            demos = demonstration_fn(sampler)
        prompt = Prompt(Template.parse(candidate["template"]),
                        Verbalizer.from_mapping(task, candidate["label_words"], source="candidate label_words"),
                        demonstrations=demos, inference_samples=self.settings.demo_inference_samples if demos else 1)
        return with_demonstration_lengths(prompt, task, self.settings.train.get("max_length", 128),
                                          self.settings.demo_lengths)

    def evaluate_with(self, state: _State, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        task = state.task
        state.backbone.model.load_state_dict(state.pristine)
        train, dev = self.split(state, "train", seed), self.split(state, "dev", seed)
        test = self.split(state, "test", seed) if self._wants_test(steps) else None
        prompt = self.prompt_for(state, candidate, seed, [*train, *dev, *(test or [])])
        config = TrainConfig.from_dict({**self.settings.train, "steps": steps, "seed": seed,
                                        "eval_every": max(1, min(self.settings.train.get("eval_every", 8), steps or 1))})
        if steps == 0:
            dev_result = evaluate(state.backbone, task, prompt, dev, batch_size=config.eval_batch_size,
                                  max_length=config.max_length, seed=seed)
            test_result = (evaluate(state.backbone, task, prompt, test, batch_size=config.eval_batch_size,
                                    max_length=config.max_length, seed=seed) if test else None)
            ran = 0
        else:
            result = fine_tune(state.backbone, task, prompt, train, dev, config, test=test, progress=False)
            dev_result, test_result, ran = result.dev, result.test, result.steps
        extra = {"dev_metrics": dev_result.metrics, "steps": ran}
        if test_result is not None:
            extra["test_metrics"] = test_result.metrics
        return EvalOutcome(dev_result.main, test_result.main if test_result else None, extra)

    def _wants_test(self, steps: int) -> bool:
        return self.settings.test_at_steps is not None and steps == self.settings.test_at_steps


def load_task(name: str, task_file: str | None = None) -> TaskSpec:
    if task_file:
        from ..data import load_task_spec

        return load_task_spec(task_file)
    return get_task(name)


def fine_tuned_backbone(settings: EvaluatorSettings, candidate: Mapping[str, Any], seed: int, steps: int):
    """Fine-tune a fresh backbone on one seed's split with the candidate prompt (demonstrations
    included) and return it with its prompt and task, for export."""
    evaluator = PromptEvaluator(settings)
    state = evaluator.load_state()
    train, dev = evaluator.split(state, "train", seed), evaluator.split(state, "dev", seed)
    prompt = evaluator.prompt_for(state, candidate, seed, [*train, *dev])
    if steps:
        config = TrainConfig.from_dict({**settings.train, "steps": steps, "seed": seed})
        fine_tune(state.backbone, state.task, prompt, train, dev, config, progress=True, desc="final fine-tune")
    return state.backbone, prompt, state.task


# ---------------------------------------------------------------------------------------------
# The whole search: candidates from every source, then the strategy over them


@dataclass
class SearchOptions:
    """Options of `search-templates --task ...`; also read from a TOML/JSON file (`--config`)."""

    task: str
    model: str = "smollm2-135m"
    generator: str = "auto"  # auto | none | causal | <T5 model name or folder>
    data_dir: str | None = None
    k: int = 16
    seeds: tuple[int, ...] = (13, 21)
    out: str = "runs/search"
    n_templates: int = 4
    beam_width: int = 16
    generator_steps: int | None = None  # decoding steps; None: 18 for T5 (LM-BFF), 10 for a causal generator
    # Which generated templates become candidates: the n_templates best by zero-shot dev metric among
    # all the beam returned ("zero_shot"), or the best by generation score ("score", LM-BFF's order).
    template_screening: str = "zero_shot"
    n_mappings: int = 2
    label_k: int = 20
    template_files: tuple[str, ...] = ()
    mapping_files: tuple[str, ...] = ()
    demonstrations: tuple[str, ...] = ("off",)
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
    jobs: int = 1
    backend: str = "loky"  # loky | dask | ray (with --jobs > 1 or a scheduler)
    scheduler: str | None = None
    device: str | None = None
    test: bool = True
    test_limit: int | None = None
    progress: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "search options") -> "SearchOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {unknown}; expected some of {sorted(known)}")
        values = dict(values)
        for name in ("seeds", "template_files", "mapping_files", "demonstrations"):
            if name in values and not isinstance(values[name], (list, tuple)):
                raise UserError(f"{source}: field {name!r} must be a list, got {values[name]!r}")
            if name in values:
                values[name] = tuple(values[name])
        options = cls(**values)
        options.validate(source)
        return options

    def validate(self, source: str = "search options") -> None:
        def need(ok: bool, name: str, expected: str):
            if not ok:
                raise UserError(f"{source}: field {name!r} = {getattr(self, name)!r}; expected {expected}")

        need(self.strategy in ("halving", "exhaustive"), "strategy", "'halving' or 'exhaustive'")
        need(self.template_screening in ("zero_shot", "score"), "template_screening", "'zero_shot' or 'score'")
        need(all(m in DEMO_MODES for m in self.demonstrations) and bool(self.demonstrations), "demonstrations",
             f"a non-empty list of {DEMO_MODES}")
        need(isinstance(self.demo_filter_rate, (int, float)) and 0 < self.demo_filter_rate <= 1,
             "demo_filter_rate", "a number in (0, 1]")
        need(isinstance(self.demo_inference_samples, int) and self.demo_inference_samples >= 1,
             "demo_inference_samples", "an integer >= 1")
        need(len(self.seeds) >= 1, "seeds", "at least one seed")
        need(self.n_templates >= 0 and self.n_mappings >= 0, "n_templates", "numbers >= 0")
        need(0 < self.min_steps <= self.max_steps, "min_steps", "1 <= min_steps <= max_steps")
        need(self.jobs >= 1, "jobs", "a number >= 1")
        need(self.backend in ("loky", "dask", "ray", "serial"), "backend", "loky, dask, ray or serial")

    def settings(self) -> EvaluatorSettings:
        train = TrainConfig(steps=self.max_steps, lr=self.lr, batch_size=self.batch_size,
                            max_length=self.max_length, eval_every=max(1, min(TrainConfig.eval_every, self.min_steps)))
        task_file = self.task if self.task.endswith(".json") else None
        return EvaluatorSettings(task=self.task, model=self.model, data_dir=self.data_dir, k=self.k,
                                 device=self.device, train=train.to_dict(),
                                 test_at_steps=self.max_steps if self.test else None, test_limit=self.test_limit,
                                 task_file=task_file, cache_dir=str(Path(self.out) / "cache"),
                                 demo_filter_rate=float(self.demo_filter_rate),
                                 demo_inference_samples=self.demo_inference_samples, demo_encoder=self.demo_encoder)


def make_strategy(options: SearchOptions):
    from .scheduler import Exhaustive, SuccessiveHalving

    if options.strategy == "exhaustive":
        return Exhaustive(options.max_steps, tuple(options.seeds))
    return SuccessiveHalving(options.min_steps, options.max_steps, tuple(options.seeds), eta=options.eta,
                             first_rung="zero_shot")


def _cached_json(path: Path, key: Mapping[str, Any], compute):
    """Reuse a JSON result saved under `path` when it was made with the same `key` settings."""
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("key") == json.loads(json.dumps(key)):
                return saved["value"]
        except (json.JSONDecodeError, AttributeError, KeyError):
            pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "value": value}, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return value


def _local_t5(name: str):
    """A T5 model and tokenizer from a folder or the local Hugging Face cache, or None."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None
    return model, tokenizer


def generate_templates(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone,
                       say=print) -> list[dict]:
    """Auto-T: a T5 generator when one is available, else the backbone as a causal generator."""
    from ..data import load_split
    from ..auto_template import CausalGenerator, T5Generator

    if options.generator == "none":
        say("template generator: none (--generator none)")
        return []
    t5_name = {"auto": "t5-base"}.get(options.generator, options.generator)
    loaded = _local_t5(t5_name) if options.generator not in ("causal", "none") else None
    if options.generator not in ("auto", "causal") and loaded is None:
        raise UserError(f"generator {options.generator!r} is not a local folder or a cached T5 model; "
                        "use --generator causal to generate with the backbone")
    if loaded is not None:
        say(f"template generator: T5 ({t5_name})")
        generator = T5Generator(*loaded, beam_width=options.beam_width, device=options.device,
                                max_steps=options.generator_steps or 18)
    elif backbone.kind == "causal":
        say(f"template generator: the backbone {options.model} as a causal generator"
            + (" (no T5 model available offline)" if options.generator == "auto" else ""))
        generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=options.beam_width,
                                    device=backbone.device, max_steps=options.generator_steps or 10)
    else:
        say("template generator: none (no T5 model available and the backbone is not a causal LM)")
        return []
    found = round_robin_by_format(generator.generate(task, train, label_words=task.label_words,
                                                     progress=options.progress))
    if options.template_screening == "score" or len(found) <= options.n_templates:
        return [g.to_dict() for g in found[:options.n_templates]]
    dev = load_split(task, "dev", data_dir=options.data_dir, k=options.k, seed=options.seeds[0])
    say(f"screening {len(found)} generated templates by zero-shot dev {task.metric} (seed {options.seeds[0]})")
    return screen_by_zero_shot(backbone, task, found, dev, options.n_templates, seed=options.seeds[0],
                               max_length=options.max_length, progress=options.progress)


def search_mappings(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone) -> list[dict]:
    """Auto-L with the manual template: the top assignments by zero-shot training accuracy."""
    from ..auto_label import search_label_words

    result = search_label_words(backbone, task, Template.parse(task.template), train, k=options.label_k,
                                n=options.n_mappings, progress=options.progress, max_length=options.max_length)
    names = {int(k): v for k, v in result.words.items()}
    return [{"label_words": a.label_words(task.labels, lambda i: names.get(i) or backbone.token_to_word(i)),
             "train_score": a.score} for a in result.assignments]


def build_candidates(options: SearchOptions, task: TaskSpec, backbone, say=print) -> tuple[list[dict], dict]:
    """Template x mapping x demonstration candidates from every source, and where each came from."""
    from ..data import load_split
    from ..prompts import load_template_lines
    from ..prompts import load_mapping_lines

    out = Path(options.out)
    train = load_split(task, "train", data_dir=options.data_dir, k=options.k, seed=options.seeds[0])
    templates = [Template.parse(task.template)]
    sources: dict[str, list[str]] = {templates[0].to_lmbff(): ["manual"]}
    if options.n_templates:
        key = {"task": task.name, "model": options.model, "generator": options.generator, "k": options.k,
               "seed": options.seeds[0], "beam_width": options.beam_width, "n": options.n_templates,
               "steps": options.generator_steps,
               "selection": ("round robin over formats" if options.template_screening == "score"
                             else f"zero-shot dev {options.seeds[0]}")}
        generated = _cached_json(out / "generated_templates.json", key,
                                 lambda: generate_templates(options, task, train, backbone, say))
        for item in generated:
            templates.append(Template.parse(item["template"]))
            screened = f", zero-shot dev {item['zero_shot_dev']:.3f}" if "zero_shot_dev" in item else ""
            sources.setdefault(templates[-1].to_lmbff(), []).append(f"generated ({item['score']:.2f}{screened})")
    for template in templates:
        template.validate(num_sentences=task.num_sentences)
    for path in options.template_files:
        for template in load_template_lines(path):
            _validate_from_file(template, path, task)
            templates.append(template)
            sources.setdefault(template.to_lmbff(), []).append(f"file {path}")
    verbalizers = [Verbalizer.for_task(task)]
    if options.n_mappings:
        key = {"task": task.name, "model": options.model, "k": options.k, "seed": options.seeds[0],
               "label_k": options.label_k, "n": options.n_mappings}
        mappings = _cached_json(out / "label_words.json", key, lambda: search_mappings(options, task, train, backbone))
        verbalizers += [Verbalizer.from_mapping(task, m["label_words"], source="label search") for m in mappings]
    for path in options.mapping_files:
        verbalizers += load_mapping_lines(path, task)
    candidates = candidate_grid(templates, verbalizers, options.demonstrations)
    return candidates, sources


def _validate_from_file(template: Template, path: str, task: TaskSpec) -> None:
    """Check a template read from a file, naming the file and line when it does not fit the task."""
    try:
        template.validate(num_sentences=task.num_sentences)
    except UserError as error:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        number = next((i for i, line in enumerate(lines, start=1)
                       if template.source and line.strip().split("\t")[0] == template.source), None)
        where = f"{path}, line {number}" if number else str(path)
        raise UserError(f"{where}: {error}") from None


def _remember_config(path: Path, config_hash: str, config: Mapping[str, Any]) -> None:
    """Keep every configuration hash -> configuration next to the leaderboard, for export."""
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    known[config_hash] = json.loads(json.dumps(config))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2), encoding="utf-8")
    tmp.replace(path)


def search_executor(options: SearchOptions):
    """Where evaluations run: this process, local joblib workers, or a cluster. A scheduler address
    means a cluster even without --backend (the default backend, loky, cannot use one)."""
    from .scheduler import make_executor

    if options.scheduler and options.backend in ("loky", "serial"):
        if options.backend == "serial":
            raise UserError(f"--scheduler {options.scheduler} needs --backend dask or ray, not serial")
        return make_executor("dask", n_jobs=options.jobs, scheduler_address=options.scheduler)
    if options.backend == "serial" or (options.jobs == 1 and options.scheduler is None):
        return make_executor("serial")
    if options.backend == "loky":
        return make_executor("joblib", n_jobs=options.jobs)
    return make_executor(options.backend, n_jobs=options.jobs, scheduler_address=options.scheduler)


def demonstration_section_for(settings: EvaluatorSettings, candidate: Mapping[str, Any], seed: int) -> dict:
    """The exported prompt's "demonstrations": the search's sampler settings, and with demonstrations
    the seed's training examples as the pool and the seed, so predict draws what the search drew."""
    from ..data import load_split
    from ..prompts import demonstration_section

    mode = candidate.get("demonstrations", "off")
    pool = ()
    if mode != "off":
        task = load_task(settings.task, settings.task_file)
        pool = load_split(task, "train", data_dir=settings.data_dir, k=settings.k, seed=seed)
    return demonstration_section(mode, {"filter_rate": settings.demo_filter_rate,
                                        "inference_samples": settings.demo_inference_samples,
                                        "encoder": settings.demo_encoder, "lengths": dict(settings.demo_lengths),
                                        "max_length": settings.train.get("max_length", 128)}, pool, seed)


def run_pipeline(options: SearchOptions, say=print):
    """Generate candidates, evaluate them with the chosen strategy, and leave in `options.out`:
    leaderboard.sqlite, candidates.json, progress.png and best.json."""
    from .leaderboard import Leaderboard, describe_candidate
    from .plots import plot_leaderboard
    from ..prompts import build_document, write_document
    from .scheduler import Study, describe_plan, process_local

    options.validate()
    executor = search_executor(options)
    settings = options.settings()
    task = load_task(options.task, settings.task_file)  # a misspelt task fails before any folder is made
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = PromptEvaluator(settings)
    state = process_local(evaluator.state_key(), evaluator.load_state)  # shared with serial evaluations
    candidates, sources = build_candidates(options, task, state.backbone, say)
    state.backbone.model.load_state_dict(state.pristine)
    (out / "candidates.json").write_text(json.dumps(candidates, indent=2, ensure_ascii=False), encoding="utf-8")
    strategy = make_strategy(options)
    say(f"{len(candidates)} candidates; plan:\n{describe_plan(strategy.plan(len(candidates)))}")
    # The cache folder lives in `out`; leaving it out of the hash lets a moved output folder resume.
    config = {"settings": {**asdict(settings), "cache_dir": None}, "strategy": options.strategy,
              "seeds": list(options.seeds),
              "min_steps": options.min_steps, "max_steps": options.max_steps, "eta": options.eta}
    leaderboard = Leaderboard(out / "leaderboard.sqlite")
    study = Study(leaderboard, config, strategy, evaluator, executor)
    _remember_config(out / "search_config.json", study.config_hash, config)
    result = study.run(candidates, progress=options.progress)
    plot_leaderboard(leaderboard, out / "progress.png", config_hash=study.config_hash)
    say(leaderboard.to_table(config_hash=study.config_hash))
    best = result.best
    if best is not None:
        rows = [r for r in leaderboard.rows(study.config_hash)
                if r.candidate_id == best.candidate_id and r.budget == options.max_steps]
        document = build_document(
            task, options.model, best.candidate, dev={r.seed: r.dev_metric for r in rows},
            test={r.seed: r.test_metric for r in rows},
            found_by={"strategy": options.strategy, "steps": options.max_steps, "seeds": list(options.seeds),
                      "config_hash": study.config_hash, "leaderboard": str(out / "leaderboard.sqlite"),
                      "candidate_id": best.candidate_id,
                      "sources": sources.get(best.candidate["template"], ["file"]),
                      "evaluations_run": result.n_evaluated, "evaluations_reused": result.n_reused},
            demonstrations=demonstration_section_for(settings, best.candidate, options.seeds[0]))
        write_document(document, out / "best.json")
        say(f"best: {describe_candidate(best.candidate)}  dev {best.mean_dev:.4f}"
            + (f"  test {best.mean_test:.4f}" if best.mean_test is not None else ""))
        say(f"wrote {out / 'best.json'}, {out / 'progress.png'}, {out / 'leaderboard.sqlite'}")
    return result
