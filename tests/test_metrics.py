import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from autoprompt_search.errors import UserError
from autoprompt_search.training import (
    accuracy,
    compute_metric,
    compute_metrics,
    f1,
    matthews_corrcoef,
    pearson,
    spearman,
)
from autoprompt_search.tasks import get_task


def test_accuracy_counts_matches():
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert accuracy(["a", "b"], ["b", "a"]) == 0.0


def test_f1_hand_computed_case():
    # tp = 2, fp = 1, fn = 1 -> precision 2/3, recall 2/3, f1 2/3
    assert f1([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)


def test_f1_uses_class_one_as_positive():
    # all-negative agreement: perfect accuracy but no positive class found -> f1 0, not NaN
    assert f1([0, 0, 0], [0, 0, 0]) == 0.0
    assert f1([1, 1], [0, 0]) == 0.0


def test_mcc_binary_matches_phi_formula():
    predictions = [1, 1, 0, 0, 1, 0, 1, 1]
    golds = [1, 0, 0, 0, 1, 1, 1, 0]
    tp, tn, fp, fn = 3, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(predictions, golds) == pytest.approx(expected)


def test_mcc_degenerate_inputs_are_zero_not_nan():
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert matthews_corrcoef([0, 0], [0, 0]) == 0.0


def test_mcc_perfect_and_inverted():
    assert matthews_corrcoef([0, 1, 2, 1], [0, 1, 2, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40))
def test_mcc_multiclass_matches_covariance_definition(pairs):
    predictions, golds = zip(*pairs)
    # R_K = cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)) over one-hot indicator matrices
    x = np.eye(3)[list(predictions)]
    y = np.eye(3)[list(golds)]
    x, y = x - x.mean(0), y - y.mean(0)
    cov_xy, cov_xx, cov_yy = (x * y).sum(), (x * x).sum(), (y * y).sum()
    expected = 0.0 if cov_xx * cov_yy == 0 else cov_xy / math.sqrt(cov_xx * cov_yy)
    assert matthews_corrcoef(predictions, golds) == pytest.approx(expected, abs=1e-12)


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_spearman_is_rank_based():
    assert spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 1000]) < 1.0


def test_correlations_of_constant_predictions_are_zero():
    assert pearson([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0
    assert pearson([1.0], [2.0]) == 0.0


def test_length_mismatch_and_empty_inputs_raise():
    with pytest.raises(UserError, match="2 predictions for 3"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(UserError, match="zero examples"):
        f1([], [])


def test_compute_metrics_main_key_per_task():
    assert set(compute_metrics("SST-2", ["1", "0"], ["1", "1"])) == {"acc"}
    assert set(compute_metrics("MRPC", [1, 0], [1, 1])) == {"acc", "f1"}
    assert set(compute_metrics("CoLA", [1, 0], [1, 1])) == {"acc", "mcc"}
    assert set(compute_metrics("STS-B", [1.0, 2.0, 0.5], [1.5, 3.0, 1.0])) == {"pearson", "spearman"}


def test_compute_metrics_accepts_label_strings_or_indices():
    task = get_task("RTE")  # labels: ("not_entailment", "entailment")
    by_name = compute_metrics(task, ["entailment", "entailment", "not_entailment"],
                              ["entailment", "not_entailment", "not_entailment"])
    by_index = compute_metrics(task, [1, 1, 0], [1, 0, 0])
    assert by_name == by_index
    assert by_name["acc"] == pytest.approx(2 / 3)


def test_compute_metrics_f1_positive_class_is_label_index_one():
    # QQP: labels ("0", "1"); "1" (duplicate) is positive
    metrics = compute_metrics("QQP", ["1", "1", "0", "0"], ["1", "0", "0", "1"])
    assert metrics["f1"] == pytest.approx(f1([1, 1, 0, 0], [1, 0, 0, 1]))
    assert metrics["f1"] == pytest.approx(0.5)


def test_compute_metric_returns_main_value_and_rejects_unknown_labels():
    assert compute_metric("CoLA", [0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    with pytest.raises(UserError, match="unknown label"):
        compute_metrics("SST-2", ["positive"], ["1"])
    with pytest.raises(UserError, match="out of range"):
        compute_metrics("SST-2", [7], [1])
