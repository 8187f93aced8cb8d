"""Which generated templates become candidates: zero-shot screening (on dev, or on the training
examples so that the race's dev split is not also the screen's), and LM-BFF's per-format order by
generation score."""
from __future__ import annotations

from typing import Callable, Sequence

from ..prompts import Prompt, Template, Verbalizer
from ..tasks import Example, TaskSpec
from ..training import evaluate


def screen_by_zero_shot(backbone, task: TaskSpec, generated: Sequence, examples: Sequence[Example], n: int, *,
                        seed: int = 0, max_length: int = 128, progress: bool = False,
                        split: str = "dev", precision: str = "fp32",
                        score: Callable[[str], float] | None = None) -> list[dict]:
    """The `n` generated templates with the best zero-shot metric on `examples` (the `split` named
    in each entry: "zero_shot_dev" or "zero_shot_train", and "screening_split") under the task's
    label words (ties: the earlier in `generated`). Cheap next to fine-tuning, and the generation
    score alone prefers the shortest spans: on SST-2 with SmolLM2 its top template has nothing
    around the mask. `score` (template text -> metric on `examples`) replaces the evaluation here,
    e.g. the search's evaluator, whose zero-shot rung then reuses these results."""
    from tqdm.auto import tqdm

    verbalizer = Verbalizer.for_task(task)
    scored = []
    for rank, item in enumerate(tqdm(generated, desc=f"zero-shot screening on {split}", disable=not progress)):
        if score is not None:
            metric = score(item.template)
        else:
            metric = evaluate(backbone, task, Prompt(Template.parse(item.template), verbalizer), examples, seed=seed,
                              max_length=max_length, precision=precision).main
        scored.append((-metric, rank, {**item.to_dict(), f"zero_shot_{split}": metric,
                                            "screening_split": split}))
    return [entry for _, _, entry in sorted(scored, key=lambda t: t[:2])[:n]]


def round_robin_by_format(found: Sequence) -> list:
    """Best of each format first, then the second best of each, ...: scores of different formats are
    sums over different texts and are not comparable (LM-BFF keeps the top ones per format)."""
    by_format: dict[str, list] = {}
    for item in sorted(found, key=lambda g: -g.score):
        by_format.setdefault(item.format, []).append(item)
    ranked = []
    for rank in range(max((len(v) for v in by_format.values()), default=0)):
        ranked += [items[rank] for items in by_format.values() if rank < len(items)]
    return ranked
