"""Demonstrations (LM-BFF section 5): which training examples are put in context next to a query.

This package only decides WHICH examples; the backbones/template renderer decide how they are laid out
(masked LM: the query block, then one block per class with its label word in place of the mask;
causal LM: the demonstration blocks before the query).

* lengths.py: LM-BFF's per-task prompt lengths and sentence limits with demonstrations.
* config.py: the `demonstrations` section of a search configuration.
* classes.py: the class (regression: the pole) a demonstration stands for.
* rng.py: per-query deterministic random generators.
* sampler.py: `DemonstrationSampler`, random or similarity-filtered draws of one example per class.
* embeddings.py: sentence embeddings for the filtered mode, with an on-disk cache.

The GPT-3 style in-context baseline built on these pieces lives in `training` (`in_context_demonstrations`,
`evaluate_in_context`).
"""
from .embeddings import (
    DEFAULT_ENCODER,
    DEFAULT_MAX_TOKENS,
    TextEncoder,
    example_text,
    SentenceEncoder,
    mean_pool,
    embedding_cache_key,
    embed_texts,
    embed_examples,
)
from .lengths import (
    DemoLengths,
    demo_lengths,
    LENGTH_OVERRIDE_FIELDS,
    DemoPromptSettings,
    default_demo_max_length,
    demo_prompt_settings,
    with_demonstration_lengths,
)
from .config import DEMO_MODES, DemonstrationConfig
from .classes import regression_threshold, class_index, group_by_class
from .rng import RandomSource, query_key, query_rng, inference_rng, shuffled
from .sampler import filtered_count, DemonstrationSampler, demonstration_fn

__all__ = [
    'DEFAULT_ENCODER',
    'DEFAULT_MAX_TOKENS',
    'TextEncoder',
    'example_text',
    'SentenceEncoder',
    'mean_pool',
    'embedding_cache_key',
    'embed_texts',
    'embed_examples',
    'DEMO_MODES',
    'DemoLengths',
    'demo_lengths',
    'LENGTH_OVERRIDE_FIELDS',
    'DemoPromptSettings',
    'default_demo_max_length',
    'demo_prompt_settings',
    'with_demonstration_lengths',
    'DemonstrationConfig',
    'regression_threshold',
    'class_index',
    'group_by_class',
    'query_key',
    'query_rng',
    'inference_rng',
    'filtered_count',
    'DemonstrationSampler',
    'demonstration_fn',
    'RandomSource',
    'shuffled',
]
