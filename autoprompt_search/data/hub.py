"""Hugging Face hub data sets (needs network, or a warm datasets cache): sources per task and loading."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task
from .folders import DATA_DIR_ENV, _check_split
from .sampling import sample_balanced


@dataclass(frozen=True)
class _HubSource:
    path: str
    config: str | None
    text_columns: tuple[str, ...]
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "validation"           # GLUE test labels are hidden; LM-BFF evaluates on dev too
    label_map: tuple[tuple[str, str], ...] = ()   # hub class name -> TaskSpec label, where they differ


_HUB_SOURCES: dict[str, _HubSource] = {
    "SST-2": _HubSource("glue", "sst2", ("sentence",)),
    "CoLA": _HubSource("glue", "cola", ("sentence",)),
    "MRPC": _HubSource("glue", "mrpc", ("sentence1", "sentence2")),
    "QQP": _HubSource("glue", "qqp", ("question1", "question2")),
    "STS-B": _HubSource("glue", "stsb", ("sentence1", "sentence2")),
    "MNLI": _HubSource("glue", "mnli", ("premise", "hypothesis"), test_split="validation_matched"),
    "QNLI": _HubSource("glue", "qnli", ("question", "sentence")),
    "RTE": _HubSource("glue", "rte", ("sentence1", "sentence2")),
    "SNLI": _HubSource("stanfordnlp/snli", None, ("premise", "hypothesis")),
    "SST-5": _HubSource("SetFit/sst5", None, ("text",), test_split="test"),
    "MR": _HubSource("cornell-movie-review-data/rotten_tomatoes", None, ("text",), test_split="test"),
    "CR": _HubSource("SetFit/CR", None, ("text",), test_split="test"),
    "Subj": _HubSource("SetFit/subj", None, ("text",), test_split="test"),
    "TREC": _HubSource("CogComp/trec", None, ("text",), label_column="coarse_label", test_split="test",
                       label_map=(("DESC", "0"), ("ENTY", "1"), ("ABBR", "2"), ("HUM", "3"), ("LOC", "4"),
                                  ("NUM", "5"))),
}


def _hub_source(task: TaskSpec) -> _HubSource:
    source = _HUB_SOURCES.get(task.name)
    if source is None:
        raise UserError(f"task {task.name} has no Hugging Face hub source; hub tasks: {', '.join(_HUB_SOURCES)}")
    return source


def _download(source: _HubSource, split: str, cache_dir: str | Path | None):
    name = source.path + (f"/{source.config}" if source.config else "")
    try:
        import datasets
    except ImportError:
        raise UserError(f"loading {name} from the Hugging Face hub needs the `datasets` package: "
                        f"pip install 'autoprompt_search[hub]'; offline, use --data-dir PATH or ${DATA_DIR_ENV}") from None
    try:
        return datasets.load_dataset(source.path, source.config, split=split,
                                     cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as error:  # offline, hub outage, missing split: all mean "no data from the hub"
        raise UserError(
            f"could not download data set {name} (split {split}) from the Hugging Face hub: "
            f"{type(error).__name__}: {str(error)[:200]}. Without network, use the local LM-BFF copy: "
            f"--data-dir PATH or ${DATA_DIR_ENV} (a folder with k-shot/ and original/)"
        ) from None


def _hub_label(task: TaskSpec, source: _HubSource, value, class_names: list[str] | None) -> str | float | None:
    if task.is_regression:
        return float(value)
    if value is None or value == -1:  # unlabelled rows (GLUE test, SNLI without gold label)
        return None
    if class_names is not None:
        name = class_names[int(value)]
        mapped = dict(source.label_map).get(name)
        if mapped is not None:
            return mapped
        if name in task.labels:
            return name
    label = str(int(value)) if isinstance(value, (int, np.integer)) else str(value)
    if label not in task.labels:
        raise UserError(f"hub data set {source.path}: label {value!r} is not a label of task {task.name}; "
                        f"expected one of {list(task.labels)}")
    return label


def hub_examples(task: TaskSpec, source: _HubSource, dataset) -> list[Example]:
    feature = dataset.features.get(source.label_column) if hasattr(dataset, "features") else None
    class_names = list(feature.names) if hasattr(feature, "names") else None
    examples = []
    for record in dataset:
        label = _hub_label(task, source, record[source.label_column], class_names)
        if label is not None:
            examples.append(Example(texts=tuple(str(record[c]) for c in source.text_columns), label=label))
    return examples


def load_hub_split(task: TaskSpec | str, split: str, *, k: int = 16, seed: int = 13,
                   cache_dir: str | Path | None = None) -> list[Example]:
    """Download the task from the hub: train/dev are k per class sampled from the hub's train split with
    LM-BFF's sampler; test is the full evaluation split. The hub's versions differ from LM-BFF's originals
    (e.g. glue/sst2 has 67k phrases, LM-BFF's SST-2 6.9k sentences), so the samples differ from the
    published k-shot files."""
    task = get_task(task)
    _check_split(split)
    source = _hub_source(task)
    if split == "test":
        return hub_examples(task, source, _download(source, source.test_split, cache_dir))
    train = hub_examples(task, source, _download(source, source.train_split, cache_dir))
    sampled_train, sampled_dev = sample_balanced(task, train, k, (seed,))
    return sampled_train if split == "train" else sampled_dev
