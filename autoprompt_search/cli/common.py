"""Argument groups and input readers shared by the subcommands: task, model, templates, label words."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name (sst2, SST-5, mr, trec, rte...) or a custom task JSON file")
    parser.add_argument("--data-dir", default=None,
                        help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--k", type=int, default=16, help="examples per class in the k-shot splits (default 16)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="backbone: smollm2-135m (offline default), a local folder or a hub id such as roberta-large")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--max-length", type=int, default=128, help="maximum prompt length in tokens")


def check_model_arguments(args) -> None:
    """--device and --model checked before a model loads (one-line errors instead of torch's or
    transformers' tracebacks)."""
    from ..search import SearchOptions

    device = getattr(args, "device", None)
    problem = SearchOptions.device_problem(device)
    if problem:
        raise UserError(f"--device: got {device!r}, expected {problem}")
    if getattr(args, "model", None):
        SearchOptions.check_model(args.model, "--model")


def resolve_task(name: str):
    from ..tasks import get_task

    if name.endswith(".json") or Path(name).is_file():
        from ..data import load_task_spec

        return load_task_spec(name)
    return get_task(name)


def read_templates(args, task) -> list:
    from ..prompts import Template, load_template_lines

    templates = [Template.parse(t) for t in (args.template or [])]
    if getattr(args, "template_file", None):
        templates += load_template_lines(args.template_file)
    return templates or [Template.parse(task.template)]


def read_verbalizer(args, task):
    from ..prompts import Verbalizer

    if getattr(args, "mapping", None):
        return Verbalizer.from_mapping(task, args.mapping, source="--mapping")
    return Verbalizer.for_task(task)
