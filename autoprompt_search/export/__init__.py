"""Export and predict: the best prompt of a search as a file, and reading the texts to classify with it
(the classifier itself is `training.PromptClassifier`).
"""
from ..lazy import lazy_exports

_EXPORTS = {
    'exporting': ('export_best', 'open_leaderboard'),
    'predict': ('read_inputs',),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
