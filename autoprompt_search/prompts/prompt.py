"""`Prompt`: what turns an example into a scored prompt: a template, a verbalizer, and optionally a
demonstration provider with the lengths LM-BFF renders demonstrations with."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

from ..tasks import Example
from .template import Template
from .truncation import SentenceLimits
from .verbalizer import Verbalizer

# A demonstration provider: given the query, its index in the training set (None outside training)
# and a random generator, it returns (example, class index) pairs to put in the prompt.
DemoFn = Callable[[Example, "int | None", random.Random], Sequence[tuple[Example, int]]]




@dataclass
class Prompt:
    template: Template
    verbalizer: Verbalizer
    demonstrations: DemoFn | None = None
    inference_samples: int = 1  # demonstration sets averaged per query at evaluation
    # Set by demonstrations.with_demonstration_lengths: LM-BFF's longer prompts and per-sentence limits.
    max_length: int | None = None  # overrides the run's max_length for this prompt
    sentence_limits: SentenceLimits | None = None


