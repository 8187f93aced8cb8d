"""Loading LM-BFF splits: the original files, sampling k-shot splits from them, and the public `load_split`.

Layout (see the data README): `k-shot/<TASK>/<k>-<seed>/{train,dev,test}.{csv,tsv}` and
`original/<TASK>/` with the full files the k-shot splits are sampled from.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task
from .custom import _CUSTOM_SOURCES
from .folders import _check_split, resolve_data_dir
from .layout import _layout
from .readers import _read_examples
from .sampling import _sampling_group, lmbff_shuffle_seeds, sample_balanced


def load_original(task: TaskSpec | str, split: str, data_dir: str | Path | None = None) -> list[Example]:
    """The full original file: split "train", or "test" (LM-BFF's evaluation set; GLUE: the dev file)."""
    task = get_task(task)
    _check_split(split, ("train", "test"))
    layout = _layout(task)
    stem = split if (split == "train" or layout.extension == "csv") else layout.dev_stem
    path = resolve_data_dir(data_dir) / "original" / layout.folder / layout.file_name(stem)
    return _read_examples(task, layout, path)


def sample_k_shot(task: TaskSpec | str, k: int = 16, seed: int = 13,
                  data_dir: str | Path | None = None) -> dict[str, list[Example]]:
    """Sample train/dev from `original/<TASK>/` as LM-BFF did; "test" is the original test file when present."""
    task = get_task(task)
    original = load_original(task, "train", data_dir)
    train, dev = sample_balanced(task, original, k, lmbff_shuffle_seeds(task, seed))
    short = sorted({_sampling_group(task, e) for e in train} - {_sampling_group(task, e) for e in dev})
    if not dev or short:
        path = resolve_data_dir(data_dir) / "original" / _layout(task).folder
        raise UserError(f"--k {k}: the original {task.name} training data in {path} is too small to sample "
                        f"{k} train and {k} dev examples per label (no dev examples left for label(s) "
                        f"{short or 'all'}); choose a smaller --k")
    splits = {"train": train, "dev": dev}
    try:
        splits["test"] = load_original(task, "test", data_dir)
    except UserError:
        pass  # no original test file for this task: train/dev only
    return splits


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
        f"no k-shot split {setting_dir} (--k {k}, seed {seed}) and no original training file under "
        f"{root / 'original' / layout.folder} to sample it from; available settings: {available or 'none'}"
    )


def _missing_split_hint(task: TaskSpec, split: str) -> str:
    if split == "test":
        return "; in the LM-BFF data MNLI, SNLI and QQP ship train and dev only: evaluate on dev"
    return ""
