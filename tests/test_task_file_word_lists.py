"""Several label words per class in a custom task file: parsing (one-line errors naming the file and
field), class scores that combine the words' scores, the search's manual candidate, export -> predict,
render; one-word files unchanged. Also `generate` and `labels` on a task file without template or
label words start where the search starts and say so."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import TEST_DEVICE
from autoprompt_search.cli.main import main
from autoprompt_search.data import load_split, load_task
from autoprompt_search.errors import UserError
from autoprompt_search.models import load_backbone
from autoprompt_search.prompts import Template, Verbalizer, read_document
from autoprompt_search.search import build_candidates, candidate_id, run_pipeline
from autoprompt_search.tasks import GENERIC_TEMPLATES, registry
from autoprompt_search.training import PromptClassifier
from test_task_without_prompt import tiny_search, write_task

LISTS = {"0": ["awful", "dull"], "1": ["wonderful", "lovely"]}
TEMPLATE = "*cls**sent_0*_It_was*mask*.*sep+*"
ONE_WORD_ID = "6aa8affd8363cfb4b0ea33866092fb62d00f4346f2510e994f04a2513175ece1"  # the id of TEMPLATE with {"0": "bad", "1": "good"} before task files took word lists


def _one_line_error(path: Path, message: str, load=load_task):
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: field 'label_words': .*{re.escape(message)}") as error:
        load(path)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------
# Parsing


def test_a_task_file_may_give_a_class_several_words(tmp_path):
    task = load_task(write_task(tmp_path / "a", "lists-a", template=TEMPLATE, label_words=LISTS))
    assert task.label_words == {**LISTS, "_combine": "logsumexp"} and task.has_manual_prompt
    assert task.first_label_words == {"0": "awful", "1": "wonderful"}
    verbalizer = Verbalizer.for_task(task)
    assert verbalizer.word_lists == (("awful", "dull"), ("wonderful", "lovely")) and verbalizer.combine == "logsumexp"

    mean = load_task(write_task(tmp_path / "b", "lists-b", label_words={**LISTS, "1": " lovely ", "_combine": "mean"}))
    assert mean.label_words == {"0": ["awful", "dull"], "1": "lovely", "_combine": "mean"}
    assert Verbalizer.for_task(mean).combine == "mean"


def test_one_word_files_keep_their_mapping_and_candidate_ids(tiny_causal_folder, tmp_path):
    """The mapping and the candidate id are those the task file gave before word lists existed; a
    one-word list is the same as the word."""
    plain = load_task(write_task(tmp_path / "a", "one-word-a", template=TEMPLATE, label_words={"1": " good", "0": "bad"}))
    listed = load_task(write_task(tmp_path / "b", "one-word-b", template=TEMPLATE,
                                  label_words={"1": ["good"], "0": "bad", "_combine": "mean"}))
    assert list(plain.label_words.items()) == list(listed.label_words.items()) == [("1", "good"), ("0", "bad")]
    for task_file in (tmp_path / "a" / "task.json", tmp_path / "b" / "task.json"):
        options = tiny_search(tiny_causal_folder, task_file, tmp_path / "out", generator="none", n_templates=0,
                              n_mappings=0)
        candidates, sources = build_candidates(options, load_task(task_file), backbone=None, say=lambda *_: None)
        assert candidates == [{"template": TEMPLATE, "label_words": {"0": "bad", "1": "good"}, "demonstrations": "off"}]
        assert candidate_id(candidates[0]) == ONE_WORD_ID
        assert sources.origin(candidates[0])["label_words_source"] == "manual"


@pytest.mark.parametrize("words, message", [
    ({"0": [], "1": "good"}, "label '0' has an empty list of words"),
    ({"0": ["bad", 3], "1": "good"}, "label '0': each word in its list must be a non-empty string, got 3"),
    ({"0": ["bad", " "], "1": "good"}, "label '0': each word in its list must be a non-empty string"),
    ({"0": ["bad", "good"], "1": ["good", "great"]}, "labels '0' and '1' both use 'good'"),
    ({"0": "bad", "1": "good", "2": ["meh"]}, "missing [], unknown ['2']"),
    ({"0": ["bad"]}, "missing ['1'], unknown []"),
    ({"0": 7, "1": "good"}, "the word for label '0' must be a non-empty string"),
    ({"0": ["bad", "awful"], "1": "good", "_combine": "max"}, "'_combine': expected 'logsumexp', 'logmeanexp' or 'mean'"),
    (["bad", "good"], "expected an object mapping each label ['0', '1'] to a word or a list of words"),
])
def test_bad_word_lists_fail_in_one_line_naming_the_file_and_field(tmp_path, words, message):
    _one_line_error(write_task(tmp_path, "bad-lists", label_words=words), message)


# ---------------------------------------------------------------------------------------------
# Scores


@pytest.mark.parametrize("kind", ["causal", "mlm"])
def test_a_two_word_class_scores_the_logsumexp_of_its_words(kind, tiny_causal, tiny_mlm, tmp_path):
    backbone = {"causal": tiny_causal, "mlm": tiny_mlm}[kind]
    task = load_task(write_task(tmp_path, f"scores-{kind}", template=TEMPLATE, label_words=LISTS))
    examples = load_split(task, "dev")[:4]

    def scores(verbalizer):
        encoded = [backbone.encode(e, Template.parse(task.template), verbalizer) for e in examples]
        with torch.no_grad():
            return backbone.class_scores(backbone.collate(encoded), verbalizer).double().cpu()

    singles = [scores(Verbalizer.from_mapping(task, {"0": a, "1": b})) for a, b in zip(*LISTS.values())]
    combined = scores(Verbalizer.for_task(task))
    for c in (0, 1):
        expected = torch.stack([s[:, c] for s in singles], 1).logsumexp(1)
        torch.testing.assert_close(combined[:, c], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(singles[0], singles[1])  # the words do score differently


# ---------------------------------------------------------------------------------------------
# Search, export, predict, render


def test_search_export_predict_and_render_with_word_lists(tiny_causal_folder, tmp_path, capsys, monkeypatch):
    """The task's lists are the manual candidate (on the generic template here; templates are generated
    around each class's first word); the exported prompt predicts what the lists give in memory, also in
    a process where the task file was never read."""
    task_file = write_task(tmp_path / "task", "lists-search", label_words=LISTS)
    out = tmp_path / "out"
    run_pipeline(tiny_search(tiny_causal_folder, task_file, out, n_mappings=0, n_templates=1), say=lambda *_: None)
    task = load_task(task_file)
    mapping = {**LISTS, "_combine": "logsumexp"}
    candidates = json.loads((out / "candidates.json").read_text())
    assert {"template": GENERIC_TEMPLATES[1], "label_words": mapping, "demonstrations": "off",
            "template_source": ["generic"], "label_words_source": "manual", "task_prompt": True} in candidates
    assert all(c["label_words"] == mapping for c in candidates) and len(candidates) == 2
    generated = json.loads((out / "generated_templates.json").read_text())
    assert generated["key"]["label_words"] == mapping and generated["value"]

    assert main(["export", "--out", str(out)]) == 0
    document = read_document(out / "best.json").document
    assert document["label_words"] == mapping
    texts = ["A wonderful film.", "Dull and tedious."]
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE, max_length=48)
    expected = PromptClassifier.build(backbone, task, document["template"]["lmbff"], task.label_words,
                                      max_length=48).predict(texts)
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
    monkeypatch.delitem(registry._REGISTRY, registry._normalise(task.name))  # as in a fresh process
    capsys.readouterr()
    assert main(["predict", "--prompt", str(out / "best.json"), "--input", str(inputs), "--format", "jsonl",
                 "--device", TEST_DEVICE]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in predicted] == [label for label, _ in expected]
    for got, (_, want) in zip(predicted, expected):
        assert got["probabilities"] == pytest.approx(want, abs=1e-5)

    assert main(["render", "--task", str(task_file), "--model", str(tiny_causal_folder), "-n", "1",
                 "--device", TEST_DEVICE]) == 0
    shown = capsys.readouterr().out
    assert f"words     {json.dumps(mapping)}" in shown
    assert all(f"+ {word!r:>14} ->" in shown for words in LISTS.values() for word in words)


def test_template_generation_places_each_class_first_word(tiny_causal, tmp_path):
    from autoprompt_search.auto_template import CausalGenerator

    task = load_task(write_task(tmp_path, "lists-generate", label_words=LISTS))
    train = load_split(task, "train")
    generator = CausalGenerator(tiny_causal.model, tiny_causal.tokenizer, beam_width=4, device=TEST_DEVICE, max_steps=3)
    found = generator.generate(task, train, progress=False)
    assert found and found == generator.generate(task, train, label_words={"0": "awful", "1": "wonderful"},
                                                 progress=False)


# ---------------------------------------------------------------------------------------------
# generate and labels on a task file without a prompt


def _command(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_labels_on_a_task_file_without_a_template_uses_the_generic_one(tiny_causal_folder, tmp_path, capsys):
    task_file = write_task(tmp_path, "no-prompt-labels")
    output = tmp_path / "labels.json"
    shown = _command(["labels", "--task", str(task_file), "--model", str(tiny_causal_folder), "--label-k", "4",
                      "-n", "2", "--device", TEST_DEVICE, "--output", str(output)], capsys)
    origin = "the generic template (task no-prompt-labels gives none)"
    assert f"template: {GENERIC_TEMPLATES[1]} ({origin})" in shown
    saved = json.loads(output.read_text())
    assert saved["template"] == GENERIC_TEMPLATES[1] and saved["template_source"] == origin
    assert len(saved["mappings"]) == 2
    given = _command(["labels", "--task", str(task_file), "--model", str(tiny_causal_folder), "--label-k", "4",
                      "-n", "1", "--device", TEST_DEVICE, "--template", TEMPLATE], capsys)
    assert f"template: {TEMPLATE} (--template)" in given


def test_labels_probe_a_label_first_task_where_the_search_does(tiny_causal_folder, tmp_path, capsys):
    """A causal model sees no input at a label placed first, so the words are ranked on the generic template,
    as the search ranks them; a template given explicitly is used as it is (here: refused, as it cannot rank)."""
    label_first = "*cls**mask*:*+sent_0**sep+*"
    task_file = write_task(tmp_path, "label-first", template=label_first, label_words={"0": "awful", "1": "lovely"})
    argv = ["labels", "--task", str(task_file), "--model", str(tiny_causal_folder), "--label-k", "4", "-n", "1",
            "--device", TEST_DEVICE]
    shown = _command(argv, capsys)
    assert (f"template: {GENERIC_TEMPLATES[1]} (the generic template: the task's ({label_first}) puts the label "
            "before the input)") in shown
    assert main([*argv, "--template", label_first]) == 2
    assert "the label position gets the same log-probabilities for every training example" in capsys.readouterr().err


@pytest.mark.parametrize("name, labels, fields, origin", [
    ("gen-names", ("awful", "wonderful"), {}, "label words: from the label names {'awful': 'awful', 'wonderful': 'wonderful'}"),
    ("gen-search", ("0", "1"), {}, "label words: searched with the generic template (task gen-search gives none)"),
    ("gen-lists", ("0", "1"), {"label_words": LISTS}, "label words: the task's"),
])
def test_generate_on_a_task_file_without_a_prompt_starts_where_the_search_does(
        tiny_causal_folder, tmp_path, capsys, monkeypatch, name, labels, fields, origin):
    import autoprompt_search.search as search_package

    used = []
    real = search_package.generate_templates

    def spy(options, task, train, backbone, say=print):
        used.append(task.first_label_words)
        return real(options, task, train, backbone, say)

    monkeypatch.setattr(search_package, "generate_templates", spy)
    task_file = write_task(tmp_path, name, labels=labels, **fields)
    shown = _command(["generate", "--task", str(task_file), "--model", str(tiny_causal_folder), "--generator",
                      "causal", "--beam-width", "4", "-n", "2", "--label-k", "4", "--device", TEST_DEVICE], capsys)
    assert origin in shown and re.search(r"^\s+1\s", shown, re.MULTILINE)
    (words,) = used
    if labels == ("0", "1") and not fields:
        assert words != {"0": "0", "1": "1"} and str(words) in shown  # the searched words, not placeholders
    elif fields:
        assert words == {"0": "awful", "1": "wonderful"} and "(each class's first word)" in shown
    else:
        assert words == {"awful": "awful", "wonderful": "wonderful"}


def test_editing_a_task_files_words_regenerates_its_templates(tiny_causal_folder, tmp_path):
    """Templates are generated around the label words, so the cached ones belong to the words they were
    made with: a task file whose words change between runs gets new ones (a built-in task's cannot change)."""
    out = tmp_path / "out"
    for words in ({"0": "awful", "1": "wonderful"}, {"0": "dull", "1": "lovely"}):
        task_file = write_task(tmp_path / "task", "edited-words", template=TEMPLATE, label_words=words)
        run_pipeline(tiny_search(tiny_causal_folder, task_file, out, n_mappings=0, n_templates=1),
                     say=lambda *_: None)
        generated = json.loads((out / "generated_templates.json").read_text())
        assert generated["key"]["label_words"] == words
