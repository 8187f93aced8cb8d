"""The search engine end to end on a tiny random causal LM and a toy LM-BFF data folder: the files a
search leaves, successive halving on real evaluations, resume, determinism and Dask workers.

One search runs once per module (`first_run`); most tests inspect it. Everything is small (a few
toy sentences, 2-4 training steps) so the module takes seconds.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import TEST_DEVICE, toy_sentiment_examples
from autoprompt_search.cli import main
from autoprompt_search.search import Leaderboard, candidate_id
from autoprompt_search.prompts import read_document
from autoprompt_search.errors import UserError
from autoprompt_search.search import DaskExecutor, JoblibExecutor, SerialExecutor, clear_process_state
from autoprompt_search.search import SearchOptions, make_strategy, run_pipeline, search_executor

SEEDS = (13, 21)
# Extra label-word mappings, all in the tiny tokenizer's vocabulary; with the manual one: 5 candidates.
MAPPINGS = (
    {"0": "awful", "1": "wonderful"},
    {"0": "boring", "1": "brilliant"},
    {"0": "dull", "1": "lovely"},
    {"0": "horrible", "1": "superb"},
)


# ---------------------------------------------------------------------------------------------
# Helpers shared with test_cli.py


def write_toy_lmbff(root: Path, seeds: tuple[int, ...] = SEEDS, sizes: tuple[int, int, int] = (8, 8, 6)) -> Path:
    """An LM-BFF-layout folder `k-shot/SST-2/16-<seed>/{train,dev,test}.tsv` of toy sentences."""
    for seed in seeds:
        folder = root / "k-shot" / "SST-2" / f"16-{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        for split, count, data_seed in zip(("train", "dev", "test"), sizes, (seed, seed + 1, 7)):
            rows = [f"{e.texts[0]}\t{e.label}" for e in toy_sentiment_examples(count, data_seed)]
            (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def write_mapping_file(path: Path, mappings=MAPPINGS) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in mappings), encoding="utf-8")
    return path


def search_options(model: Path, data: Path, out: Path, **overrides) -> SearchOptions:
    """Small, fast search settings: no generation, no label search, no ensemble (test_ensemble.py turns it
    on), lr high enough that a few steps change the predictions of the tiny model."""
    values = dict(task="sst2", model=str(model), data_dir=str(data), generator="none", n_templates=0,
                  n_mappings=0, seeds=SEEDS, out=str(out), min_steps=2, max_steps=4, eta=2.0, lr=1e-3,
                  batch_size=4, max_length=48, device=TEST_DEVICE, progress=False, ensemble_size=0)
    values.update(overrides)
    return SearchOptions(**values)


def search_cli_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """The command line equivalent of `search_options` (without mapping files)."""
    return ["--task", "sst2", "--model", str(model), "--data-dir", str(data), "--out", str(out),
            "--generator", "none", "--n-templates", "0", "--n-mappings", "0", "--seeds", *map(str, SEEDS),
            "--min-steps", "2", "--max-steps", "4", "--eta", "2", "--lr", "1e-3", "--batch-size", "4",
            "--max-length", "48", "--device", TEST_DEVICE, "--quiet", "--ensemble-size", "0", *extra]


def metric_rows(board: Leaderboard, config_hash: str | None = None) -> list[tuple]:
    """What a search found, independent of the output folder (whose path is part of the config hash)."""
    config_hash = config_hash or board.latest_config_hash()
    return sorted((r.candidate_id, r.seed, r.budget, r.rung, r.dev_metric, r.test_metric,
                   json.dumps(r.dev_metrics, sort_keys=True)) for r in board.rows(config_hash))


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_lmbff(tmp_path_factory.mktemp("lmbff"))


@pytest.fixture(scope="module")
def mapping_file(tmp_path_factory) -> Path:
    return write_mapping_file(tmp_path_factory.mktemp("mappings") / "mappings.txt")


@pytest.fixture(scope="module")
def first_run(tiny_causal_folder, toy_data, mapping_file, tmp_path_factory):
    """One halving search over 5 candidates (manual mapping + 4 from a file), 2 seeds, eta 2."""
    out = tmp_path_factory.mktemp("first_run")
    # The dev export rule (LM-BFF's), so best.json is the top of the ranking; the paired rule: test_selection.py.
    options = search_options(tiny_causal_folder, toy_data, out, mapping_files=(str(mapping_file),), selection="dev")
    messages: list[str] = []
    result = run_pipeline(options, say=messages.append)
    config_hash = read_document(out / "best.json").document["found_by"]["config_hash"]
    return options, result, Leaderboard(out / "leaderboard.sqlite"), config_hash


# ---------------------------------------------------------------------------------------------
# Outputs


def test_pipeline_writes_every_output(first_run):
    options, result, board, config_hash = first_run
    out = Path(options.out)
    for name in ("leaderboard.sqlite", "candidates.json", "progress.png", "best.json", "search_config.json"):
        assert (out / name).is_file(), name
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    candidates = json.loads((out / "candidates.json").read_text())
    assert len(candidates) == 1 + len(MAPPINGS)
    assert {json.dumps(c["label_words"], sort_keys=True) for c in candidates} == {
        json.dumps(m, sort_keys=True) for m in ({"0": "terrible", "1": "great"}, *MAPPINGS)}
    planned = sum(r.evaluations for r in make_strategy(options).plan(len(candidates)))
    assert result.n_evaluated == planned == len(board.rows(config_hash)) and result.n_reused == 0


def test_the_database_file_alone_holds_every_row_of_a_finished_search(first_run, tmp_path):
    """A copy of leaderboard.sqlite without its write-ahead log (as a plain file copy may take) loses nothing."""
    options, result, board, config_hash = first_run
    shutil.copy(Path(options.out) / "leaderboard.sqlite", tmp_path / "leaderboard.sqlite")
    copy = Leaderboard(tmp_path / "leaderboard.sqlite")
    assert len(copy.rows(config_hash)) == result.n_evaluated > 0


def test_best_json_follows_the_schema_and_matches_the_leaderboard(first_run):
    options, result, board, config_hash = first_run
    loaded = read_document(Path(options.out) / "best.json")
    document = loaded.document
    best = result.best
    assert document["found_by"]["candidate_id"] == best.candidate_id == candidate_id(best.candidate)
    assert document["template"]["lmbff"] == best.candidate["template"]
    assert document["label_words"] == best.candidate["label_words"]
    assert loaded.verbalizer().to_mapping() == best.candidate["label_words"]
    assert document["task"]["name"] == "SST-2" and document["backbone"] == options.model
    final = [r for r in board.rows(config_hash) if r.candidate_id == best.candidate_id and r.budget == options.max_steps]
    assert sorted(int(s) for s in document["dev"]["per_seed"]) == sorted(SEEDS) == sorted(r.seed for r in final)
    assert document["dev"]["mean"] == pytest.approx(statistics.fmean(r.dev_metric for r in final))
    assert document["test"]["mean"] == pytest.approx(statistics.fmean(r.test_metric for r in final))
    assert document["found_by"]["evaluations_run"] == result.n_evaluated
    # The best candidate is the top of the final rung by mean dev metric, ties by the continuous dev score.
    final_rung = result.rungs[-1]
    assert best.candidate_id == min(final_rung.scores, key=lambda c: (-final_rung.scores[c],
                                                                      -final_rung.tie_scores[c], c))


def test_test_set_is_scored_only_at_the_full_budget(first_run):
    options, _, board, config_hash = first_run
    for row in board.rows(config_hash):
        assert (row.test_metric is not None) == (row.budget == options.max_steps), row


def test_rows_record_the_continuous_dev_score_and_the_split_sizes(first_run):
    options, _, board, config_hash = first_run
    rows = board.rows(config_hash)
    assert rows
    for row in rows:
        assert row.dev_score is not None and row.dev_score <= 0.0, row  # a mean log-probability
        assert row.extra["dev_score_kind"] == "mean_gold_logprob"
        assert row.examples("dev") == 8  # write_toy_lmbff's dev size
        assert row.examples("test") == (6 if row.budget == options.max_steps else None)
    header = board.to_table(config_hash=config_hash).splitlines()[0]
    assert "dev (8) mean" in header and "test (6) mean" in header


# ---------------------------------------------------------------------------------------------
# Successive halving on the real evaluator


def test_halving_promotes_exactly_ceil_n_over_eta_best_candidates(first_run):
    options, result, board, config_hash = first_run
    rows = board.rows(config_hash)
    assert len(result.rungs) >= 3, "the plan should have several rungs for 5 candidates at eta 2"
    for rung_result, next_rung in zip(result.rungs, result.rungs[1:]):
        rung = rung_result.rung
        at_rung = [r for r in rows if r.budget == rung.steps and r.seed in rung.seeds]
        scores = {cid: statistics.fmean(r.dev_metric for r in at_rung if r.candidate_id == cid)
                  for cid in {r.candidate_id for r in at_rung}}
        assert scores == pytest.approx(rung_result.scores)
        # Ties of the dev metric go to the higher mean continuous dev score (then the id).
        ties = {cid: statistics.fmean(r.dev_score for r in at_rung if r.candidate_id == cid) for cid in scores}
        assert ties == rung_result.tie_scores
        expected = sorted(scores, key=lambda c: (-scores[c], -ties[c], c))[:math.ceil(len(scores) / options.eta)]
        assert rung_result.survivors == expected
        promoted = {r.candidate_id for r in rows if r.budget == next_rung.rung.steps}
        assert promoted == set(expected) and next_rung.rung.n_candidates == len(expected)
    assert result.rungs[0].rung.steps == 0  # zero-shot first rung
    assert result.rungs[-1].rung.steps == options.max_steps and result.rungs[-1].rung.seeds == SEEDS


# ---------------------------------------------------------------------------------------------
# Resume and determinism


def test_second_run_with_the_same_arguments_evaluates_nothing(first_run):
    options, first, board, config_hash = first_run
    before = [(r.candidate_id, r.seed, r.budget, r.created_at) for r in board.rows(config_hash)]
    again = run_pipeline(replace(options), say=lambda *_: None)
    assert again.n_evaluated == 0 and again.n_reused == first.n_evaluated
    assert [(r.candidate_id, r.seed, r.budget, r.created_at) for r in board.rows(config_hash)] == before
    assert [r.candidate_id for r in again.ranking] == [r.candidate_id for r in first.ranking]


def test_a_fresh_run_with_the_same_seed_gives_the_same_leaderboard(first_run, tmp_path):
    options, first, board, config_hash = first_run
    clear_process_state()  # a newly loaded backbone, as in a new process
    fresh = run_pipeline(replace(options, out=str(tmp_path / "again")), say=lambda *_: None)
    assert fresh.n_evaluated == first.n_evaluated
    assert metric_rows(Leaderboard(tmp_path / "again" / "leaderboard.sqlite")) == metric_rows(board, config_hash)
    # The candidates score differently, so equal leaderboards are not equal by accident.
    assert len({r.dev_metric for r in board.rows(config_hash)}) > 1


def test_a_moved_output_folder_resumes_but_a_changed_setting_does_not_reuse(first_run, tmp_path):
    options, first, board, config_hash = first_run
    moved = tmp_path / "moved"
    shutil.copytree(options.out, moved)
    resumed = run_pipeline(replace(options, out=str(moved)), say=lambda *_: None)
    assert resumed.n_evaluated == 0 and resumed.n_reused == first.n_evaluated
    changed = run_pipeline(replace(options, out=str(moved), lr=2e-3), say=lambda *_: None)
    assert changed.n_reused == 0 and changed.n_evaluated == first.n_evaluated
    moved_board = Leaderboard(moved / "leaderboard.sqlite")
    assert len(moved_board.config_hashes()) == 2 and config_hash in moved_board.config_hashes()


def test_a_micro_batch_bound_reuses_what_the_search_stored(first_run, tmp_path):
    """The bound changes how an evaluation is computed, not which, so it is not in the configuration hash."""
    options, first, board, config_hash = first_run
    bounded_folder = tmp_path / "bounded"
    shutil.copytree(options.out, bounded_folder)
    bounded = run_pipeline(replace(options, out=str(bounded_folder), micro_batch_tokens=16), say=lambda *_: None)
    assert bounded.n_evaluated == 0 and bounded.n_reused == first.n_evaluated
    assert Leaderboard(bounded_folder / "leaderboard.sqlite").config_hashes() == [config_hash]


# ---------------------------------------------------------------------------------------------
# Candidate sources


def test_causal_generator_templates_become_candidates(tiny_causal_folder, toy_data, tmp_path):
    options = search_options(tiny_causal_folder, toy_data, tmp_path, generator="causal", n_templates=2,
                             beam_width=2, seeds=(13,), strategy="exhaustive", min_steps=1, max_steps=1)
    messages: list[str] = []
    run_pipeline(options, say=messages.append)
    generated = json.loads((tmp_path / "generated_templates.json").read_text())["value"]
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert any("causal generator" in m for m in messages)
    assert len(generated) <= 2
    assert len(candidates) == 1 + len({g["template"] for g in generated})
    read_document(tmp_path / "best.json")


def test_generated_templates_are_screened_by_zero_shot_dev(tiny_causal, tiny_causal_folder, toy_data, tmp_path):
    """Zero-shot screening keeps the n best of everything the beam returned by dev metric (ties: the
    generation order); "score" keeps the first n in generation order."""
    from autoprompt_search.data import load_split
    from autoprompt_search.auto_template import CausalGenerator
    from autoprompt_search.auto_template import round_robin_by_format
    from autoprompt_search.search import generate_templates
    from autoprompt_search.tasks import get_task
    from autoprompt_search.prompts import Template
    from autoprompt_search.prompts import Prompt
    from autoprompt_search.training import evaluate
    from autoprompt_search.prompts import Verbalizer

    task = get_task("sst2")
    options = search_options(tiny_causal_folder, toy_data, tmp_path, generator="causal", n_templates=3,
                             beam_width=4, generator_steps=4, seeds=(13,), progress=False)
    train = load_split(task, "train", data_dir=toy_data, seed=13)
    dev = load_split(task, "dev", data_dir=toy_data, seed=13)
    generator = CausalGenerator(tiny_causal.model, tiny_causal.tokenizer, beam_width=4, max_steps=4,
                                device=tiny_causal.device)
    everything = round_robin_by_format(generator.generate(task, train, label_words=task.label_words, progress=False))
    assert len(everything) > 3
    dev_metric = [evaluate(tiny_causal, task, Prompt(Template.parse(g.template), Verbalizer.for_task(task)), dev,
                           seed=13, max_length=options.max_length).main for g in everything]
    best = sorted(range(len(everything)), key=lambda i: (-dev_metric[i], i))[:3]

    screened = generate_templates(options, task, train, tiny_causal, say=lambda *_: None)
    assert [g["template"] for g in screened] == [everything[i].template for i in best]
    assert [g["zero_shot_dev"] for g in screened] == pytest.approx([dev_metric[i] for i in best])
    by_score = generate_templates(replace(options, template_screening="score"), task, train, tiny_causal,
                                  say=lambda *_: None)
    assert [g["template"] for g in by_score] == [g.template for g in everything[:3]]


def test_search_options_choose_the_beam_objective_and_add_instruction_templates(tiny_causal, tiny_causal_folder,
                                                                                  toy_data, tmp_path):
    """--template-objective reaches the causal generator and --instruction-templates adds the templates the
    backbone writes, both before the same screening."""
    from autoprompt_search.auto_template import CausalGenerator, InstructionGenerator, round_robin_by_format
    from autoprompt_search.data import load_split
    from autoprompt_search.search import generate_templates
    from autoprompt_search.tasks import get_task

    task = get_task("sst2")
    train = load_split(task, "train", data_dir=toy_data, seed=13)
    options = search_options(tiny_causal_folder, toy_data, tmp_path, generator="causal", n_templates=50,
                             beam_width=4, generator_steps=4, seeds=(13,), progress=False,
                             template_screening="score", template_objective="discriminative",
                             instruction_templates=1)
    beam = CausalGenerator(tiny_causal.model, tiny_causal.tokenizer, beam_width=4, max_steps=4,
                           device=tiny_causal.device, objective="discriminative")
    writer = InstructionGenerator.from_model(tiny_causal.model, tiny_causal.tokenizer, device=tiny_causal.device,
                                             n_prompts=1, seed=13)
    expected = round_robin_by_format([*beam.generate(task, train, label_words=task.label_words),
                                      *writer.generate(task, train, label_words=task.label_words)])
    found = generate_templates(options, task, train, tiny_causal, say=lambda *_: None)
    assert [g["template"] for g in found] == [g.template for g in expected]
    likelihood = generate_templates(replace(options, template_objective="likelihood", instruction_templates=0),
                                    task, train, tiny_causal, say=lambda *_: None)
    assert [g["template"] for g in likelihood] != [g["template"] for g in found]


def test_screening_reorders_templates_by_zero_shot_dev(monkeypatch):
    """Best dev metric first, ties in generation order, with the metric each template got."""
    from types import SimpleNamespace

    from autoprompt_search.auto_template import screening as search
    from autoprompt_search.auto_template import GeneratedTemplate
    from autoprompt_search.tasks import get_task
    from autoprompt_search.prompts import Template

    texts = ["*cls**sent_0**mask**sep+*", "*cls**sent_0*_a*mask**sep+*", "*cls**sent_0*_It's*mask*.*sep+*",
             "*cls**sent_0*_This_is*mask*.*sep+*", "*cls*_is*mask*.*+sent_0**sep+*"]
    metric = dict(zip(texts, [0.5, 0.5, 0.75, 0.625, 0.75]))
    monkeypatch.setattr(search, "evaluate", lambda backbone, task, prompt, dev, **kw:
                        SimpleNamespace(main=metric[prompt.template.to_lmbff()]))
    generated = [GeneratedTemplate(t, Template.parse(t).to_readable(), -float(i), "A") for i, t in enumerate(texts)]
    kept = search.screen_by_zero_shot(None, get_task("sst2"), generated, [], 4)
    assert [k["template"] for k in kept] == [texts[2], texts[4], texts[3], texts[0]]
    assert [k["zero_shot_dev"] for k in kept] == [0.75, 0.75, 0.625, 0.5]


def test_template_screening_option_is_validated(tiny_causal_folder, toy_data, tmp_path):
    with pytest.raises(UserError, match="template_screening"):
        search_options(tiny_causal_folder, toy_data, tmp_path, template_screening="best").validate()


def test_generator_none_skips_generation(tiny_causal_folder, toy_data, tmp_path):
    options = search_options(tiny_causal_folder, toy_data, tmp_path, n_templates=3, seeds=(13,),
                             strategy="exhaustive", min_steps=1, max_steps=1)
    run_pipeline(options, say=lambda *_: None)
    assert json.loads((tmp_path / "generated_templates.json").read_text())["value"] == []
    assert len(json.loads((tmp_path / "candidates.json").read_text())) == 1


# ---------------------------------------------------------------------------------------------
# Dask



@pytest.mark.parametrize("n_workers", [2, 1])
def test_dask_cluster_gives_the_same_leaderboard_as_the_serial_run(first_run, mapping_file, tmp_path, n_workers):
    distributed = pytest.importorskip("distributed")
    options, _, board, config_hash = first_run
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        code = main(search_cli_args(Path(options.model), Path(options.data_dir), out,
                                    "--mapping-file", str(mapping_file), "--backend", "dask",
                                    "--scheduler", cluster.scheduler_address))
        with distributed.Client(cluster.scheduler_address) as client:
            worker_state = client.run(lambda: sorted(
                __import__("autoprompt_search.search.trial", fromlist=["_"])._PROCESS_STATE))
    assert code == 0
    # The evaluator loaded its backbone in the worker process, so the evaluations ran there.
    assert any("PromptEvaluator" in key for keys in worker_state.values() for key in keys)
    assert metric_rows(Leaderboard(out / "leaderboard.sqlite")) == metric_rows(board, config_hash)
    best = {r.candidate_id for r in board.rows(config_hash) if r.budget == options.max_steps}
    assert read_document(out / "best.json").document["found_by"]["candidate_id"] in best


def test_executor_choice_follows_backend_jobs_and_scheduler(tmp_path):
    def executor(**overrides):
        return search_executor(SearchOptions(task="sst2", out=str(tmp_path), **overrides))

    assert isinstance(executor(), SerialExecutor)
    assert isinstance(executor(jobs=2), JoblibExecutor) and executor(jobs=2).n_jobs == 2
    # A scheduler address alone means the Dask cluster, not a silent local run.
    for backend in ("loky", "dask"):
        chosen = executor(scheduler="tcp://127.0.0.1:8786", backend=backend)
        assert isinstance(chosen, DaskExecutor) and chosen.scheduler_address == "tcp://127.0.0.1:8786"
    with pytest.raises(UserError, match="scheduler"):
        executor(scheduler="tcp://127.0.0.1:8786", backend="serial")


def test_generated_templates_are_taken_round_robin_over_formats():
    from autoprompt_search.auto_template import GeneratedTemplate
    from autoprompt_search.auto_template import round_robin_by_format

    found = [GeneratedTemplate("a1", "a1", -1.0, "A"), GeneratedTemplate("a2", "a2", -2.0, "A"),
             GeneratedTemplate("a3", "a3", -3.0, "A"), GeneratedTemplate("b1", "b1", -50.0, "B"),
             GeneratedTemplate("b2", "b2", -60.0, "B")]
    assert [g.template for g in round_robin_by_format(found)] == ["a1", "b1", "a2", "b2", "a3"]


# ---------------------------------------------------------------------------------------------
# The configuration and the data fingerprint live in the leaderboard; failed candidates are rows


def test_the_configuration_and_data_fingerprint_are_stored_in_the_leaderboard(first_run, tmp_path):
    from autoprompt_search.export import exporting
    from autoprompt_search.search import EvaluatorSettings

    options, _, board, config_hash = first_run
    config = board.config(config_hash)
    mirror = json.loads((Path(options.out) / "search_config.json").read_text(encoding="utf-8"))
    assert config == mirror[config_hash] and config["settings"]["k"] == options.k
    fingerprint = board.fingerprint(config_hash)
    assert set(fingerprint["splits"]) == {f"{s}/{split}" for s in SEEDS for split in ("train", "dev", "test")}
    assert fingerprint["task"]["labels"] == ["0", "1"] and len(fingerprint["sha256"]) == 64
    # export reads the settings from the database; the JSON mirror is not needed ...
    copy = tmp_path / "copy"
    shutil.copytree(options.out, copy)
    (copy / "search_config.json").unlink()
    settings = exporting._stored_settings(Leaderboard(copy / "leaderboard.sqlite"), config_hash)
    assert settings == replace(EvaluatorSettings(**config["settings"]), cache_dir=str(copy / "cache"))
    # ... but a folder from before (no configs in the database) still exports through it.
    old = tmp_path / "old"
    shutil.copytree(options.out, old)
    Leaderboard(old / "leaderboard.sqlite")._execute("DELETE FROM configs")
    assert exporting._stored_settings(Leaderboard(old / "leaderboard.sqlite"), config_hash) == replace(
        settings, cache_dir=str(old / "cache"))
    (old / "search_config.json").unlink()
    with pytest.raises(UserError, match="no configuration"):
        exporting._stored_settings(Leaderboard(old / "leaderboard.sqlite"), config_hash)


def test_crlf_and_bom_copies_of_the_k_shot_files_have_the_same_fingerprint(toy_data, tmp_path):
    from autoprompt_search.search import data_fingerprint
    from autoprompt_search.tasks import get_task

    task = get_task("sst2")
    copy = tmp_path / "crlf"
    shutil.copytree(toy_data, copy)
    for path in copy.rglob("*.tsv"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    plain = data_fingerprint(task, data_dir=str(toy_data), k=16, seeds=SEEDS)
    assert data_fingerprint(task, data_dir=str(copy), k=16, seeds=SEEDS) == plain
    dev = copy / "k-shot" / "SST-2" / f"16-{SEEDS[1]}" / "dev.tsv"
    lines = dev.read_text(encoding="utf-8-sig").splitlines()
    dev.write_text("\n".join(lines[:1] + [lines[1].replace("\t", " again\t")] + lines[2:]) + "\n", encoding="utf-8")
    changed = data_fingerprint(task, data_dir=str(copy), k=16, seeds=SEEDS)
    assert changed["sha256"] != plain["sha256"]
    assert [name for name in plain["splits"] if plain["splits"][name] != changed["splits"][name]] == [f"{SEEDS[1]}/dev"]


def test_results_are_not_reused_when_the_data_changed(tiny_causal_folder, tmp_path):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), strategy="exhaustive",
                             min_steps=1, max_steps=1)
    run_pipeline(options, say=lambda *_: None)
    train = data / "k-shot" / "SST-2" / "16-13" / "train.tsv"
    train.write_text(train.read_text(encoding="utf-8").replace("\t0\n", "\t1\n", 1), encoding="utf-8")
    with pytest.raises(UserError, match=r"data differ.*13/train"):
        run_pipeline(options, say=lambda *_: None)


def test_a_candidate_with_bad_label_words_is_a_fail_row_on_the_real_evaluator(tiny_causal_folder, toy_data, tmp_path):
    from autoprompt_search.search import Exhaustive, PromptEvaluator, Study
    from autoprompt_search.tasks import get_task

    options = search_options(tiny_causal_folder, toy_data, tmp_path, seeds=(13,))
    template = get_task("sst2").template
    good = {"template": template, "label_words": {"0": "terrible", "1": "great"}, "demonstrations": "off"}
    bad = {"template": template, "label_words": {"0": "terrible"}, "demonstrations": "off"}
    board = Leaderboard(tmp_path / "leaderboard.sqlite")
    study = Study(board, {"test": "bad label words"}, Exhaustive(0, (13,)), PromptEvaluator(options.settings()))
    result = study.run([good, bad], progress=False)
    assert [r.candidate_id for r in result.ranking] == [candidate_id(good)]
    failures = board.failures(study.config_hash)
    assert [f.candidate_id for f in failures] == [candidate_id(bad)]
    assert failures[0].error.startswith("UserError: candidate label_words") and "missing ['1']" in failures[0].error
