"""Per-task file layouts of the LM-BFF data: folder name, file type, header, text and label columns."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..tasks import TaskSpec


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
