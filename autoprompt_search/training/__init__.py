"""Training and evaluation: prompt-based and standard fine-tuning, metrics, baselines."""
from ..lazy import lazy_exports

_EXPORTS = {
    'metrics': (
        'accuracy', 'f1', 'matthews_corrcoef', 'pearson', 'spearman', 'compute_metrics', 'compute_metric',
    ),
    'config': ('TrainConfig', 'TUNING_MODES', 'EMBEDDING_MODES', 'PRECISIONS'),
    'precision': ('resolve_precision', 'precision_context', 'native_bf16'),
    'encodings': ('clear_encoding_cache',),
    'memory': ('ask_for_huge_pages', 'release_freed_memory', 'keep_freed_memory', 'stop_keeping_freed_memory',
               'FreedMemoryPolicy', 'resident_mb', 'peak_resident_mb', 'reset_peak_resident', 'available_memory',
               'memory_reserve', 'stop_keeping_if_memory_short'),
    'trainer': (
        'EvalResult', 'TrainResult', 'set_seed', 'prompt_loss', 'predictions_from_scores', 'evaluate',
        'content_free_calibration', 'fine_tune',
    ),
    'baselines': (
        'in_context_demonstrations', 'UNBOUNDED_LENGTH', 'prompt_token_count', 'InContextDemonstrations',
        'in_context_prompt', 'evaluate_in_context',
    ),
    'classifier': ('PromptClassifier', 'as_example'),
    'ensemble': ('EnsembleClassifier', 'load_prompt', 'mean_probability_scores', 'ensemble_result'),
    'tuning': (
        'adapter_targets', 'has_adapters', 'inject_adapters', 'reset_adapters', 'remove_adapters', 'prepare_tuning',
        'merged_adapters', 'count_parameters', 'adapted_projections_in', 'token_embedding_weights',
    ),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
