"""Label-word search: candidates, exact top-n assignments against brute force, and the backbone path."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autoprompt_search.errors import UserError
from autoprompt_search.auto_label.branch_and_bound import _AccuracyBranchAndBound
from autoprompt_search.auto_label import (
    Assignment,
    LabelSearchResult,
    binarise_at_median,
    brute_force_top_assignments,
    candidate_words,
    nearest_neighbour_filter,
    neighbour_masks,
    score_assignments,
    search_label_words,
    top_assignments,
    zero_shot_label_logprobs,
)
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.prompts import Template


def random_problem(num_classes: int, k: int, num_examples: int, vocab: int, seed: int, integer: bool = False):
    generator = torch.Generator().manual_seed(seed)
    if integer:  # few distinct values: many argmax ties and many equal-score assignments
        logprobs = torch.randint(-3, 0, (num_examples, vocab), generator=generator).double()
    else:
        logprobs = torch.log_softmax(torch.randn(num_examples, vocab, generator=generator), -1)
    labels = torch.arange(num_examples) % num_classes
    labels = labels[torch.randperm(num_examples, generator=generator)]
    return logprobs, labels, candidate_words(logprobs, labels, num_classes, k)


def as_tuples(assignments: list[Assignment]) -> list[tuple]:
    return [(a.word_ids, a.score, a.ranks, a.correct) for a in assignments]


def valid_assignment_count(candidates) -> int:
    return sum(len(set(words)) == len(words) for words in itertools.product(*candidates))


# ---------------------------------------------------------------------------------------------
# Exactness against brute force


@pytest.mark.parametrize("num_classes,k,num_examples,vocab", [(2, 12, 10, 40), (3, 6, 12, 20), (5, 4, 15, 20)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("n", [1, 7, 40])
def test_top_assignments_equal_brute_force(num_classes, k, num_examples, vocab, seed, integer, n):
    logprobs, labels, candidates = random_problem(num_classes, k, num_examples, vocab, seed, integer)
    found = top_assignments(logprobs, labels, candidates, n)
    assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, n))
    assert len(found) == min(n, valid_assignment_count(candidates))


@settings(max_examples=60, deadline=None)
@given(
    num_classes=st.integers(2, 4),
    k=st.integers(1, 4),
    num_examples=st.integers(1, 9),
    vocab=st.integers(4, 8),
    n=st.integers(1, 30),
    seed=st.integers(0, 10_000),
)
def test_property_matches_brute_force_with_shared_candidates(num_classes, k, num_examples, vocab, n, seed):
    """Candidate lists drawn from a tiny vocabulary overlap a lot, so the distinct-words rule bites;
    log-probs take three values, so ties are everywhere."""
    rng = np.random.default_rng(seed)
    logprobs = torch.tensor(rng.integers(-2, 1, size=(num_examples, vocab)), dtype=torch.float64)
    labels = torch.tensor(rng.integers(0, num_classes, size=num_examples))
    candidates = [rng.choice(vocab, size=min(k, vocab), replace=False).tolist() for _ in range(num_classes)]
    found = top_assignments(logprobs, labels, candidates, n)
    assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, n))
    for assignment in found:
        assert len(set(assignment.word_ids)) == num_classes


def frequency_problem(num_classes, k, num_examples, vocab, seed, decimals):
    """Log-probs shaped like a real LM's: a shared per-token frequency plus a smaller per-example
    part, rounded (ties); candidate lists drawn from the few most frequent tokens, so they overlap
    heavily, as SmolLM2's SST-5 lists do (85-90 of 100 words shared)."""
    rng = np.random.default_rng(seed)
    frequency = rng.normal(0.0, 2.0, size=vocab)
    logprobs = np.round(frequency[None, :] + rng.normal(0.0, 1.0, size=(num_examples, vocab)), decimals)
    labels = np.arange(num_examples) % num_classes
    rng.shuffle(labels)
    common = np.argsort(-frequency)[: k + 2]
    candidates = [rng.choice(common, size=k, replace=False).tolist() for _ in range(num_classes)]
    return torch.tensor(logprobs), torch.tensor(labels), candidates


@settings(max_examples=25, deadline=None)
@given(
    num_classes=st.integers(3, 5),
    k=st.integers(2, 5),
    per_class=st.integers(1, 6),
    decimals=st.integers(0, 1),
    n=st.integers(1, 60),
    seed=st.integers(0, 10_000),
)
def test_property_matches_brute_force_with_frequent_overlapping_words(num_classes, k, per_class, decimals, n, seed):
    """Every class draws from the same few frequent words and log-probs are rounded: the joint bound
    over the unassigned classes and its cheap pre-filter both run (three or more classes), with ties
    in scores and in argmaxes."""
    logprobs, labels, candidates = frequency_problem(num_classes, k, num_classes * per_class, 12, seed, decimals)
    found = top_assignments(logprobs, labels, candidates, n)
    assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, n))


@pytest.mark.parametrize("seed", [0, 1])
def test_child_bounds_are_never_below_the_best_completion(seed):
    """The bound of every first-class word is at least the best score of any assignment starting with
    it (admissible), and with one class the bound is the score itself."""
    from autoprompt_search.auto_label.branch_and_bound import _AccuracyBranchAndBound

    logprobs, labels, candidates = frequency_problem(4, 5, 16, 9, seed, decimals=1)
    search = _AccuracyBranchAndBound(logprobs.numpy(), labels.numpy(), candidates)
    search.n, search.heap = 1, []
    everyone = [np.broadcast_to(search.everyone[g], (len(candidates[g]), search.group_words[g])).copy()
                for g in range(4)]
    free, bounds, _, _ = search._children(0, (), set(), [], everyone)
    every = brute_force_top_assignments(logprobs, labels, candidates, 10 ** 6)
    for b, bound in zip(free.tolist(), bounds.tolist()):
        completions = [a.correct for a in every if a.ranks[0] == b]
        assert bound >= max(completions, default=-1)


def node_state(search, ranks):
    """The bitsets the search holds at the node that fixes `ranks` for the first classes: per fixed
    group, its examples still right; per open class, per candidate, the examples beating the fixed words."""
    fixed = []
    for g, rank in enumerate(ranks):
        bits = search.everyone[g].copy()
        for c, other in enumerate(ranks):
            if c != g:
                bits &= search.beats[g][c][other, rank]
        fixed.append(bits)
    open_sets = [None] * len(ranks)
    for u in range(len(ranks), search.num_classes):
        bits = np.broadcast_to(search.everyone[u], (len(search.candidates[u]), search.group_words[u])).copy()
        for c, other in enumerate(ranks):
            bits &= search.beats[u][c][other]
        open_sets.append(bits)
    return fixed, open_sets


def overlapping_node_problems(seed: int, num_classes: int, decimals: int, per_class: int):
    """A frequency problem (heavily shared candidates, ties when rounded) and a random valid prefix
    fixing all but the last three classes."""
    from autoprompt_search.auto_label.branch_and_bound import _AccuracyBranchAndBound

    logprobs, labels, candidates = frequency_problem(num_classes, 4, num_classes * per_class, 9, seed, decimals)
    rng = np.random.default_rng(seed)
    ranks: tuple[int, ...] = ()
    for c in range(num_classes - 3):
        taken = {candidates[g][r] for g, r in enumerate(ranks)}
        ranks += (int(rng.choice([r for r, t in enumerate(candidates[c]) if t not in taken])),)
    search = _AccuracyBranchAndBound(logprobs.numpy(), labels.numpy(), candidates)
    return logprobs, labels, candidates, search, ranks


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(3, 5), decimals=st.integers(0, 1),
       per_class=st.integers(1, 70))
def test_triangle_bounds_are_never_below_the_best_completion(seed, num_classes, decimals, per_class):
    """With three classes open, the pairwise-relaxation bound of every word of the next class is at
    least the best score of the completions that give it that word (validity), on heavily
    overlapping candidates, with fixed classes before it and groups of more than 64 examples."""
    from autoprompt_search.auto_label.last_classes import triangle_bounds, triangle_potentials

    logprobs, labels, candidates, search, ranks = overlapping_node_problems(seed, num_classes, decimals, per_class)
    fixed, open_sets = node_state(search, ranks)
    used = {candidates[g][r] for g, r in enumerate(ranks)}
    m = len(ranks)
    bounds = triangle_bounds(triangle_potentials(search, ranks, fixed, open_sets, used), m)
    every = brute_force_top_assignments(logprobs, labels, candidates, 10 ** 6)
    for b, bound in enumerate(bounds.tolist()):
        completions = [a.correct for a in every if a.ranks[:m + 1] == ranks + (b,)]
        if completions:
            assert bound >= max(completions)
        elif candidates[m][b] in used:
            assert bound < 0  # a word of a fixed class: excluded


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(3, 5), decimals=st.integers(0, 1),
       per_class=st.integers(1, 70))
def test_last_two_classes_are_scored_exactly(seed, num_classes, decimals, per_class):
    """With two classes open, the table holds the plain score of every completion, -1 where the two
    words are the same or one of them is taken by a fixed class."""
    from autoprompt_search.auto_label.last_classes import exact_pair_scores

    logprobs, labels, candidates, search, ranks = overlapping_node_problems(seed, num_classes, decimals, per_class)
    rng = np.random.default_rng(seed + 1)
    taken = {candidates[g][r] for g, r in enumerate(ranks)}
    free = [r for r, t in enumerate(candidates[len(ranks)]) if t not in taken]
    ranks += (int(rng.choice(free)),)
    fixed, open_sets = node_state(search, ranks)
    used = {candidates[g][r] for g, r in enumerate(ranks)}
    table = exact_pair_scores(search, ranks, fixed, open_sets, used)
    u, v = len(ranks), len(ranks) + 1
    for a, b in itertools.product(range(len(candidates[u])), range(len(candidates[v]))):
        words = [candidates[c][r] for c, r in enumerate(ranks)] + [candidates[u][a], candidates[v][b]]
        if len(set(words)) < len(words):
            assert table[a, b] == -1
        else:
            plain = score_assignments(logprobs, labels, candidates, [ranks + (a, b)])[0]
            assert table[a, b] == round(plain * len(labels))


def _four_open_node(num_classes, per_class, seed, decimals):
    """A random node of a frequency problem with four classes left open, and its children's state."""
    logprobs, labels, candidates = frequency_problem(num_classes, 4, num_classes * per_class, 9, seed, decimals)
    search = _AccuracyBranchAndBound(logprobs.numpy(), labels.numpy(), candidates)
    rng = np.random.default_rng(seed)
    ranks: tuple[int, ...] = ()
    for c in range(num_classes - 4):
        taken = {candidates[g][r] for g, r in enumerate(ranks)}
        ranks += (int(rng.choice([r for r, t in enumerate(candidates[c]) if t not in taken])),)
    m = len(ranks)
    fixed, open_sets = node_state(search, ranks)
    used = {candidates[g][r] for g, r in enumerate(ranks)}
    free, _, child_fixed, child_open = search._children(m, ranks, used, fixed, open_sets)
    return search, candidates, ranks, m, used, free, child_fixed, child_open, rng


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(4, 6), decimals=st.integers(0, 1),
       per_class=st.integers(1, 70))
def test_batched_triangle_bounds_equal_the_per_node_ones(seed, num_classes, decimals, per_class):
    """With four classes open, the batch of every child's triangle bounds (triangle_batch) equals the
    per-node bound of each child (non-negative entries), and excludes exactly the words a fixed class
    holds; overlapping lists, ties, groups over 64 examples (own words) and small ones (shared words)."""
    from autoprompt_search.auto_label.last_classes import triangle_bounds, triangle_potentials
    from autoprompt_search.auto_label.triangle_batch import child_triangle_bounds

    search, candidates, ranks, m, used, free, child_fixed, child_open, rng = _four_open_node(
        num_classes, per_class, seed, decimals)
    batched = child_triangle_bounds(search, ranks, free, child_fixed, child_open)
    for j, b in enumerate(free.tolist()):
        child = ranks + (b,)
        child_state = node_state(search, child)
        per_node = triangle_bounds(triangle_potentials(search, child, *child_state, used | {candidates[m][b]}), m + 1)
        assert ((batched[j] < 0) == (per_node < 0)).all()
        assert (batched[j][per_node >= 0] == per_node[per_node >= 0]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(4, 6), decimals=st.integers(0, 1),
       per_class=st.integers(1, 70), threshold=st.integers(0, 40))
def test_triangle_rows_cut_at_a_threshold_stay_valid_and_exact_above_it(seed, num_classes, decimals, per_class,
                                                                      threshold):
    """With a threshold, the batched triangle computes exactly only the rows whose cheap bound reaches
    it: every entry is still at least the per-node triangle bound (valid), entries at or above the
    threshold equal it, words of fixed classes stay negative, and the rows it computes equal the
    full pair tables' rows; overlapping lists, ties, groups over 64 examples and small ones."""
    from autoprompt_search.auto_label import triangle_batch as tb

    search, candidates, ranks, m, used, free, child_fixed, child_open, rng = _four_open_node(
        num_classes, per_class, seed, decimals)
    full = tb.child_triangle_bounds(search, ranks, free, child_fixed, child_open)
    cut = tb.child_triangle_bounds(search, ranks, free, child_fixed, child_open, threshold=threshold)
    valid = full >= 0
    assert (cut[valid] >= full[valid]).all()
    assert (cut[full >= threshold] == full[full >= threshold]).all()
    assert (cut[cut >= threshold] == full[cut >= threshold]).all()
    held = np.array([[t in used | {candidates[m][b]} for t in candidates[m + 1]] for b in free.tolist()])
    assert (cut[held] < 0).all() if held.size else True
    opened = (m + 1, m + 2, m + 3)
    bits = {c: tb._packed_fixed_bits(search, ranks, child_fixed, m, free, c) for c in opened}
    sets = dict(zip(opened, child_open))
    used_rows = {c: tb._used_rows(search, ranks, m, free, c) for c in opened}
    child, row = np.nonzero(rng.random((free.size, len(candidates[m + 1]))) < 0.5)
    for y in (m + 2, m + 3):
        table = tb._pair_table(search, bits, sets, used_rows, m + 1, y, tb._phi_dtype(search))
        rows = tb._pair_rows(search, bits, sets, used_rows, child, row, m + 1, y, tb._phi_dtype(search))
        assert (rows == table[child, row]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(2, 5), decimals=st.integers(0, 1),
       per_class=st.integers(1, 70), nodes=st.integers(1, 6), threshold=st.integers(0, 30))
def test_batched_last_two_rows_equal_the_per_node_tables(seed, num_classes, decimals, per_class, nodes, threshold):
    """G nodes with the last two classes open and different prefixes (some sharing words with the open
    lists), scored in one batch (last_two_batch): every row it returns equals that row of the node's
    own table (exact_pair_scores), every row it leaves out holds no score >= the threshold, and with
    threshold 0 every row comes back; overlapping lists, ties, groups over 64 examples (own words) and
    small ones (shared words)."""
    from autoprompt_search.auto_label.last_classes import exact_pair_scores
    from autoprompt_search.auto_label.last_two_batch import exact_score_rows

    logprobs, labels, candidates = frequency_problem(num_classes, 4, num_classes * per_class, 9, seed, decimals)
    search = _AccuracyBranchAndBound(logprobs.numpy(), labels.numpy(), candidates)
    rng = np.random.default_rng(seed)
    m = num_classes - 2
    prefixes, states = [], []
    for _ in range(nodes):
        ranks: tuple[int, ...] = ()
        for c in range(m):
            taken = {candidates[g][r] for g, r in enumerate(ranks)}
            ranks += (int(rng.choice([r for r, t in enumerate(candidates[c]) if t not in taken])),)
        prefixes.append(ranks)
        states.append(node_state(search, ranks))
    batch = np.array(prefixes, dtype=np.int64).reshape(nodes, m)
    fixed = [np.stack([state[0][g] for state in states]) for g in range(m)]
    open_u = np.stack([state[1][m] for state in states])
    open_v = np.stack([state[1][m + 1] for state in states])
    tables = [exact_pair_scores(search, ranks, *states[j], {candidates[g][r] for g, r in enumerate(ranks)})
              for j, ranks in enumerate(prefixes)]
    for cut in (0, threshold):
        node, row, scores = exact_score_rows(search, batch, fixed, open_u, open_v, threshold=cut)
        for j, a, values in zip(node.tolist(), row.tolist(), scores):
            assert (values == tables[j][a]).all()
        returned = set(zip(node.tolist(), row.tolist()))
        for j in range(nodes):
            for a in range(len(candidates[m])):
                if (j, a) not in returned:
                    assert cut > 0 and tables[j][a].max() < cut


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_classes", [3, 4, 5])
def test_completions_in_small_batches_match_brute_force(monkeypatch, batch, num_classes):
    """The two-open nodes are scored in batches cut where a node becomes prunable: with batches of one
    or three nodes (many cuts, a threshold rising between batches) the answer is still brute force's."""
    from autoprompt_search.auto_label import branch_and_bound

    monkeypatch.setattr(branch_and_bound, "_NODES_PER_BATCH", batch)
    logprobs, labels, candidates = frequency_problem(num_classes, 5, num_classes * 4, 9, seed=5, decimals=1)
    for n in (1, 10, 60):
        found = top_assignments(logprobs, labels, candidates, n)
        assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, n))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), num_classes=st.integers(2, 5), decimals=st.integers(0, 1),
       per_class=st.integers(1, 8), n=st.integers(1, 80))
def test_warm_start_floor_never_exceeds_the_true_nth_best(seed, num_classes, decimals, per_class, n):
    """The floor the search prunes with is at most the n-th best score of brute force (0 when there are
    fewer than n assignments), and every pair table it climbs on holds exact scores."""
    from autoprompt_search.auto_label.warm_start import pair_scores, score_floor

    logprobs, labels, candidates = frequency_problem(num_classes, 4, num_classes * per_class, 9, seed, decimals)
    search = _AccuracyBranchAndBound(logprobs.numpy(), labels.numpy(), candidates)
    every = brute_force_top_assignments(logprobs, labels, candidates, 10 ** 6)
    floor = score_floor(search, n)
    assert floor <= (every[n - 1].correct if len(every) >= n else 0)
    if every:
        ranks = every[-1].ranks  # the worst assignment: pair moves from it change the score
        table = pair_scores(search, ranks, 0, num_classes - 1)
        for a, b in itertools.product(range(len(candidates[0])), range(len(candidates[-1]))):
            full = (a,) + ranks[1:-1] + (b,)
            words = [candidates[c][r] for c, r in enumerate(full)]
            expected = round(score_assignments(logprobs, labels, candidates, [full])[0] * len(labels)) \
                if len(set(words)) == len(words) else -1
            assert table[a, b] == expected


def test_many_classes_with_shared_frequent_words_match_brute_force():
    """Six classes (two levels of per-group bound above the batched triangles) drawing from the same
    few frequent words, with rounded log-probs (ties), against brute force."""
    logprobs, labels, candidates = frequency_problem(6, 4, 18, 8, seed=11, decimals=0)
    for n in (1, 25, 300):
        found = top_assignments(logprobs, labels, candidates, n)
        assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, n))


def test_groups_of_more_than_64_examples():
    """Bitsets of several words per group (the count sums over words)."""
    logprobs, labels, candidates = frequency_problem(3, 4, 150, 8, seed=3, decimals=0)
    found = top_assignments(logprobs, labels, candidates, 30)
    assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, 30))


def test_no_word_is_shared_between_classes():
    logprobs, labels, _ = random_problem(3, 5, 12, 8, seed=4)
    candidates = [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 6]]  # heavy overlap
    found = top_assignments(logprobs, labels, candidates, 1000)
    assert len(found) == valid_assignment_count(candidates)
    assert all(len(set(a.word_ids)) == 3 for a in found)
    assert len({a.word_ids for a in found}) == len(found)


def test_n_beyond_the_valid_assignments_returns_all_in_order():
    logprobs, labels, candidates = random_problem(3, 3, 9, 12, seed=5)
    found = top_assignments(logprobs, labels, candidates, 10_000)
    assert len(found) == valid_assignment_count(candidates)
    keys = [(-a.score, a.ranks) for a in found]
    assert keys == sorted(keys)


def test_no_valid_assignment_gives_an_empty_list():
    logprobs, labels, _ = random_problem(2, 1, 4, 5, seed=0)
    assert top_assignments(logprobs, labels, [[3], [3]], 5) == []


def test_scores_and_ranks_agree_with_plain_evaluation():
    logprobs, labels, candidates = random_problem(4, 6, 24, 50, seed=6)
    found = top_assignments(logprobs, labels, candidates, 15)
    recomputed = score_assignments(logprobs, labels, candidates, [a.ranks for a in found])
    assert [a.score for a in found] == pytest.approx(recomputed.tolist())
    for a in found:
        assert a.word_ids == tuple(candidates[c][r] for c, r in enumerate(a.ranks))
        assert a.correct == round(a.score * len(labels))


def test_an_argmax_tie_counts_as_wrong():
    # Words 0 and 1 tie on example 0 (gold class 0); word 2 beats word 1 on example 1 (gold class 1).
    logprobs = torch.tensor([[-1.0, -1.0, -5.0], [-2.0, -3.0, -0.5]])
    labels = torch.tensor([0, 1])
    found = top_assignments(logprobs, labels, [[0], [1, 2]], 2)
    assert [(a.word_ids, a.correct) for a in found] == [((0, 2), 2), ((0, 1), 0)]


def test_branch_and_bound_scores_fewer_assignments_than_the_product():
    logprobs, labels, candidates = random_problem(4, 10, 32, 200, seed=7)
    stats: dict = {}
    found = top_assignments(logprobs, labels, candidates, 5, stats=stats)
    assert as_tuples(found) == as_tuples(brute_force_top_assignments(logprobs, labels, candidates, 5))
    assert stats["bounds_computed"] < 10 ** 4


def test_search_is_deterministic():
    logprobs, labels, candidates = random_problem(3, 8, 15, 30, seed=8, integer=True)
    assert as_tuples(top_assignments(logprobs, labels, candidates, 20)) == \
        as_tuples(top_assignments(logprobs, labels, candidates, 20))


# ---------------------------------------------------------------------------------------------
# Regression (Pearson)


def test_pearson_top_assignments_equal_brute_force():
    generator = torch.Generator().manual_seed(9)
    logprobs = torch.log_softmax(torch.randn(20, 60, generator=generator), -1)
    gold = torch.rand(20, generator=generator) * 5
    candidates = candidate_words(logprobs, binarise_at_median(gold), 2, 15)
    found = top_assignments(logprobs, gold, candidates, 12, metric="pearson")
    reference = brute_force_top_assignments(logprobs, gold, candidates, 12, metric="pearson")
    assert [a.ranks for a in found] == [a.ranks for a in reference]
    assert [a.score for a in found] == pytest.approx([a.score for a in reference])
    assert all(a.word_ids[0] != a.word_ids[1] for a in found)


def test_pearson_finds_the_pair_that_tracks_the_gold_score():
    gold = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    noise = torch.tensor([[-3.0, -1.0, -4.0, -2.0, -3.5, -1.5], [-2.0, -4.0, -1.0, -3.0, -1.5, -3.5]])
    logprobs = torch.stack([noise[0], -1.0 - 0.2 * gold, noise[1], -1.0 + 0.2 * gold, noise[0].flip(0)], dim=1)
    # word 3 rises with the score (high pole), word 1 falls (low pole); the others are noise
    found = top_assignments(logprobs, gold, [[0, 1, 2], [2, 3, 4]], 1, metric="pearson")
    assert found[0].word_ids == (1, 3)
    assert found[0].score > 0.95


def test_binarise_at_median_splits_above_the_median():
    assert binarise_at_median([0.5, 4.0, 2.0, 3.0, 1.0]).tolist() == [0, 1, 0, 1, 0]


# ---------------------------------------------------------------------------------------------
# Candidates and neighbours


def test_candidate_words_rank_by_class_sum_and_break_ties_by_token_id():
    logprobs = torch.tensor([
        [-1.0, -1.0, -3.0, -0.5, -2.0],
        [-1.0, -1.0, -3.0, -4.0, -2.0],
        [-5.0, -2.0, -0.1, -0.1, -0.2],
    ])
    labels = torch.tensor([0, 0, 1])
    assert candidate_words(logprobs, labels, 2, 3) == [[0, 1, 4], [2, 3, 4]]


def test_candidate_words_respect_allowed_masks():
    logprobs, labels, _ = random_problem(2, 1, 8, 30, seed=10)
    allowed = torch.zeros(30, dtype=torch.bool)
    allowed[10:20] = True
    for words in candidate_words(logprobs, labels, 2, 5, allowed):
        assert all(10 <= t < 20 for t in words)
    per_class = torch.zeros(2, 30, dtype=torch.bool)
    per_class[0, :4] = True
    per_class[1, 26:] = True
    assert [sorted(w) for w in candidate_words(logprobs, labels, 2, 4, per_class)] == [[0, 1, 2, 3], [26, 27, 28, 29]]


def test_candidate_word_errors_name_the_problem():
    logprobs, labels, _ = random_problem(2, 1, 6, 10, seed=11)
    allowed = torch.zeros(10, dtype=torch.bool)
    allowed[:3] = True
    with pytest.raises(UserError, match=r"k=4 .* only 3 vocabulary entries"):
        candidate_words(logprobs, labels, 2, 4, allowed)
    with pytest.raises(UserError, match=r"class 2 \('neutral'\) has no training examples"):
        candidate_words(logprobs, labels, 3, 2, class_names=["negative", "positive", "neutral"])
    with pytest.raises(UserError, match="label 5 is not a class index"):
        candidate_words(logprobs, torch.tensor([0, 1, 5, 0, 1, 0]), 2, 2)
    with pytest.raises(UserError, match="shape"):
        candidate_words(logprobs, labels, 2, 2, torch.ones(7, dtype=torch.bool))


def test_nearest_neighbours_by_cosine():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [0.1, 3.0], [-1.0, 0.0], [1.0, 0.0]])
    assert nearest_neighbour_filter(embeddings, [0, 1], 3) == [[0, 5, 2], [1, 3, 2]]
    allowed = torch.tensor([True, True, True, True, True, False])
    nearest = nearest_neighbour_filter(embeddings, [0, 1], 2, allowed)
    assert nearest == [[0, 2], [1, 3]]
    masks = neighbour_masks(nearest, 6)
    assert masks.tolist() == [[True, False, True, False, False, False], [False, True, False, True, False, False]]
    with pytest.raises(UserError, match="outside the vocabulary"):
        nearest_neighbour_filter(embeddings, [0, 9], 2)


# ---------------------------------------------------------------------------------------------
# Bad inputs to the search


@pytest.mark.parametrize("change,message", [
    (dict(n=0), "n .* at least 1"),
    (dict(metric="f1"), "unknown label-search metric"),
    (dict(labels=torch.tensor([0, 1, 0])), "one label per training example"),
    (dict(candidates=[[0, 1]]), "at least 2 classes"),
    (dict(candidates=[[0, 0], [1]]), "class 0 lists a candidate word twice"),
    (dict(candidates=[[0], [99]]), "outside the vocabulary"),
    (dict(candidates=[[0], []]), "class 1 has no candidate words"),
    (dict(logprobs=torch.tensor([[0.0, float("nan")], [0.0, 0.0]])), "NaN"),
    (dict(labels=torch.tensor([0.5, 1.0])), "integer class indices"),
])
def test_bad_search_inputs(change, message):
    arguments = dict(logprobs=torch.zeros(2, 4), labels=torch.tensor([0, 1]), candidates=[[0, 1], [2, 3]], n=3,
                     metric="acc")
    arguments.update(change)
    with pytest.raises(UserError, match=message):
        top_assignments(**arguments)


def test_pearson_needs_two_poles():
    with pytest.raises(UserError, match="two poles"):
        top_assignments(torch.zeros(3, 6), torch.tensor([0.0, 1.0, 2.0]), [[0], [1], [2]], 1, metric="pearson")


# ---------------------------------------------------------------------------------------------
# The result record


def test_result_record_round_trips_through_json():
    task = get_task("SST-2")
    words = {10: "awful", 11: "dull", 20: "great", 21: "lovely"}
    assignments = [Assignment((10, 20), 0.75, (0, 0), 12), Assignment((11, 21), 0.5, (1, 1), 8)]
    result = LabelSearchResult.build(task=task.name, labels=task.labels, metric="acc", k=2,
                                     candidates=[[10, 11], [20, 21]], assignments=assignments,
                                     id_to_word=words.__getitem__, template=task.template, num_examples=16)
    data = json.loads(result.dumps())
    assert data["assignments"][0]["label_words"] == {"0": "awful", "1": "great"}
    assert LabelSearchResult.from_json(data) == result
    assert [v.to_mapping() for v in result.verbalizers(task)] == [{"0": "awful", "1": "great"},
                                                                  {"0": "dull", "1": "lovely"}]


# ---------------------------------------------------------------------------------------------
# With a backbone (tiny random models from conftest)


@pytest.mark.parametrize("backbone_fixture", ["tiny_mlm", "tiny_causal"])
def test_search_label_words_with_a_backbone(backbone_fixture, request, toy_sentiment):
    backbone = request.getfixturevalue(backbone_fixture)
    task = get_task("SST-2")
    train, _ = toy_sentiment
    template = Template.parse(task.template)
    result = search_label_words(backbone, task, template, train, k=6, n=4, batch_size=5, progress=False)
    allowed = backbone.word_token_mask()
    assert len(result.candidates) == 2 and all(len(words) == 6 for words in result.candidates)
    assert all(bool(allowed[t]) for words in result.candidates for t in words)
    assert 1 <= len(result.assignments) <= 4
    logprobs = zero_shot_label_logprobs(backbone, task, template, train, batch_size=16, progress=False)
    labels = torch.tensor([task.label_index(e.label) for e in train])
    assert result.candidates == candidate_words(logprobs, labels, 2, 6, allowed)
    expected = brute_force_top_assignments(logprobs, labels, result.candidates, 4)
    assert as_tuples(result.assignments) == as_tuples(expected)
    assert set(result.to_json()["candidates"]) == {"0", "1"}


def test_zero_shot_logprobs_do_not_depend_on_batching(tiny_causal, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    template = Template.parse(task.template)
    batched = zero_shot_label_logprobs(tiny_causal, task, template, train[:6], batch_size=6, progress=False)
    single = zero_shot_label_logprobs(tiny_causal, task, template, train[:6], batch_size=1, progress=False)
    assert batched.shape == (6, tiny_causal.model.get_output_embeddings().weight.shape[0])
    assert torch.allclose(batched, single, atol=1e-4)
    assert torch.allclose(batched.exp().sum(-1), torch.ones(6), atol=1e-4)


def test_search_label_words_regression_uses_pearson(tiny_mlm):
    task = get_task("STS-B")
    subjects = ["the movie", "a film", "the story", "the music", "this actor", "the plot", "a scene", "the cast"]
    train = [Example((f"{subject} was long.", "a film was short."), score)
             for subject, score in zip(subjects, [0.0, 0.5, 1.2, 2.0, 2.6, 3.1, 4.0, 4.8])]
    result = search_label_words(tiny_mlm, task, task.template, train, k=4, n=3, progress=False)
    assert result.metric == "pearson"
    assert len(result.assignments) == 3
    assert all(-1.0 <= a.score <= 1.0 for a in result.assignments)
    assert [a.score for a in result.assignments] == sorted((a.score for a in result.assignments), reverse=True)


def test_search_label_words_with_seed_word_neighbours(tiny_mlm, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    result = search_label_words(tiny_mlm, task, task.template, train, k=3, n=2, progress=False,
                                seed_words={"0": "terrible", "1": "great"}, neighbours=8)
    embeddings = tiny_mlm.model.get_output_embeddings().weight
    seeds = tiny_mlm.tokenizer(["terrible", "great"], add_special_tokens=False)["input_ids"]
    nearest = nearest_neighbour_filter(embeddings, [ids[0] for ids in seeds], 8, tiny_mlm.word_token_mask())
    for words, allowed in zip(result.candidates, nearest):
        assert set(words) <= set(allowed)
    with pytest.raises(UserError, match="neighbours"):
        search_label_words(tiny_mlm, task, task.template, train, k=3, n=2, progress=False,
                           seed_words={"0": "terrible", "1": "great"})


def test_a_label_position_blind_to_the_input_is_refused(tiny_causal, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    with pytest.raises(UserError, match="same log-probabilities for every training example"):
        search_label_words(tiny_causal, task, "*cls**mask*:*+sent_0**sep+*", train, k=3, n=2, progress=False)
