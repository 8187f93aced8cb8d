"""Candidates: a candidate is a plain JSON dict ``{"template": <LM-BFF syntax>, "label_words":
{label: word}, "demonstrations": "off"|"random"|"filtered"}``; its id is the hash of that dict, so
the same prompt found by two sources is evaluated once.
"""
from __future__ import annotations

import itertools
import json
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..prompts import Template, Verbalizer

DEMO_MODES = ("off", "random", "filtered")
FINALIST_MODES = ("random", "filtered")  # demonstration modes a finalist can be given after the race


def make_candidate(template: Template | str, verbalizer: Verbalizer | Mapping[str, str],
                   demonstrations: str = "off") -> dict[str, Any]:
    if isinstance(template, str):
        template = Template.parse(template)
    words = verbalizer.to_mapping() if isinstance(verbalizer, Verbalizer) else dict(verbalizer)
    if demonstrations not in DEMO_MODES:
        raise UserError(f"demonstrations: expected one of {DEMO_MODES}, got {demonstrations!r}")
    return {"template": template.to_lmbff(), "label_words": words, "demonstrations": demonstrations}


def candidate_grid(templates: Sequence[Template], verbalizers: Sequence[Verbalizer],
                   demo_modes: Sequence[str] = ("off",)) -> list[dict[str, Any]]:
    """Every template x label-word mapping x demonstration mode, duplicates removed, order kept."""
    seen, grid = set(), []
    for template, verbalizer, mode in itertools.product(templates, verbalizers, demo_modes):
        candidate = make_candidate(template, verbalizer, mode)
        key = json.dumps(candidate, sort_keys=True)
        if key not in seen:
            seen.add(key)
            grid.append(candidate)
    return grid
