"""Demonstrations for the race's finalists: after the race its best candidates are evaluated again with
demonstrations at the final budget on every seed, ranked with the rest, resumed like any evaluation,
and exported and run by predict like any candidate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TEST_DEVICE
from synthetic import SyntheticEvaluator
from test_search import MAPPINGS, search_options, write_mapping_file, write_toy_lmbff
from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import read_document
from autoprompt_search.search import Leaderboard, SearchOptions, Study, SuccessiveHalving, candidate_id, run_pipeline
from autoprompt_search.search.finalists import demonstration_variants, evaluate_finalist_demonstrations
from autoprompt_search.search.records import rank_key, with_entries
from autoprompt_search.tasks import get_task

TASK = get_task("SST-2")
SEEDS = (13, 21)


def pool(n: int) -> list[dict]:
    return [{"template": f"*cls**sent_0*_It_was{i}*mask*.*sep+*", "label_words": dict(TASK.label_words),
             "demonstrations": "off"} for i in range(n)]


def race(path: Path, evaluator):
    study = Study(Leaderboard(path), {"search": "synthetic"}, SuccessiveHalving(2, 8, SEEDS, eta=3), evaluator)
    return study, study.run(pool(9), progress=False)


def test_the_best_finalists_get_each_mode_at_the_final_budget_on_every_seed(tmp_path):
    study, result = race(tmp_path / "lb.sqlite", SyntheticEvaluator())
    final = result.rungs[-1].rung
    outcome = evaluate_finalist_demonstrations(study, result, ("random", "filtered"), 1, TASK.num_sentences,
                                               TASK.num_classes, progress=False, say=lambda *_: None)
    best = result.ranking[0].candidate
    assert outcome.candidates == [{**best, "demonstrations": "random"}, {**best, "demonstrations": "filtered"}]
    assert outcome.n_evaluated == 2 * len(SEEDS)
    for variant in outcome.candidates:
        for seed in final.seeds:
            row = study.leaderboard.get(candidate_id(variant), seed, final.steps, study.config_hash)
            assert row is not None and row.rung == final.index
    merged = with_entries(result.ranking, outcome.ranked)
    assert len(merged) == len(result.ranking) + 2 and merged == sorted(merged, key=rank_key)


def test_the_task_prompt_in_the_final_rung_gets_its_variant_even_when_it_ranks_below_the_finalists(tmp_path):
    study = Study(Leaderboard(tmp_path / "lb.sqlite"), {"search": "synthetic"}, SuccessiveHalving(2, 8, SEEDS, eta=2),
                  SyntheticEvaluator())
    result = study.run(pool(8), progress=False)
    assert len(result.ranking) == 2  # the final rung
    best, last = result.ranking[0], result.ranking[-1]
    outcome = evaluate_finalist_demonstrations(study, result, ("random",), 1, TASK.num_sentences, TASK.num_classes,
                                               task_prompt_id=last.candidate_id, progress=False, say=lambda *_: None)
    assert outcome.candidates == [{**best.candidate, "demonstrations": "random"},
                                  {**last.candidate, "demonstrations": "random"}]
    # A task prompt that did not reach the final rung gets none.
    outcome = evaluate_finalist_demonstrations(study, result, ("random",), 1, TASK.num_sentences, TASK.num_classes,
                                               task_prompt_id="not-in-the-final-rung", progress=False,
                                               say=lambda *_: None)
    assert outcome.candidates == [{**best.candidate, "demonstrations": "random"}]


def test_a_resumed_search_reuses_the_finalists_variants(tmp_path):
    log = tmp_path / "calls.jsonl"
    study, result = race(tmp_path / "lb.sqlite", SyntheticEvaluator(call_log=str(log)))
    first = evaluate_finalist_demonstrations(study, result, ("random",), 2, TASK.num_sentences, TASK.num_classes,
                                             progress=False, say=lambda *_: None)
    calls = log.read_text().count('"call"')
    study, result = race(tmp_path / "lb.sqlite", SyntheticEvaluator(call_log=str(log)))
    again = evaluate_finalist_demonstrations(study, result, ("random",), 2, TASK.num_sentences, TASK.num_classes,
                                             progress=False, say=lambda *_: None)
    assert log.read_text().count('"call"') == calls and again.n_evaluated == 0
    assert again.n_reused == first.n_evaluated == len(first.candidates) * len(SEEDS)
    assert again.ranked == first.ranked and len(first.candidates) == len(result.ranking[:2]) >= 1


def test_without_modes_nothing_is_evaluated(tmp_path):
    study, result = race(tmp_path / "lb.sqlite", SyntheticEvaluator())
    outcome = evaluate_finalist_demonstrations(study, result, (), 2, TASK.num_sentences, TASK.num_classes,
                                               progress=False, say=lambda *_: None)
    assert outcome.candidates == [] and outcome.ranked == [] and outcome.n_evaluated == 0


def test_finalists_that_have_demonstrations_or_cannot_take_them_are_skipped_with_a_reason():
    plain, has_demos = pool(2)
    has_demos["demonstrations"] = "random"
    # *labelx_2* names a third demonstration, which a two-class task does not have.
    bad = {**plain, "template": "*cls**sent_0*_It_was*mask*.*labelx_2**sep+*"}
    variants, skipped = demonstration_variants([has_demos, bad, plain], ("random",), 1, 2)
    assert variants == [{**plain, "demonstrations": "random"}]
    assert len(skipped) == 2 and "already has demonstrations" in skipped[0] and "labelx_2" in skipped[1]


@pytest.mark.parametrize("field, value, expected", [
    ("finalist_demonstrations", ("off",), "'random', 'filtered'"),
    ("finalist_demonstrations", ("random", "random"), "distinct modes"),
    ("demo_finalists", 0, "an integer >= 1"),
])
def test_bad_finalist_options_name_the_field(field, value, expected):
    with pytest.raises(UserError) as error:
        SearchOptions.from_dict({"task": "sst2", field: value}, source="search.toml")
    assert field in str(error.value) and expected in str(error.value)


@pytest.fixture(scope="module")
def searched(tiny_causal_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("finalists")
    data = write_toy_lmbff(folder / "lmbff")
    mappings = write_mapping_file(folder / "mappings.txt", MAPPINGS[:2])
    options = search_options(tiny_causal_folder, data, folder / "out", mapping_files=(str(mappings),),
                             finalist_demonstrations=("random",), demo_finalists=1, ensemble_size=3)
    return options, run_pipeline(options, say=lambda *_: None)


def test_the_search_exports_a_finalists_variant_and_predict_runs_it(searched, tmp_path, capsys):
    options, result = searched
    out = Path(options.out)
    variants = [e for e in result.ranking if e.candidate.get("demonstrations") == "random"]
    assert len(variants) == 1 and variants[0].budget == options.max_steps and variants[0].n_seeds == len(options.seeds)
    written = [{k: c[k] for k in ("template", "label_words", "demonstrations")}
               for c in json.loads((out / "candidates.json").read_text())]
    assert variants[0].candidate in written

    assert main(["export", "--out", str(out), "--candidate", variants[0].candidate_id[:12],
                 "--output", str(tmp_path / "variant.json")]) == 0
    document = read_document(tmp_path / "variant.json").document
    assert document["demonstrations"]["mode"] == "random" and document["demonstrations"]["pool"]
    (tmp_path / "inputs.txt").write_text("A wonderful film.\nA dull film.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--prompt", str(tmp_path / "variant.json"), "--input", str(tmp_path / "inputs.txt"),
                 "--device", TEST_DEVICE]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_the_ensemble_may_take_a_finalists_variant_and_still_exports_and_predicts(searched, tmp_path, capsys):
    options, result = searched
    ensemble = next(e for e in result.ranking if "ensemble" in e.candidate)
    # Members come in race order, which starts with the final ranking that now holds the variant.
    ranked_singles = [e.candidate for e in result.ranking if "ensemble" not in e.candidate]
    assert ensemble.candidate["ensemble"][0] == ranked_singles[0]
    assert any(m.get("demonstrations") == "random" for m in ensemble.candidate["ensemble"])
    assert main(["export", "--out", options.out, "--candidate", "ensemble", "--output", str(tmp_path / "e.json")]) == 0
    members = read_document(tmp_path / "e.json").document["members"]
    assert [m["demonstrations"]["mode"] for m in members] == [m["demonstrations"] for m in ensemble.candidate["ensemble"]]
    (tmp_path / "inputs.txt").write_text("A wonderful film.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", "--prompt", str(tmp_path / "e.json"), "--input", str(tmp_path / "inputs.txt"),
                 "--device", TEST_DEVICE]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_the_flags_and_a_config_file_reach_the_options(tmp_path):
    from autoprompt_search.cli.main import build_parser
    from autoprompt_search.cli.search import search_options_from

    args = build_parser().parse_args(["search", "--task", "sst2", "--out", str(tmp_path / "a"),
                                      "--finalist-demonstrations", "random", "filtered", "--demo-finalists", "3"])
    options = search_options_from(args)[0]
    assert (options.finalist_demonstrations, options.demo_finalists) == (("random", "filtered"), 3)
    config = tmp_path / "search.toml"
    config.write_text('task = "sst2"\nfinalist_demonstrations = ["random"]\ndemo_finalists = 0\n', encoding="utf-8")
    with pytest.raises(UserError, match="search.toml, line 3.*demo_finalists"):
        search_options_from(build_parser().parse_args(["search", "--config", str(config)]))
    options = search_options_from(build_parser().parse_args(["search", "--task", "sst2", "--out", str(tmp_path / "b")]))[0]
    assert options.finalist_demonstrations == ()
