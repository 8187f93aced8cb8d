"""Export and predict: the best prompt of a search as a file, and reading the texts to classify with it
(the classifier itself is `training.PromptClassifier`)."""
from .exporting import export_best, open_leaderboard
from .predict import read_inputs

__all__ = ["export_best", "open_leaderboard", "read_inputs"]
