"""Custom tasks from a JSON task file: parsing and checking the file, registering the task, loading its data."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..textfiles import read_text
from ..tasks import (METRICS, Example, TaskSpec, generic_template, get_task, label_words_from_names,
                     register_task, task_names)
from ..prompts import Template, Verbalizer
from .folders import SPLITS
from .readers import _Row, _parse_label, _read_jsonl_records, _read_table_records

_TASK_FILE_FIELDS = {"name", "data", "text_columns", "label_column", "labels", "template", "label_words",
                     "metric", "regression_range", "label_names"}
_DATA_EXTENSIONS = (".csv", ".tsv", ".jsonl")


@dataclass(frozen=True)
class CustomTaskSource:
    """Where a custom task's splits live and which columns hold the texts and the label."""

    task: TaskSpec
    files: dict[str, Path]
    text_columns: tuple[str, ...]
    label_column: str
    task_file: Path

    def load(self, split: str) -> list[Example]:
        path = self.files.get(split)
        if path is None:
            raise UserError(f"task file {self.task_file} names no {split} file; add data.{split}")
        records = _read_jsonl_records(path) if path.suffix == ".jsonl" else _read_table_records(path)
        if not records:
            raise UserError(f"{path} holds no {split} examples (data.{split} in {self.task_file}); "
                            "expected one example per line after the header")
        return [self._to_example(split, path, line, record) for line, record in records]

    def _to_example(self, split: str, path: Path, line: int, record: dict) -> Example:
        where = f"{path}:{line}"
        texts = []
        for column in self.text_columns:
            value = record.get(column)
            if value is None:
                raise UserError(f"{where}: missing text column {column!r} (text_columns in {self.task_file})")
            texts.append(str(value))
        value = record.get(self.label_column)
        if value is None or value == "":
            if split == "test":
                return Example(texts=tuple(texts), label=None)
            raise UserError(f"{where}: missing label column {self.label_column!r} "
                            f"(label_column in {self.task_file}); {split} examples need a label")
        if isinstance(value, float) and not self.task.is_regression and value.is_integer():
            value = int(value)
        return Example(texts=tuple(texts), label=_parse_label(self.task, str(value), _Row(path, line, [])))


_CUSTOM_SOURCES: dict[str, CustomTaskSource] = {}


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _field_error(path: Path, field: str, message: str) -> UserError:
    return UserError(f"{path}: field {field!r}: {message}")


def _string_list(spec: dict, path: Path, field: str, *, min_items: int, max_items: int | None = None) -> list[str]:
    value = spec.get(field)
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                              and str(v).strip() for v in value):
        raise _field_error(path, field, f"expected a list of non-empty strings, got {value!r}")
    items = [str(v) for v in value]
    if len(items) < min_items or (max_items is not None and len(items) > max_items):
        bound = f"{min_items}" if max_items == min_items else f"{min_items} to {max_items or 'any number of'}"
        raise _field_error(path, field, f"expected {bound} items, got {len(items)}")
    if len(set(items)) != len(items):
        raise _field_error(path, field, f"items must be distinct, got {items}")
    return items


def _required_string(spec: dict, path: Path, field: str) -> str:
    value = spec.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _field_error(path, field, f"expected a non-empty string, got {value!r}")
    return value


def _data_files(spec: dict, path: Path) -> dict[str, Path]:
    data = spec.get("data")
    if not isinstance(data, dict) or "train" not in data:
        raise _field_error(path, "data", 'expected {"train": path, "dev": path, "test": path} (train required)')
    files = {}
    for split, value in data.items():
        field = f"data.{split}"
        if split not in SPLITS:
            raise _field_error(path, field, f"unknown split; expected keys {list(SPLITS)}")
        if not isinstance(value, str) or not value.strip():
            raise _field_error(path, field, f"expected a file path, got {value!r}")
        file = (path.parent / value).resolve()
        if file.suffix not in _DATA_EXTENSIONS:
            raise _field_error(path, field, f"{value!r}: expected a {', '.join(_DATA_EXTENSIONS)} file")
        if not file.is_file():
            raise _field_error(path, field, f"file {file} does not exist (relative paths are resolved "
                                            f"against {path.parent})")
        files[split] = file
    return files


def _regression_range(spec: dict, path: Path, metric: str) -> tuple[float, float] | None:
    value = spec.get("regression_range")
    if value is None:
        if metric == "pearson":
            raise _field_error(path, "regression_range", 'metric "pearson" needs the score range, e.g. [0, 5]')
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or value[0] >= value[1]):
        raise _field_error(path, "regression_range", f"expected [low, high] numbers with low < high, got {value!r}")
    return float(value[0]), float(value[1])


def _parse_task_file(path: Path) -> dict:
    text = read_text(path, "task file")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a JSON object with fields {sorted(_TASK_FILE_FIELDS)}")
    unknown = set(spec) - _TASK_FILE_FIELDS
    if unknown:
        raise UserError(f"{path}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_TASK_FILE_FIELDS)}")
    return spec


def _as_lmbff_syntax(template, text: str) -> str:
    """TaskSpec.template is LM-BFF syntax; keep the readable text only where LM-BFF syntax cannot say it."""
    try:
        return template.to_lmbff()
    except UserError:
        return text


def _label_words_or_derived(spec: dict, path: Path, name: str, labels: list[str],
                            label_names: list[str]) -> tuple[dict, str]:
    """The task file's label words, else words read from the label names ("label_names"), else the
    labels themselves as placeholders that the search replaces with searched words ("search")."""
    if spec.get("label_words") is not None:
        return _task_file_label_words(spec["label_words"], path, name, labels), "manual"
    derived = label_words_from_names(labels, label_names)
    if derived is not None:
        return derived, "label_names"
    return {label: label for label in labels}, "search"


def _task_file_label_words(value, path: Path, name: str, labels: list[str]) -> dict:
    """`label_words`: each label to a word or a list of words (optionally "_combine": "logsumexp",
    "logmeanexp" or "mean"), checked as any mapping is; a one-word-per-class mapping is kept as the file wrote it
    (stripped), so its candidates keep their ids."""
    if not isinstance(value, dict):
        raise _field_error(path, "label_words", f"expected an object mapping each label {labels} to a word or "
                                                f"a list of words, got {value!r}")
    verbalizer = Verbalizer.from_labels(labels, value, task_name=name, source=f"{path}: field 'label_words'")
    if verbalizer.is_multiword:
        return verbalizer.to_mapping()
    words = dict(zip(verbalizer.labels, verbalizer.words))
    return {key: words[key] for key in value if key in words}


def load_task_spec(path: str | Path) -> TaskSpec:
    """Read a custom task file (JSON), register the task and its data files, and return its TaskSpec.

    Fields: name, data {train, dev, test} (csv/tsv with header, or jsonl; relative to the JSON file),
    text_columns (1 or 2), label_column, labels, template (LM-BFF or readable syntax; optional: a
    generic template), label_words {label: word or [words]} (optional: read from label_names or the
    labels, else found by the search; with lists, "_combine": "logsumexp" (default), "logmeanexp" or "mean"),
    metric (optional, default "acc"), regression_range (metric "pearson"), label_names (optional).
    """
    path = Path(path).expanduser().resolve()
    spec = _parse_task_file(path)
    name = _required_string(spec, path, "name").strip()
    if _normalised(name) in {_normalised(builtin) for builtin in task_names()}:
        raise _field_error(path, "name", f"{name!r} is a built-in task ({', '.join(task_names())}); choose another")
    files = _data_files(spec, path)
    text_columns = _string_list(spec, path, "text_columns", min_items=1, max_items=2)
    label_column = _required_string(spec, path, "label_column")
    metric = spec.get("metric", "acc")
    if metric not in METRICS:
        raise _field_error(path, "metric", f"expected one of {list(METRICS)}, got {metric!r}")
    regression_range = _regression_range(spec, path, metric)
    labels = _string_list(spec, path, "labels", min_items=2, max_items=2 if regression_range else None)
    if metric == "f1" and len(labels) != 2:
        raise _field_error(path, "labels", 'metric "f1" is binary: expected 2 labels (the second is positive)')
    template_source = "manual" if spec.get("template") is not None else "generic"
    template_text = (_required_string(spec, path, "template") if template_source == "manual"
                     else generic_template(len(text_columns)))
    try:
        template = Template.parse(template_text)
        template.validate(num_sentences=len(text_columns), num_labels=len(labels))
    except UserError as error:
        raise _field_error(path, "template", str(error)) from None
    template_text = _as_lmbff_syntax(template, template_text)
    label_names = spec.get("label_names", [])
    if label_names:
        label_names = _string_list(spec, path, "label_names", min_items=len(labels), max_items=len(labels))
    label_words, label_words_source = _label_words_or_derived(spec, path, name, labels, label_names)
    task = TaskSpec(name=name, labels=tuple(labels), num_sentences=len(text_columns), metric=metric,
                    template=template_text, label_words=label_words,
                    regression_range=regression_range, label_names=tuple(label_names),
                    template_source=template_source, label_words_source=label_words_source)
    Verbalizer.for_task(task, source=f"{path}: field 'label_words'")  # distinct words, before registering
    register_task(task)
    _CUSTOM_SOURCES[task.name] = CustomTaskSource(task, files, tuple(text_columns), label_column, path)
    return task


def load_task(name_or_file: str | Path | TaskSpec) -> TaskSpec:
    """A task by name (`sst2`, `SST-2`, ...) or from a custom task JSON file: the one place a task name
    given by a user is resolved; everything below takes the `TaskSpec`."""
    if isinstance(name_or_file, TaskSpec):
        return name_or_file
    text = str(name_or_file)
    if text.endswith(".json") or Path(text).expanduser().is_file():
        return load_task_spec(text)
    return get_task(text)
