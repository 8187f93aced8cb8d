"""Export and predict: the best prompt as a file, classifying new texts with it."""
from .predict import (
    with_exported_demonstrations,
    read_inputs,
    PromptClassifier,
)

__all__ = [
    'with_exported_demonstrations',
    'read_inputs',
    'PromptClassifier',
]
