"""Prompts as data: template syntax and rendering, verbalizers, the exported prompt file."""
from .template import SPECIALS, Part, Template, load_template_lines, template_lines
from .rendering import Block, Rendered, render_blocks, word_in_context
from .truncation import SentenceLimits, truncate_to_tokens
from .verbalizer import (
    Verbalizer,
    SEARCHED_LISTS_COMBINE,
    parse_mapping_text,
    load_mapping_lines,
    mapping_entries,
    single_token_ids,
)
from .prompt import DemoFn, Prompt
from .prompt_file import (
    SCHEMA,
    SCHEMA_VERSION,
    READABLE_VERSIONS,
    REQUIRED,
    metric_summary,
    demonstration_section,
    build_document,
    build_ensemble_document,
    write_document,
    LoadedPrompt,
    read_document,
    save_fine_tuned,
)

__all__ = [
    'SentenceLimits',
    'truncate_to_tokens',
    'DemoFn',
    'Prompt',
    'SPECIALS',
    'Part',
    'Template',
    'Block',
    'Rendered',
    'word_in_context',
    'render_blocks',
    'load_template_lines',
    'template_lines',
    'mapping_entries',
    'Verbalizer',
    'SEARCHED_LISTS_COMBINE',
    'parse_mapping_text',
    'load_mapping_lines',
    'single_token_ids',
    'SCHEMA',
    'SCHEMA_VERSION',
    'READABLE_VERSIONS',
    'REQUIRED',
    'metric_summary',
    'demonstration_section',
    'build_document',
    'build_ensemble_document',
    'write_document',
    'LoadedPrompt',
    'read_document',
    'save_fine_tuned',
]
