"""The search: candidates, their evaluator, strategies, executors, the study and its leaderboard."""
from ..lazy import lazy_exports

_EXPORTS = {
    'records': (
        'canonical_json', 'sha256_of', 'candidate_id', 'config_hash', 'package_versions', 'Evaluation',
        'RankedCandidate', 'rank_key', 'aggregate', 'describe_candidate',
    ),
    'schema': ('SCHEMA_VERSION', 'COMPLETE', 'FAIL'),
    'leaderboard': ('DEFAULT_FILENAME', 'BUSY_TIMEOUT_MS', 'Leaderboard'),
    'sidefiles': ('write_json_atomic', 'read_json', 'cached_json'),
    'configs': ('CONFIG_MIRROR', 'data_fingerprint', 'remember_config', 'stored_config'),
    'trial': (
        'EvalOutcome', 'Job', 'JobResult', 'run_job', 'is_resource_error', 'process_local',
        'clear_process_state', 'LazyEvaluator',
    ),
    'strategies': (
        'FIRST_RUNG_MODES', 'Rung', 'Strategy', 'top_candidates', 'Exhaustive', 'SuccessiveHalving',
        'describe_plan', 'total_training_steps',
    ),
    'claims': ('ClaimSettings', 'Claims'),
    'executors': (
        'Executor', 'SerialExecutor', 'JoblibExecutor', 'DaskExecutor', 'RayExecutor', 'EXECUTORS',
        'make_executor',
    ),
    'study': ('RungResult', 'SearchResult', 'unique_candidates', 'run_search', 'Study'),
    'plots': ('MAX_LABELLED_SURVIVORS', 'CandidateCurve', 'rung_curves', 'plot_leaderboard'),
    'candidates': ('DEMO_MODES', 'make_candidate', 'candidate_grid'),
    'settings': ('EvaluatorSettings',),
    'evaluator': ('PromptEvaluator', 'fine_tuned_classifier'),
    'options': ('SearchOptions', 'make_strategy', 'search_executor'),
    'sources': ('generate_templates', 'search_mappings', 'build_candidates', 'label_search_template'),
    'prompt_origin': ('check_derived_prompt',),
    'path_checks': ('check_out_folder', 'check_model_folder'),
    'pipeline': ('demonstration_section_for', 'prompt_document', 'run_pipeline'),
    'predictions': ('SplitPredictions', 'load_predictions'),
    'selection': ('SELECTIONS', 'Selection', 'select_final'),
    'ensemble': ('ENSEMBLE', 'ENSEMBLE_MEMBERS', 'ensemble_candidate', 'is_ensemble', 'build_ensemble', 'ensemble_rows',
                 'forward_members', 'race_order', 'score_ensemble'),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
