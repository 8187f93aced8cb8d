"""Automatic label words (LM-BFF auto-L): candidate words and the exact top-n assignments."""
from .results import Assignment, LabelSearchResult
from .candidates import RANKINGS, binarise_at_median, class_pmi, candidate_words, nearest_neighbour_filter, neighbour_masks
from .exact import METRICS, top_assignments, score_assignments, brute_force_top_assignments
from .search import zero_shot_label_logprobs, input_independent, search_label_words
from .whole_words import whole_word_scores
from .word_lists import class_word_lists
from .synonyms import SynonymChoice, choose_synonyms, search_synonyms

__all__ = [
    'METRICS',
    'RANKINGS',
    'class_pmi',
    'whole_word_scores',
    'class_word_lists',
    'SynonymChoice',
    'choose_synonyms',
    'search_synonyms',
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
