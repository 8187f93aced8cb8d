"""Prompt-based against standard fine-tuning on a user's own task (`search-templates compare`): the same
k-shot splits, seeds and training budget for the task's (or an exported) prompt, its zero-shot score, and a
classification head on the same backbone; resumable, with a table and a plot."""
from ..lazy import lazy_exports

_EXPORTS = {
    'options': ('METHODS', 'METHOD_NAMES', 'DEFAULT_SEEDS', 'ComparisonOptions'),
    'store': ('ResultStore', 'unit_key'),
    'methods': ('prompt_unit', 'standard_unit', 'ensemble_row'),
    'report': ('MethodSummary', 'ComparisonSummary', 'summarise', 'cell', 'markdown', 'plot'),
    'runner': ('planned_units', 'run_comparison'),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
