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
    prompt_loss,
    predictions_from_scores,
    evaluate,
    content_free_calibration,
    fine_tune,
)
from .baselines import (
    in_context_demonstrations,
    UNBOUNDED_LENGTH,
    prompt_token_count,
    InContextDemonstrations,
    in_context_prompt,
    evaluate_in_context,
)
from .classifier import PromptClassifier, as_example

__all__ = [
    'PromptClassifier',
    'as_example',
    'in_context_demonstrations',
    'UNBOUNDED_LENGTH',
    'prompt_token_count',
    'InContextDemonstrations',
    'in_context_prompt',
    'evaluate_in_context',
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
    'prompt_loss',
    'predictions_from_scores',
    'evaluate',
    'content_free_calibration',
    'fine_tune',
]
