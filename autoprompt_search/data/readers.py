"""Reading csv/tsv/jsonl rows and turning them into Examples, with file:line errors."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..textfiles import read_text
from ..tasks import Example, TaskSpec
from .layout import _Layout


@dataclass(frozen=True)
class _Row:
    path: Path
    line: int
    fields: list[str]


def _read_tsv_rows(path: Path, what: str = "data file") -> Iterator[_Row]:
    """GLUE tsv: one row per physical line, no quoting (quote characters are part of the text)."""
    for number, line in enumerate(read_text(path, what).split("\n"), start=1):
        if line.strip():
            yield _Row(path, number, line.split("\t"))


def _read_csv_rows(path: Path, delimiter: str = ",", what: str = "data file") -> Iterator[_Row]:
    """csv with standard quoting; blank lines are skipped (as pandas.read_csv does in LM-BFF)."""
    reader = csv.reader(io.StringIO(read_text(path, what), newline=""), delimiter=delimiter)
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
    what = f"{task.name} data file"
    rows = _read_tsv_rows(path, what=what) if layout.extension == "tsv" else _read_csv_rows(path, what=what)
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
        # MNLI/SNLI rows carry a varying number of annotator labels before the last (gold) field.
        if header is not None and layout.label_column != -1 and len(row.fields) != len(header.fields):
            raise UserError(f"{row.path}:{row.line}: expected {expected} {header.fields[:6]}, found "
                            f"{len(row.fields)} field(s)")
        examples.append(_row_to_example(task, row, text_indices, label_index, expected))
    if not examples:
        found = "only a header row" if header is not None else "no rows"
        raise UserError(f"{path} holds no {task.name} examples ({found}); expected one example per line")
    return examples


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
    for number, line in enumerate(read_text(path, "data file").split("\n"), start=1):
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
