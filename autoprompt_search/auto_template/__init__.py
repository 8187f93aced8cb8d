"""Automatic templates (LM-BFF auto-T): beam search with a T5 or a causal generator."""
from .generators import (
    SINGLE_SENTENCE_FORMATS,
    PAIR_FORMATS,
    FORMAT_DESCRIPTIONS,
    OBJECTIVES,
    LABEL_MARK,
    END_MARK,
    GeneratedTemplate,
    save_templates,
    load_generated_templates,
    token_texts,
    default_forbidden_token_ids,
    T5Generator,
    CausalGenerator,
)
from .screening import round_robin_by_format, screen_by_zero_shot

__all__ = [
    'round_robin_by_format',
    'screen_by_zero_shot',
    'SINGLE_SENTENCE_FORMATS',
    'PAIR_FORMATS',
    'FORMAT_DESCRIPTIONS',
    'OBJECTIVES',
    'LABEL_MARK',
    'END_MARK',
    'GeneratedTemplate',
    'save_templates',
    'load_generated_templates',
    'token_texts',
    'default_forbidden_token_ids',
    'T5Generator',
    'CausalGenerator',
]
