"""`search-templates compare`: prompt-based against standard fine-tuning on a task, on the tiny models.
Every unit is stored as it finishes and reused by the next run; settings or data that changed are not mixed
with stored results; bad input is one line before any model loads; an exported ensemble is compared as one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TEST_DEVICE
from test_task_without_prompt import write_task

from autoprompt_search.cli.main import main as cli_main
from autoprompt_search.comparison import ComparisonOptions, planned_units, run_comparison
from autoprompt_search.comparison import runner as comparison_runner
from autoprompt_search.errors import UserError
from autoprompt_search.search import clear_process_state
from autoprompt_search.training import ensemble_result

LABEL_WORDS = {"negative": "awful", "positive": "wonderful"}


@pytest.fixture
def task_file(tmp_path) -> Path:
    return write_task(tmp_path / "data", "toy-compare", labels=("negative", "positive"),
                      template="*cls**sent_0*_It_was*mask*.*sep+*", label_words=LABEL_WORDS)


def options_for(task_file, model, out, **overrides) -> ComparisonOptions:
    values = dict(task=str(task_file), model=str(model), seeds=(13, 21), steps=2, lr=1e-3, batch_size=4, max_length=48,
                  precision="fp32", device=TEST_DEVICE, out=str(out), progress=False)
    values.update(overrides)
    return ComparisonOptions(**values)


def stored_units(out: Path) -> dict:
    return json.loads((out / "comparison.json").read_text(encoding="utf-8"))["units"]


def test_every_method_on_every_seed_is_stored_summarised_and_plotted(task_file, tiny_mlm_folder, tmp_path):
    clear_process_state()
    out = tmp_path / "cmp"
    summary = run_comparison(options_for(task_file, tiny_mlm_folder, out), say=lambda _: None)
    units = stored_units(out)
    # Zero-shot without demonstrations does not depend on the seed: it runs once.
    assert sorted(units) == ["prompt/13", "prompt/21", "standard/13", "standard/21", "zero-shot/13"]
    assert not summary.missing
    for method, seeds in (("zero-shot", [13]), ("prompt", [13, 21]), ("standard", [13, 21])):
        assert sorted(summary.method(method).tests) == seeds
        for seed in seeds:
            row = units[f"{method}/{seed}"]
            assert summary.method(method).tests[seed] == row["test"]
            assert row["examples"]["test"] == len(row["test_labels"]) == 6
            # the stored metric is the one the stored scores give
            assert ensemble_result(_task(task_file), [row["test_scores"]], row["test_labels"]).main == pytest.approx(
                row["test"], abs=1e-6)
    assert units["zero-shot/13"]["best_step"] == 0 and units["zero-shot/13"]["steps"] == 0
    difference, ahead, shared = summary.prompt_against_standard()
    assert shared == 2 and 0 <= ahead <= 2
    prompt, standard = summary.method("prompt"), summary.method("standard")
    assert difference == pytest.approx(prompt.mean - standard.mean)
    text = (out / "comparison.md").read_text(encoding="utf-8")
    assert "standard fine-tuning (classification head)" in text and "Partial" not in text
    assert summary.answer() in text
    assert (out / "comparison.png").stat().st_size > 0


def _task(task_file):
    from autoprompt_search.data import load_task

    return load_task(str(task_file))


def test_a_second_run_reuses_every_unit_and_an_interrupted_one_resumes(task_file, tiny_mlm_folder, tmp_path,
                                                                        monkeypatch):
    clear_process_state()
    out = tmp_path / "cmp"
    calls = []
    real_standard = comparison_runner.standard_unit

    def interrupted_standard(options, task, seed):
        calls.append(seed)
        if seed == 21:
            raise KeyboardInterrupt
        return real_standard(options, task, seed)

    monkeypatch.setattr(comparison_runner, "standard_unit", interrupted_standard)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("prompt", "standard")), say=lambda _: None)
    assert sorted(stored_units(out)) == ["prompt/13", "prompt/21", "standard/13"]
    first = stored_units(out)

    ran = []
    monkeypatch.setattr(comparison_runner, "standard_unit",
                        lambda options, task, seed: ran.append(("standard", seed)) or real_standard(options, task, seed))
    monkeypatch.setattr(comparison_runner, "prompt_unit", lambda *args: ran.append(("prompt",)) or pytest.fail("rerun"))
    summary = run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("prompt", "standard")),
                             say=lambda _: None)
    assert ran == [("standard", 21)]
    units = stored_units(out)
    assert {key: units[key]["test"] for key in first} == {key: first[key]["test"] for key in first}
    assert not summary.missing and sorted(summary.method("standard").tests) == [13, 21]


def test_a_failed_unit_is_recorded_reported_as_missing_and_run_again(task_file, tiny_mlm_folder, tmp_path,
                                                                       monkeypatch):
    clear_process_state()
    out = tmp_path / "cmp"

    def broken(options, task, seed):
        raise RuntimeError("no memory left")

    monkeypatch.setattr(comparison_runner, "standard_unit", broken)
    said = []
    summary = run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("prompt", "standard"), seeds=(13,)),
                             say=said.append)
    assert stored_units(out)["standard/13"]["failed"] == "RuntimeError: no memory left"
    assert summary.missing == ["standard/13"] and "prompt/13" in stored_units(out)
    assert any("standard/13 failed" in line for line in said)
    text = (out / "comparison.md").read_text(encoding="utf-8")
    assert "(partial)" in text and "not run yet: standard/13" in text
    monkeypatch.undo()
    summary = run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("prompt", "standard"), seeds=(13,)),
                             say=lambda _: None)
    assert not summary.missing and "failed" not in stored_units(out)["standard/13"]


def test_results_made_with_other_settings_are_never_mixed_in(task_file, tiny_mlm_folder, tmp_path):
    clear_process_state()
    out = tmp_path / "cmp"
    run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("zero-shot",), seeds=(13,)), say=lambda _: None)
    before = (out / "comparison.json").read_text(encoding="utf-8")
    with pytest.raises(UserError, match=r"comparison\.json: holds results made with other settings \(lr, standard_lr, standard_steps, steps\)"):
        run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("zero-shot",), seeds=(13,), steps=3,
                                   lr=2e-3), say=lambda _: None)
    assert (out / "comparison.json").read_text(encoding="utf-8") == before


def test_a_seed_whose_examples_changed_is_run_again(task_file, tiny_mlm_folder, tmp_path, monkeypatch):
    clear_process_state()
    out = tmp_path / "cmp"
    options = options_for(task_file, tiny_mlm_folder, out, methods=("zero-shot",), seeds=(13,))
    run_comparison(options, say=lambda _: None)
    test_csv = task_file.parent / "test.csv"
    lines = test_csv.read_text(encoding="utf-8").splitlines()
    test_csv.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # one test example fewer
    run_comparison(options, say=lambda _: None)
    assert stored_units(out)["zero-shot/13"]["examples"]["test"] == len(lines) - 2


@pytest.mark.parametrize("overrides,message", [
    ({"methods": ("prompt", "head")}, r"--methods: got \['prompt', 'head'\]"),
    ({"seeds": (13, 13)}, "--seeds"),
    ({"steps": 0}, "--steps: got 0"),
    ({"test_limit": 0}, "--test-limit: got 0"),
    ({"device": "tpu"}, "--device"),
    ({"prompt": "no-such-best.json"}, "no-such-best.json"),
    ({"batch_size": 0}, "--batch-size: got 0"),
])
def test_bad_options_are_one_line_before_any_model_loads(task_file, tiny_mlm_folder, tmp_path, monkeypatch,
                                                         overrides, message):
    import autoprompt_search.models as models

    monkeypatch.setattr(models, "load_backbone", lambda *a, **k: pytest.fail("a model loaded"))
    monkeypatch.setattr(models, "load_classifier", lambda *a, **k: pytest.fail("a model loaded"))
    with pytest.raises(UserError, match=message):
        options_for(task_file, tiny_mlm_folder, tmp_path / "cmp", **overrides).validate()


def test_a_task_without_words_of_its_own_needs_an_exported_prompt(tmp_path, tiny_mlm_folder):
    placeholder = write_task(tmp_path / "data", "toy-numbers", labels=("0", "1"))
    with pytest.raises(UserError, match="pass --prompt"):
        options_for(placeholder, tiny_mlm_folder, tmp_path / "cmp").validate()


def _exported(path: Path, task_file: Path, members: list[dict]) -> Path:
    from autoprompt_search.data import load_task
    from autoprompt_search.prompts import build_document, build_ensemble_document

    task = load_task(str(task_file))
    documents = [build_document(task, "tiny", {**m, "demonstrations": "off"}, dev={}, found_by={"candidate_id": str(i)})
                 for i, m in enumerate(members)]
    document = documents[0] if len(documents) == 1 else build_ensemble_document(documents, dev={})
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_an_exported_ensemble_is_trained_member_by_member_and_scored_as_one(task_file, tiny_mlm_folder, tmp_path):
    clear_process_state()
    members = [{"template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": LABEL_WORDS},
               {"template": "*cls*_A*mask*_one:*+sent_0**sep+*", "label_words": {"negative": "dull", "positive": "lovely"}}]
    prompt = _exported(tmp_path / "ensemble.json", task_file, members)
    out = tmp_path / "cmp"
    options = options_for(task_file, tiny_mlm_folder, out, prompt=str(prompt), methods=("prompt",), seeds=(13,))
    assert planned_units(options, options.prompt_candidates(_task(task_file))) == [("prompt", 13, 0), ("prompt", 13, 1)]
    summary = run_comparison(options, say=lambda _: None)
    units = stored_units(out)
    assert sorted(units) == ["prompt[0]/13", "prompt[1]/13"]
    first, second = units["prompt[0]/13"], units["prompt[1]/13"]
    expected = ensemble_result(_task(task_file), [first["test_scores"], second["test_scores"]], first["test_labels"])
    assert summary.method("prompt").tests[13] == pytest.approx(expected.main)
    assert "an ensemble of 2" in (out / "comparison.md").read_text(encoding="utf-8")


def test_the_command_prints_the_table_and_a_bad_flag_is_one_line(task_file, tiny_mlm_folder, tmp_path, capsys):
    clear_process_state()
    out = tmp_path / "cmp"
    code = cli_main(["compare", "--task", str(task_file), "--model", str(tiny_mlm_folder), "--methods", "zero-shot",
                     "--seeds", "13", "--steps", "2", "--precision", "fp32", "--device", TEST_DEVICE, "--out", str(out),
                     "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "zero-shot prompt (no training)" in printed and f"Command: `search-templates compare --task {task_file}" in printed
    code = cli_main(["compare", "--task", str(task_file), "--methods", "head"])
    assert code == 2


def test_a_prompt_with_demonstrations_is_scored_zero_shot_on_every_seed_with_its_own_sampler_settings(
        task_file, tiny_mlm_folder, tmp_path):
    from autoprompt_search.comparison.methods import evaluator_settings
    from autoprompt_search.data import load_split, load_task
    from autoprompt_search.prompts import build_document, demonstration_section

    task = load_task(str(task_file))
    pool = load_split(task, "train", seed=13)
    section = demonstration_section("random", {"filter_rate": 0.3, "inference_samples": 2, "encoder": "minilm-l6",
                                               "lengths": {"max_length": 200}}, pool, 13)
    document = build_document(task, "tiny", {"template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": LABEL_WORDS,
                                             "demonstrations": "random"}, dev={}, demonstrations=section)
    prompt = tmp_path / "best.json"
    prompt.write_text(json.dumps(document), encoding="utf-8")
    options = options_for(task_file, tiny_mlm_folder, tmp_path / "cmp", prompt=str(prompt), seeds=(13, 21))
    options.validate()
    candidates = options.prompt_candidates(task)
    assert candidates[0]["demonstrations"] == "random"
    assert [unit for unit in planned_units(options, candidates) if unit[0] == "zero-shot"] == [
        ("zero-shot", 13, None), ("zero-shot", 21, None)]
    settings = evaluator_settings(options, task, test_at_steps=2)
    assert (settings.demo_filter_rate, settings.demo_inference_samples, settings.demo_lengths) == (
        0.3, 2, {"max_length": 200})


def test_standard_fine_tuning_can_have_its_own_steps_and_learning_rate(task_file, tiny_mlm_folder, tmp_path,
                                                                       monkeypatch):
    import autoprompt_search.training as training

    clear_process_state()
    seen = []
    real = training.fine_tune

    def spy(backbone, task, prompt, *args, **kwargs):
        seen.append((prompt is None, args[2].steps, args[2].lr))
        return real(backbone, task, prompt, *args, **kwargs)

    monkeypatch.setattr(training, "fine_tune", spy)
    out = tmp_path / "cmp"
    run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("standard",), seeds=(13,), standard_steps=3,
                               standard_lr=0.01), say=lambda _: None)
    assert seen == [(True, 3, 0.01)]
    assert stored_units(out)["standard/13"]["steps"] == 3
    assert "(standard fine-tuning: 3 steps at 0.01)" in (out / "comparison.md").read_text(encoding="utf-8")


def test_summarising_what_is_stored_runs_nothing_and_lists_the_rest_as_missing(task_file, tiny_mlm_folder, tmp_path,
                                                                                monkeypatch):
    clear_process_state()
    out = tmp_path / "cmp"
    run_comparison(options_for(task_file, tiny_mlm_folder, out, methods=("zero-shot",), seeds=(13,)), say=lambda _: None)
    monkeypatch.setattr(comparison_runner, "prompt_unit", lambda *args: pytest.fail("a unit ran"))
    monkeypatch.setattr(comparison_runner, "standard_unit", lambda *args: pytest.fail("a unit ran"))
    summary = run_comparison(options_for(task_file, tiny_mlm_folder, out, seeds=(13,)), say=lambda _: None,
                             run_units=False)
    assert summary.missing == ["prompt/13", "standard/13"]
    assert sorted(summary.method("zero-shot").tests) == [13]
    assert "(partial)" in (out / "comparison.md").read_text(encoding="utf-8")
    empty = run_comparison(options_for(task_file, tiny_mlm_folder, tmp_path / "never-run", seeds=(13,)),
                           say=lambda _: None, run_units=False)
    assert empty.missing == ["zero-shot/13", "prompt/13", "standard/13"]
    assert "(partial)" in (tmp_path / "never-run" / "comparison.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("prompt,standard,verdict", [
    ({13: 0.8, 21: 0.9}, {13: 0.7, 21: 0.6}, "beats standard fine-tuning by 20.0 points of acc"),
    ({13: 0.5, 21: 0.6}, {13: 0.7, 21: 0.6}, "trails standard fine-tuning by 10.0 points of acc"),
    ({13: 0.7}, {13: 0.7}, "ties with standard fine-tuning at 0.0 points of acc"),
])
def test_the_verdict_says_which_way_and_by_how_much(prompt, standard, verdict):
    from autoprompt_search.comparison import ComparisonSummary, MethodSummary

    summary = ComparisonSummary("toy", "acc", [MethodSummary("prompt", prompt), MethodSummary("standard", standard)],
                                [], {})
    assert verdict in summary.answer()
