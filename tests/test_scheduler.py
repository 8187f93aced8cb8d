import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoprompt_search.errors import UserError
from autoprompt_search.search import Leaderboard, candidate_id
from autoprompt_search.search import (
    DaskExecutor,
    EvalOutcome,
    Exhaustive,
    JoblibExecutor,
    RayExecutor,
    SerialExecutor,
    Study,
    SuccessiveHalving,
    describe_plan,
    make_executor,
    run_search,
    top_candidates,
)
from synthetic import SyntheticEvaluator
from autoprompt_search.search.strategies import total_training_steps

SEEDS = (13, 21, 42, 87, 100)


def candidates(n: int) -> list[dict]:
    return [{"template": f"*cls**sent_0*_t{i}*mask*.*sep+*", "label_words": {"0": "no", "1": "yes"}}
            for i in range(n)]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def row_summary(board: Leaderboard, cfg: str) -> list[tuple]:
    return sorted((r.candidate_id, r.seed, r.budget, r.rung, r.dev_metric, r.test_metric)
                  for r in board.rows(cfg))


class CountingEvaluator:
    """Fake evaluation: hidden quality per candidate plus a per-seed offset; counts its calls."""

    def __init__(self, qualities: dict[str, float], seed_noise: float = 0.01):
        self.qualities = qualities
        self.seed_noise = seed_noise
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, candidate, seed, steps):
        cid = candidate_id(candidate)
        self.calls.append((cid, seed, steps))
        dev = self.qualities[cid] + self.seed_noise * ((seed * 7919) % 11 - 5) / 5 + steps / 1e4
        return EvalOutcome(dev, dev / 2, {"dev_metrics": {"acc": dev}})


# ---------------------------------------------------------------------------------------------
# Plans


@given(n=st.integers(1, 200), eta=st.sampled_from([2, 3, 4, 2.5]), min_steps=st.integers(1, 50),
       factor=st.integers(1, 100), min_seeds=st.integers(1, 5),
       first=st.sampled_from(["zero_shot", "short"]))
@settings(max_examples=200, deadline=None)
def test_halving_plan_shape(n, eta, min_steps, factor, min_seeds, first):
    max_steps = min_steps * factor
    strategy = SuccessiveHalving(min_steps, max_steps, SEEDS, eta=eta, min_seeds=min_seeds, first_rung=first)
    rungs = strategy.plan(n)
    assert rungs[0].n_candidates == n
    if len(rungs) > 1:
        assert rungs[0].steps == (0 if first == "zero_shot" else min_steps)
        assert rungs[0].seeds == SEEDS[:min_seeds]
    for before, after in zip(rungs, rungs[1:]):
        assert after.n_candidates == math.ceil(before.n_candidates / eta)
        assert after.steps > before.steps
        assert set(before.seeds) <= set(after.seeds)
    assert rungs[-1].steps == max_steps and rungs[-1].seeds == SEEDS
    assert all(r.n_candidates > 1 for r in rungs[:-1])
    assert [r.index for r in rungs] == list(range(len(rungs)))


def test_halving_plan_multiplies_steps_by_eta_and_caps():
    strategy = SuccessiveHalving(min_steps=10, max_steps=500, seeds=SEEDS, eta=3)
    assert strategy.step_schedule() == [0, 10, 30, 90, 270, 500]
    rungs = strategy.plan(81)
    assert [r.n_candidates for r in rungs] == [81, 27, 9, 3, 1]
    assert [r.steps for r in rungs] == [0, 10, 30, 90, 500]
    assert [len(r.seeds) for r in rungs] == [1, 3, 5, 5, 5]
    assert "total: " in describe_plan(rungs)
    assert sum(r.evaluations for r in rungs) == 81 + 27 * 3 + 9 * 5 + 3 * 5 + 5


def test_exhaustive_plan_is_one_full_rung():
    rungs = Exhaustive(steps=100, seeds=SEEDS).plan(7)
    assert [(r.steps, r.seeds, r.n_candidates) for r in rungs] == [(100, SEEDS, 7)]


@pytest.mark.parametrize("kwargs, field", [
    ({"eta": 1}, "eta"),
    ({"min_seeds": 6}, "min_seeds"),
    ({"first_rung": "long"}, "first_rung"),
    ({"min_steps": 50, "max_steps": 10}, "min_steps"),
    ({"seeds": ()}, "seeds"),
    ({"seeds": (1, 1)}, "seeds"),
])
def test_bad_halving_settings_are_user_errors(kwargs, field):
    settings_ = {"min_steps": 10, "max_steps": 100, "seeds": SEEDS, **kwargs}
    with pytest.raises(UserError, match=field):
        SuccessiveHalving(**settings_)


def test_top_candidates_breaks_ties_by_id_and_puts_nan_last():
    scores = {"b": 0.5, "a": 0.5, "c": math.nan, "d": 0.9}
    assert top_candidates(scores, 3) == ["d", "a", "b"]
    assert top_candidates(scores, 4)[-1] == "c"


# ---------------------------------------------------------------------------------------------
# The search loop


def test_halving_promotes_exactly_the_top_fraction(tmp_path):
    pool = candidates(20)
    qualities = {candidate_id(c): 0.3 + 0.6 * ((i * 37) % 20) / 20 for i, c in enumerate(pool)}
    evaluate = CountingEvaluator(qualities)
    strategy = SuccessiveHalving(min_steps=5, max_steps=45, seeds=SEEDS, eta=3)
    board = Leaderboard(tmp_path)
    result = run_search(pool, strategy, evaluate, board, "cfg", progress=False)

    assert [r.rung for r in result.rungs] == strategy.plan(20)
    active = set(qualities)
    for rung_result in result.rungs:
        rung = rung_result.rung
        assert set(rung_result.scores) == active
        for cid in active:  # the score is the mean dev metric over the rung's seeds
            rows = [board.get(cid, seed, rung.steps, "cfg").dev_metric for seed in rung.seeds]
            assert rung_result.scores[cid] == pytest.approx(sum(rows) / len(rows))
        if rung_result is not result.rungs[-1]:
            keep = math.ceil(len(active) / 3)
            ordered = sorted(active, key=lambda c: (-rung_result.scores[c], c))
            assert rung_result.survivors == ordered[:keep]
            active = set(ordered[:keep])
    # Every planned evaluation ran exactly once.
    assert len(evaluate.calls) == len(set(evaluate.calls)) == sum(r.evaluations for r in result.plan)
    best = max(qualities, key=qualities.get)
    assert result.best.candidate_id == best and result.best.n_seeds == len(SEEDS)
    assert result.best.mean_dev == pytest.approx(
        sum(board.get(best, s, 45, "cfg").dev_metric for s in SEEDS) / len(SEEDS))


def test_ties_are_promoted_by_candidate_id(tmp_path):
    pool = candidates(9)
    evaluate = CountingEvaluator({candidate_id(c): 0.5 for c in pool}, seed_noise=0.0)
    result = run_search(pool, SuccessiveHalving(1, 9, (1, 2), eta=3), evaluate,
                        Leaderboard(tmp_path), "cfg", progress=False)
    ids = sorted(candidate_id(c) for c in pool)
    assert result.rungs[0].survivors == ids[:3]
    assert result.rungs[1].survivors == ids[:1]


def test_exhaustive_evaluates_everything_at_full_budget(tmp_path):
    pool = candidates(4)
    evaluate = CountingEvaluator({candidate_id(c): i / 10 for i, c in enumerate(pool)})
    board = Leaderboard(tmp_path)
    result = run_search(pool, Exhaustive(steps=20, seeds=(1, 2, 3)), evaluate, board, "cfg", progress=False)
    assert sorted(evaluate.calls) == sorted((candidate_id(c), s, 20) for c in pool for s in (1, 2, 3))
    assert [r.candidate for r in result.ranking] == pool[::-1]
    assert [r.candidate_id for r in result.ranking] == [r.candidate_id for r in board.ranking()]


def test_second_run_reuses_every_stored_result(tmp_path):
    pool = candidates(10)
    evaluate = CountingEvaluator({candidate_id(c): i / 10 for i, c in enumerate(pool)})
    board = Leaderboard(tmp_path)
    strategy = SuccessiveHalving(2, 18, SEEDS, eta=3, first_rung="short")
    first = run_search(pool, strategy, evaluate, board, "cfg", progress=False)
    n_calls = len(evaluate.calls)
    second = run_search(pool, strategy, evaluate, board, "cfg", progress=False)
    assert len(evaluate.calls) == n_calls
    assert (second.n_evaluated, second.n_reused) == (0, first.n_evaluated)
    assert second.ranking == first.ranking
    third = run_search(pool, strategy, evaluate, board, "other-config", progress=False)
    assert third.n_evaluated == first.n_evaluated  # a new configuration is never served old results


def test_duplicate_candidates_are_evaluated_once(tmp_path):
    pool = candidates(3)
    evaluate = CountingEvaluator({candidate_id(c): 0.5 for c in pool})
    shuffled = [pool[0], dict(reversed(list(pool[0].items())))] + pool[1:]
    run_search(shuffled, Exhaustive(steps=0, seeds=(1,)), evaluate, Leaderboard(tmp_path), "c", progress=False)
    assert len(evaluate.calls) == 3


def test_no_candidates_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no candidates"):
        run_search([], Exhaustive(0, (1,)), CountingEvaluator({}), Leaderboard(tmp_path), "c", progress=False)


def test_study_hashes_its_configuration(tmp_path):
    pool = candidates(3)
    evaluator = SyntheticEvaluator()
    study = Study(Leaderboard(tmp_path), {"task": "SST-2", "k": 16}, Exhaustive(0, (1,)), evaluator)
    result = study.run(pool, progress=False)
    assert {r.config_hash for r in study.leaderboard.rows()} == {study.config_hash}
    same = Study(Leaderboard(tmp_path), {"k": 16, "task": "SST-2"}, Exhaustive(0, (1,)), evaluator)
    assert same.run(pool, progress=False).n_reused == result.n_evaluated


# ---------------------------------------------------------------------------------------------
# Executors


def test_executor_names():
    assert isinstance(make_executor("serial"), SerialExecutor)
    assert make_executor("joblib", n_jobs=3) == JoblibExecutor(n_jobs=3)
    with pytest.raises(UserError, match="executor"):
        make_executor("spark")


def test_joblib_workers_match_serial_and_load_state_once_per_process(tmp_path):
    pool = candidates(12)
    strategy = SuccessiveHalving(1, 9, (1, 2, 3), eta=3)
    board = Leaderboard(tmp_path)
    run_search(pool, strategy, SyntheticEvaluator(), board, "serial", progress=False)
    log = tmp_path / "calls.jsonl"
    run_search(pool, strategy, SyntheticEvaluator(call_log=str(log)), board, "joblib",
               JoblibExecutor(n_jobs=2), progress=False)
    assert row_summary(board, "serial") == row_summary(board, "joblib")
    events = read_log(log)
    loads = Counter(e["pid"] for e in events if e["event"] == "load")
    calls = [e for e in events if e["event"] == "call"]
    assert os.getpid() not in loads and set(loads.values()) == {1}
    assert len(calls) == len(board.rows("joblib")) and len(loads) <= 2


def test_dask_cluster_gives_the_same_leaderboard_as_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    pool = candidates(9)
    strategy = SuccessiveHalving(1, 9, (1, 2), eta=3)
    board = Leaderboard(tmp_path)
    run_search(pool, strategy, SyntheticEvaluator(), board, "serial", progress=False)
    log = tmp_path / "calls.jsonl"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        executor = DaskExecutor(scheduler_address=cluster.scheduler_address)
        run_search(pool, strategy, SyntheticEvaluator(call_log=str(log)), board, "dask", executor,
                   progress=False)
    assert row_summary(board, "serial") == row_summary(board, "dask")
    worker_pids = {e["pid"] for e in read_log(log) if e["event"] == "call"}
    assert worker_pids and os.getpid() not in worker_pids


def test_dask_without_scheduler_is_a_user_error(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(UserError, match="scheduler address"):
        run_search(candidates(2), Exhaustive(0, (1,)), SyntheticEvaluator(), Leaderboard(tmp_path),
                   "c", DaskExecutor(), progress=False)


def test_ray_missing_is_a_user_error(tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ray is installed")
    with pytest.raises(UserError, match="ray"):
        run_search(candidates(2), Exhaustive(0, (1,)), SyntheticEvaluator(), Leaderboard(tmp_path),
                   "c", RayExecutor(), progress=False)


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL

SEARCH_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, TESTS_DIR)
    from autoprompt_search.search import Leaderboard, SuccessiveHalving, run_search
    from synthetic import SyntheticEvaluator

    board_path, log_path, sleep_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pool = [{"template": f"t{i}", "label_words": {"0": "no", "1": "yes"}} for i in range(9)]
    strategy = SuccessiveHalving(min_steps=2, max_steps=6, seeds=(1, 2, 3), eta=3)
    evaluator = SyntheticEvaluator(sleep_s=sleep_s, call_log=log_path)
    run_search(pool, strategy, evaluator, Leaderboard(board_path), "cfg", progress=False)
""").replace("TESTS_DIR", repr(str(Path(__file__).resolve().parent)))


def run_script(script: Path, board: Path, log: Path, sleep_s: float, tag: str) -> subprocess.Popen:
    env = {**os.environ, "AUTOPROMPT_RUN_TAG": tag}
    return subprocess.Popen([sys.executable, str(script), str(board), str(log), str(sleep_s)], env=env)


def test_killed_search_resumes_without_redoing_or_losing_work(tmp_path):
    script, board_path, log = tmp_path / "search.py", tmp_path / "lb.sqlite", tmp_path / "calls.jsonl"
    script.write_text(SEARCH_SCRIPT)
    planned = SuccessiveHalving(2, 6, (1, 2, 3), eta=3).plan(9)
    n_planned = sum(r.evaluations for r in planned)

    first = run_script(script, board_path, log, 0.15, "first")
    deadline = time.monotonic() + 120
    # A call is logged when an evaluation returns, before the study stores it; evaluations run one after
    # another, so the 7th logged call means the 6th is stored (waiting for 6 raced with that store).
    while sum(e["event"] == "call" for e in read_log(log)) < 7:
        assert first.poll() is None, "search finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL

    stored_after_kill = {(r.candidate_id, r.seed, r.budget) for r in Leaderboard(board_path).rows()}
    assert 6 <= len(stored_after_kill) < n_planned

    second = run_script(script, board_path, log, 0.0, "second")
    assert second.wait(timeout=120) == 0

    calls = [e for e in read_log(log) if e["event"] == "call"]
    second_calls = [(e["candidate_id"], e["seed"], e["steps"]) for e in calls if e["tag"] == "second"]
    assert not stored_after_kill & set(second_calls), "a finished evaluation was redone"
    assert len(second_calls) == len(set(second_calls))
    final_rows = Leaderboard(board_path).rows()
    final_keys = {(r.candidate_id, r.seed, r.budget) for r in final_rows}
    assert len(final_rows) == n_planned == len(final_keys)
    assert stored_after_kill <= final_keys and final_keys == stored_after_kill | set(second_calls)

    # The interrupted-and-resumed search stored exactly what an uninterrupted one stores.
    fresh = Leaderboard(tmp_path / "fresh.sqlite")
    run_search([{"template": f"t{i}", "label_words": {"0": "no", "1": "yes"}} for i in range(9)],
               SuccessiveHalving(2, 6, (1, 2, 3), eta=3), SyntheticEvaluator(), fresh, "cfg", progress=False)
    assert row_summary(fresh, "cfg") == row_summary(Leaderboard(board_path), "cfg")


def test_failing_evaluation_propagates_and_keeps_finished_results(tmp_path):
    pool = candidates(4)
    ids = [candidate_id(c) for c in pool]

    def evaluate(candidate, seed, steps):
        if candidate_id(candidate) == ids[2]:
            raise RuntimeError("out of memory")
        return EvalOutcome(0.5)

    board = Leaderboard(tmp_path)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_search(pool, Exhaustive(0, (1,)), evaluate, board, "c", progress=False)
    assert {r.candidate_id for r in board.rows()} == set(ids[:2])


def test_a_rung_that_would_leave_one_survivor_becomes_final_when_that_is_cheaper():
    # 15 candidates, the default budget: 5 at 8 steps, then 2 at 24 would leave one to train again
    # at 32; 2 at 32 costs fewer steps, so that rung is the final one.
    strategy = SuccessiveHalving(min_steps=8, max_steps=32, seeds=(13, 21), eta=3)
    rungs = strategy.plan(15)
    assert [(r.n_candidates, r.steps, len(r.seeds)) for r in rungs] == [(15, 0, 1), (5, 8, 2), (2, 32, 2)]
    assert total_training_steps(rungs) == 5 * 8 * 2 + 2 * 32 * 2
    # Promoting 3 candidates at 90 steps to 500 would cost more than training the winner again: kept.
    wide = SuccessiveHalving(min_steps=10, max_steps=500, seeds=SEEDS, eta=3).plan(81)
    assert [r.n_candidates for r in wide] == [81, 27, 9, 3, 1]
    # The zero-shot rung is never promoted to a full fine-tuning of every candidate.
    assert [(r.n_candidates, r.steps) for r in strategy.plan(3)] == [(3, 0), (1, 32)]


def test_a_protected_candidate_reaches_the_final_rung_in_the_last_survivor_place():
    scores = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "manual": 0.1, "f": 0.5}
    plain = SuccessiveHalving(min_steps=2, max_steps=8, seeds=SEEDS, eta=3)
    kept = SuccessiveHalving(min_steps=2, max_steps=8, seeds=SEEDS, eta=3, protected=("manual",))
    rung = plain.plan(6)[0]
    assert plain.select(rung, scores) == ["a", "b"]
    assert kept.select(rung, scores) == ["a", "manual"]  # same count: it takes the last place
    assert kept.select(rung, {**scores, "manual": 0.95}) == ["manual", "a"]  # earned its place: nothing moves
    assert kept.select(rung, {k: v for k, v in scores.items() if k != "manual"}) == ["a", "b"]  # not in the race
    assert kept.plan(6) == plain.plan(6)


def test_the_pipeline_protects_the_task_prompt(tmp_path):
    from autoprompt_search.search import SearchOptions, make_strategy

    options = SearchOptions(task="sst2", out=str(tmp_path))
    assert make_strategy(options, protected=("x",)).protected == ("x",)
    assert make_strategy(SearchOptions(task="sst2", keep_task_prompt=False), protected=("x",)).protected == ()
