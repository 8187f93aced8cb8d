"""Automatic label words (LM-BFF auto-L): candidate words and the exact top-n assignments."""
from .label_search import (
    METRICS,
    Assignment,
    LabelSearchResult,
    binarise_at_median,
    candidate_words,
    nearest_neighbour_filter,
    neighbour_masks,
    top_assignments,
    score_assignments,
    brute_force_top_assignments,
    zero_shot_label_logprobs,
    input_independent,
    search_label_words,
)

__all__ = [
    'METRICS',
    'Assignment',
    'LabelSearchResult',
    'binarise_at_median',
    'candidate_words',
    'nearest_neighbour_filter',
    'neighbour_masks',
    'top_assignments',
    'score_assignments',
    'brute_force_top_assignments',
    'zero_shot_label_logprobs',
    'input_independent',
    'search_label_words',
]
