"""Automatic templates (LM-BFF auto-T): beam search with a T5 or a causal generator.

One beam search serves the whole training set, so it finds the template text that fits the task as a
whole. t5.py (`T5Generator`) and causal.py (`CausalGenerator`) hold the generators with their fast and
reference search states; base.py their shared base, beam.py the shared beam search, formats.py the
template formats and how generated spans become a valid template, objectives.py the causal generator's
likelihood and discriminative objectives, instructions.py templates the backbone writes when asked in
words (APE-style), files.py saving and loading the generated templates, screening.py which of them
become candidates.
"""
from .formats import (
    SINGLE_SENTENCE_FORMATS,
    PAIR_FORMATS,
    FORMAT_DESCRIPTIONS,
    token_texts,
    default_forbidden_token_ids,
)
from .beam import LABEL_MARK, END_MARK
from .files import GeneratedTemplate, save_templates, load_generated_templates
from .t5 import OBJECTIVES, T5Generator
from .causal import CausalGenerator
from .objectives import CAUSAL_OBJECTIVES
from .instructions import INSTRUCTION_FORMAT, CausalSampler, InstructionGenerator, instruction_prompt, parse_phrase
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
    'CAUSAL_OBJECTIVES',
    'INSTRUCTION_FORMAT',
    'CausalSampler',
    'InstructionGenerator',
    'instruction_prompt',
    'parse_phrase',
]
