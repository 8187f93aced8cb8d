"""Training and evaluation: prompt-based and standard fine-tuning, metrics, baselines."""
from .metrics import (
    accuracy,
    f1,
    matthews_corrcoef,
    pearson,
    spearman,
    compute_metrics,
    compute_metric,
)
from .fine_tune import (
    TrainConfig,
    EvalResult,
    TrainResult,
    set_seed,
    Prompt,
    prompt_loss,
    predictions_from_scores,
    evaluate,
    content_free_calibration,
    fine_tune,
)

__all__ = [
    'accuracy',
    'f1',
    'matthews_corrcoef',
    'pearson',
    'spearman',
    'compute_metrics',
    'compute_metric',
    'TrainConfig',
    'EvalResult',
    'TrainResult',
    'set_seed',
    'Prompt',
    'prompt_loss',
    'predictions_from_scores',
    'evaluate',
    'content_free_calibration',
    'fine_tune',
]
