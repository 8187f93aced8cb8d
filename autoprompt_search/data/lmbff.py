"""Data loading: the LM-BFF folder layout, LM-BFF's k-shot sampler, custom tasks and the Hugging Face hub.

Layout (see the data README): `k-shot/<TASK>/<k>-<seed>/{train,dev,test}.{csv,tsv}` and
`original/<TASK>/` with the full files the k-shot splits are sampled from.

The sampler reproduces LM-BFF's `tools/generate_k_shot_data.py`: numpy's legacy global RNG is seeded,
the original training rows are shuffled, rows are grouped by label in order of first appearance,
the first k of each group form `train` and the next k form `dev`; `test` is the original
test file (GLUE: the original dev file).
"""
from __future__ import annotations

import csv
import json
import os
import re
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import UserError
from ..tasks import METRICS, Example, TaskSpec, get_task, register_task, task_names

SPLITS = ("train", "dev", "test")
DATA_DIR_ENV = "AUTOPROMPT_DATA_DIR"
# LM-BFF's default --seed order. It matters for CoLA: its file has no header, so the script shuffles
# the loaded list itself in place and every seed's shuffle starts from the previous seed's order.
LMBFF_SEED_ORDER = (100, 13, 21, 42, 87)


# --------------------------------------------------------------------------------------------------
# data folder


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The LM-BFF data folder: the argument, else $AUTOPROMPT_DATA_DIR, else <project>/../shared/data/lmbff."""
    if data_dir is not None:
        path, source = Path(data_dir), "the data_dir argument (--data-dir)"
    elif os.environ.get(DATA_DIR_ENV):
        path, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        path, source = project_root().parent / "shared" / "data" / "lmbff", "the default location"
    path = path.expanduser()
    if not path.is_dir():
        raise UserError(
            f"LM-BFF data folder {path} (from {source}) does not exist; point at the folder that holds "
            f"k-shot/ and original/ with --data-dir PATH or the environment variable {DATA_DIR_ENV}"
        )
    return path


# --------------------------------------------------------------------------------------------------
# per-task file layouts


@dataclass(frozen=True)
class _Layout:
    folder: str                            # folder name under k-shot/ and original/ (case matters)
    extension: str                         # "csv" (label,text; no header) or "tsv" (GLUE style)
    has_header: bool
    text_columns: tuple[str | int, ...]    # header names, or indices for header-less files
    label_column: str | int                # header name, or index (-1: last field)
    dev_stem: str = "dev"                  # MNLI: dev_matched

    def file_name(self, stem: str) -> str:
        return f"{stem}.{self.extension}"


def _csv_layout(folder: str) -> _Layout:
    return _Layout(folder, "csv", False, (1,), 0)


_LAYOUTS: dict[str, _Layout] = {
    "SST-2": _Layout("SST-2", "tsv", True, ("sentence",), "label"),
    "SST-5": _csv_layout("sst-5"),
    "MR": _csv_layout("mr"),
    "CR": _csv_layout("cr"),
    "MPQA": _csv_layout("mpqa"),
    "Subj": _csv_layout("subj"),
    "TREC": _csv_layout("trec"),
    "CoLA": _Layout("CoLA", "tsv", False, (3,), 1),
    "MRPC": _Layout("MRPC", "tsv", True, ("#1 String", "#2 String"), "Quality"),
    "QQP": _Layout("QQP", "tsv", True, ("question1", "question2"), "is_duplicate"),
    "STS-B": _Layout("STS-B", "tsv", True, ("sentence1", "sentence2"), "score"),
    "MNLI": _Layout("MNLI", "tsv", True, ("sentence1", "sentence2"), -1, dev_stem="dev_matched"),
    "SNLI": _Layout("SNLI", "tsv", True, ("sentence1", "sentence2"), -1),
    "QNLI": _Layout("QNLI", "tsv", True, ("question", "sentence"), "label"),
    "RTE": _Layout("RTE", "tsv", True, ("sentence1", "sentence2"), "label"),
}


def _layout(task: TaskSpec) -> _Layout:
    layout = _LAYOUTS.get(task.name)
    if layout is None:
        raise UserError(
            f"task {task.name} has no LM-BFF data layout; built-in tasks: {', '.join(_LAYOUTS)}; "
            "custom tasks are loaded from a task file (load_task_spec)"
        )
    return layout


def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise UserError(f"unknown split {split!r}; expected one of {list(allowed)}")


# --------------------------------------------------------------------------------------------------
# reading rows


@dataclass(frozen=True)
class _Row:
    path: Path
    line: int
    fields: list[str]


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")


def _read_tsv_rows(path: Path) -> Iterator[_Row]:
    """GLUE tsv: one row per physical line, no quoting (quote characters are part of the text)."""
    with open(path, encoding="utf-8-sig", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if line.strip():
                yield _Row(path, number, line.split("\t"))


def _read_csv_rows(path: Path, delimiter: str = ",") -> Iterator[_Row]:
    """csv with standard quoting; blank lines are skipped (as pandas.read_csv does in LM-BFF)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            for fields in reader:
                if fields:
                    yield _Row(path, reader.line_num, fields)
        except csv.Error as error:
            raise UserError(f"{path}:{reader.line_num}: malformed csv: {error}") from None


def _column_indices(layout: _Layout, header: _Row | None) -> tuple[list[int], int]:
    columns = [*layout.text_columns, layout.label_column]
    if header is None:
        return list(layout.text_columns), layout.label_column  # type: ignore[return-value]
    indices = []
    for column in columns:
        if isinstance(column, int):
            indices.append(column)
        elif column in header.fields:
            indices.append(header.fields.index(column))
        else:
            raise UserError(
                f"{header.path}:{header.line}: header lacks column {column!r}; "
                f"expected columns {[c for c in columns if isinstance(c, str)]}, found {header.fields}"
            )
    return indices[:-1], indices[-1]


def _parse_label(task: TaskSpec, value: str, row: _Row) -> str | float:
    where = f"{row.path}:{row.line}"
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise UserError(f"{where}: label {value!r} is not a number; task {task.name} expects a score") from None
        low, high = task.regression_range  # type: ignore[misc]
        if not low <= score <= high:
            raise UserError(f"{where}: score {score} outside task {task.name}'s range [{low}, {high}]")
        return score
    if value not in task.labels:
        raise UserError(
            f"{where}: label {value!r} is not a label of task {task.name}; expected one of {list(task.labels)}"
        )
    return value


def _row_to_example(task: TaskSpec, row: _Row, text_indices: list[int], label_index: int,
                    expected: str) -> Example:
    needed = max(max(text_indices), label_index) + 1 if label_index >= 0 else max(text_indices) + 2
    if len(row.fields) < needed:
        raise UserError(
            f"{row.path}:{row.line}: expected {expected}, found {len(row.fields)} field(s): {row.fields[:6]}"
        )
    texts = tuple(row.fields[i] for i in text_indices)
    return Example(texts=texts, label=_parse_label(task, row.fields[label_index], row))


def _read_examples(task: TaskSpec, layout: _Layout, path: Path) -> list[Example]:
    _require_file(path, f"{task.name} data")
    rows = _read_tsv_rows(path) if layout.extension == "tsv" else _read_csv_rows(path)
    header = next(rows, None) if layout.has_header else None
    if layout.has_header and header is None:
        raise UserError(f"{path} is empty; expected a header row and {task.name} examples")
    text_indices, label_index = _column_indices(layout, header)
    if layout.extension == "csv":
        expected = "2 comma-separated fields: label,text"
    elif header is not None:
        expected = f"{len(header.fields)} tab-separated fields as in the header"
    else:
        expected = f"tab-separated GLUE fields with the text in column {text_indices[0] + 1}"
    examples = []
    for row in rows:
        if layout.extension == "csv" and len(row.fields) != 2:
            raise UserError(f"{row.path}:{row.line}: expected {expected}, found {len(row.fields)}; "
                            "quote texts that contain commas")
        examples.append(_row_to_example(task, row, text_indices, label_index, expected))
    return examples


# --------------------------------------------------------------------------------------------------
# LM-BFF originals and the k-shot sampler


def load_original(task: TaskSpec | str, split: str, data_dir: str | Path | None = None) -> list[Example]:
    """The full original file: split "train", or "test" (LM-BFF's evaluation set; GLUE: the dev file)."""
    task = get_task(task)
    _check_split(split, ("train", "test"))
    layout = _layout(task)
    stem = split if (split == "train" or layout.extension == "csv") else layout.dev_stem
    path = resolve_data_dir(data_dir) / "original" / layout.folder / layout.file_name(stem)
    return _read_examples(task, layout, path)


def _sampling_group(task: TaskSpec, example: Example) -> str:
    if task.is_regression:  # LM-BFF balances STS-B on the score cut at 2.5
        return "0" if float(example.label) < 2.5 else "1"  # type: ignore[arg-type]
    return str(example.label)


def sample_balanced(task: TaskSpec, examples: Sequence[Example], k: int,
                    seeds: Sequence[int]) -> tuple[list[Example], list[Example]]:
    """LM-BFF's sampler: shuffle (once per seed, in order), then k per label for train, the next k for dev.

    Groups appear in the order their label first occurs in the shuffled rows, as in LM-BFF's output files.
    """
    if k < 1:
        raise UserError(f"k must be a positive number of examples per class, got {k}")
    rows = list(examples)
    for seed in seeds:
        np.random.RandomState(seed).shuffle(rows)  # same stream as np.random.seed(seed); np.random.shuffle
    groups: dict[str, list[Example]] = {}
    for example in rows:
        groups.setdefault(_sampling_group(task, example), []).append(example)
    train = [example for group in groups.values() for example in group[:k]]
    dev = [example for group in groups.values() for example in group[k:2 * k]]
    return train, dev


def lmbff_shuffle_seeds(task: TaskSpec, seed: int) -> tuple[int, ...]:
    """The shuffles LM-BFF applied for this seed: a chain of the default seeds for header-less tsv files."""
    layout = _layout(task)
    chained = layout.extension == "tsv" and not layout.has_header
    if chained and seed in LMBFF_SEED_ORDER:
        return LMBFF_SEED_ORDER[: LMBFF_SEED_ORDER.index(seed) + 1]
    return (seed,)


def sample_k_shot(task: TaskSpec | str, k: int = 16, seed: int = 13,
                  data_dir: str | Path | None = None) -> dict[str, list[Example]]:
    """Sample train/dev from `original/<TASK>/` as LM-BFF did; "test" is the original test file when present."""
    task = get_task(task)
    train, dev = sample_balanced(task, load_original(task, "train", data_dir), k, lmbff_shuffle_seeds(task, seed))
    splits = {"train": train, "dev": dev}
    try:
        splits["test"] = load_original(task, "test", data_dir)
    except UserError:
        pass  # no original test file for this task: train/dev only
    return splits


# --------------------------------------------------------------------------------------------------
# the public loader


def load_split(task: TaskSpec | str, split: str, *, data_dir: str | Path | None = None,
               k: int = 16, seed: int = 13) -> list[Example]:
    """Examples of one split. Built-in tasks read `k-shot/<TASK>/<k>-<seed>/` (sampling from `original/`
    when that folder is missing); custom tasks read the files named in their task file (k, seed unused)."""
    task = get_task(task)
    _check_split(split)
    custom = _CUSTOM_SOURCES.get(task.name)
    if custom is not None:
        return custom.load(split)
    layout = _layout(task)
    root = resolve_data_dir(data_dir)
    setting_dir = root / "k-shot" / layout.folder / f"{k}-{seed}"
    if setting_dir.is_dir():
        stem = {"train": "train", "dev": layout.dev_stem, "test": layout.dev_stem.replace("dev", "test")}[split]
        path = setting_dir / layout.file_name(stem)
        if not path.is_file():
            raise UserError(f"{task.name} has no {split} file {path}" + _missing_split_hint(task, split))
        return _read_examples(task, layout, path)
    if (root / "original" / layout.folder / layout.file_name("train")).is_file():
        if split == "test":
            return load_original(task, "test", root)
        return sample_k_shot(task, k, seed, root)[split]
    available = sorted(p.name for p in (root / "k-shot" / layout.folder).glob("*-*") if p.is_dir())
    raise UserError(
        f"no k-shot split {setting_dir} and no original training file under {root / 'original' / layout.folder} "
        f"to sample it from; available settings: {available or 'none'}"
    )


def _missing_split_hint(task: TaskSpec, split: str) -> str:
    if split == "test":
        return "; in the LM-BFF data MNLI, SNLI and QQP ship train and dev only: evaluate on dev"
    return ""


# --------------------------------------------------------------------------------------------------
# custom tasks from a JSON task file


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


def _read_table_records(path: Path) -> list[tuple[int, dict]]:
    """csv (standard quoting) or tsv (no quoting, as GLUE) with a header row."""
    rows = list(_read_tsv_rows(path) if path.suffix == ".tsv" else _read_csv_rows(path))
    if not rows:
        raise UserError(f"{path} is empty; expected a header row naming the columns")
    header, body = rows[0], rows[1:]
    records = []
    for row in body:
        if len(row.fields) != len(header.fields):
            raise UserError(f"{path}:{row.line}: expected {len(header.fields)} fields as in the header "
                            f"{header.fields}, found {len(row.fields)}")
        records.append((row.line, dict(zip(header.fields, row.fields))))
    return records


def _read_jsonl_records(path: Path) -> list[tuple[int, dict]]:
    records = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: invalid JSON: {error.msg}") from None
            if not isinstance(record, dict):
                raise UserError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
            records.append((number, record))
    return records


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
    if not path.is_file():
        raise UserError(f"task file {path} does not exist")
    try:
        spec = json.loads(path.read_text(encoding="utf-8-sig"))
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


def load_task_spec(path: str | Path) -> TaskSpec:
    """Read a custom task file (JSON), register the task and its data files, and return its TaskSpec.

    Fields: name, data {train, dev, test} (csv/tsv with header, or jsonl; relative to the JSON file),
    text_columns (1 or 2), label_column, labels, template (LM-BFF or readable syntax),
    label_words {label: word}, metric (optional, default "acc"), regression_range (metric "pearson"),
    label_names (optional).
    """
    from ..prompts import Template  # local: templates is a sibling module with its own heavy imports

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
    template_text = _required_string(spec, path, "template")
    try:
        template = Template.parse(template_text)
        template.validate(num_sentences=len(text_columns))
    except UserError as error:
        raise _field_error(path, "template", str(error)) from None
    template_text = _as_lmbff_syntax(template, template_text)
    label_words = spec.get("label_words")
    if (not isinstance(label_words, dict) or set(map(str, label_words)) != set(labels)
            or not all(isinstance(w, str) and w.strip() for w in label_words.values())):
        raise _field_error(path, "label_words", f"expected an object mapping each label {labels} to a non-empty "
                                                f"word, got {label_words!r}")
    label_names = spec.get("label_names", [])
    if label_names:
        label_names = _string_list(spec, path, "label_names", min_items=len(labels), max_items=len(labels))
    task = TaskSpec(name=name, labels=tuple(labels), num_sentences=len(text_columns), metric=metric,
                    template=template_text, label_words={str(k): v.strip() for k, v in label_words.items()},
                    regression_range=regression_range, label_names=tuple(label_names))
    register_task(task)
    _CUSTOM_SOURCES[task.name] = CustomTaskSource(task, files, tuple(text_columns), label_column, path)
    return task


# --------------------------------------------------------------------------------------------------
# Hugging Face hub (needs network, or a warm datasets cache)


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


def limit_examples(examples: Sequence[Example], limit: int | None, *, seed: int = 0) -> list[Example]:
    """At most `limit` examples drawn at random (seeded), in their original order. The head of a file
    is no sample: LM-BFF's MR and CR test files, for instance, list every negative review first."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise UserError(f"test limit must be at least 1, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]
