"""Data: the LM-BFF folder layout, the k-shot sampler, custom task files, hub data sets."""
from .folders import SPLITS, DATA_DIR_ENV, project_root, resolve_data_dir
from .sampling import LMBFF_SEED_ORDER, sample_balanced, lmbff_shuffle_seeds, limit_examples
from .lmbff import load_original, sample_k_shot, load_split
from .custom import CustomTaskSource, load_task, load_task_spec
from .hub import hub_examples, load_hub_split

__all__ = [
    'SPLITS',
    'DATA_DIR_ENV',
    'LMBFF_SEED_ORDER',
    'project_root',
    'resolve_data_dir',
    'load_original',
    'sample_balanced',
    'lmbff_shuffle_seeds',
    'sample_k_shot',
    'load_split',
    'CustomTaskSource',
    'load_task_spec',
    'load_task',
    'hub_examples',
    'load_hub_split',
    'limit_examples',
]
