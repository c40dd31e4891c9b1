import doctest
import importlib.util
from pathlib import Path

import evaluate
import pytest

METRIC_DIR = Path(__file__).resolve().parents[1] / "evaluate_metrics" / "precision_at_k"


def load_module(name):
    spec = importlib.util.spec_from_file_location(f"metric_{name}", METRIC_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def test_paper_style_averaging_matches_hand_computed_values(metric):
    predictions = [["a", "b", "c", "d", "e"], ["x", "a", "y"], ["b"]]
    references = [["a", "c", "z"], ["y"], ["b", "c"]]
    # post 1: hits at ranks 1 and 3; post 2: hit at rank 3; post 3: hit at rank 1, 1 prediction only
    scores = metric.compute(predictions=predictions, references=references, k=[1, 3, 5])
    assert scores["n"] == 3
    assert scores["precision@1"] == pytest.approx((1 + 0 + 1) / 3)
    assert scores["recall@1"] == pytest.approx((1 / 3 + 0 + 1 / 2) / 3)
    assert scores["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert scores["recall@3"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert scores["precision@5"] == pytest.approx((2 / 5 + 1 / 5 + 1 / 5) / 3)
    assert scores["recall@5"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0
    assert scores["f1@3"] == pytest.approx((f1(2 / 3, 2 / 3) + f1(1 / 3, 1) + f1(1 / 3, 1 / 2)) / 3)
    ideal3 = [1.0, 1 + 1 / 1.5849625007211562, 1 + 1 / 1.5849625007211562 + 0.5]
    post1 = (1 + 0.5) / ideal3[2]          # hits at ranks 1 and 3, 3 gold tags
    post2 = 0.5 / ideal3[0]                 # hit at rank 3, 1 gold tag
    post3 = 1.0 / ideal3[1]                 # hit at rank 1, 2 gold tags
    assert scores["ndcg@3"] == pytest.approx((post1 + post2 + post3) / 3)


def test_repeated_predictions_count_once_at_their_first_rank(metric):
    scores = metric.compute(predictions=[["a", "a", "a", "b"]], references=[["a", "b"]], k=[1, 2, 3])
    assert scores["precision@2"] == 1.0 and scores["recall@2"] == 1.0   # the repeats are skipped, b moves up
    assert scores["precision@3"] == pytest.approx(2 / 3)


def test_duplicate_gold_tags_count_once_and_ints_work(metric):
    scores = metric.compute(predictions=[[1, 2, 3]], references=[[1, 1, 2]], k=3)
    assert scores["recall@3"] == 1.0 and scores["precision@3"] == pytest.approx(2 / 3)


def test_add_batch_then_compute(metric):
    metric.add_batch(predictions=[["a"], ["b"]], references=[["a"], ["c"]])
    metric.add_batch(predictions=[["c", "d"]], references=[["d"]])
    scores = metric.compute(k=[1, 2])
    assert scores["n"] == 3 and scores["precision@1"] == pytest.approx(1 / 3)
    assert scores["recall@2"] == pytest.approx(2 / 3)


def test_errors_name_the_problem(metric):
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        metric.compute(predictions=[["a"], ["b"]], references=[["a"], []])
    with pytest.raises(ValueError, match="Mismatch in the number"):
        metric.compute(predictions=[["a"], ["b"]], references=[["a"]])
    with pytest.raises(ValueError, match="k must be"):
        metric.compute(predictions=[["a"]], references=[["a"]], k=0)
    module = load_module("precision_at_k")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        module.scores_at_k([["a"], ["b"]], [["a"]])


def test_docstring_examples_run():
    module = load_module("precision_at_k")
    test = doctest.DocTestParser().get_doctest(module._KWARGS_DESCRIPTION, {"evaluate": evaluate}, "precision_at_k",
                                               None, 0)
    runner = doctest.DocTestRunner()
    import os
    cwd = os.getcwd()
    os.chdir(METRIC_DIR.parents[1])
    try:
        runner.run(test)
    finally:
        os.chdir(cwd)
    assert runner.failures == 0 and runner.tries >= 3


def test_space_app_function():
    app = load_module("app")
    scores = app.compute_scores("python, pandas, numpy\ncss", "pandas, python\nhtml, css", "1 3")
    assert scores["precision@1"] == 100.0 and scores["recall@3"] == 75.0 and scores["n"] == 2
    with pytest.raises(ValueError, match="predictions"):
        app.compute_scores("  ", "a", "1")
    with pytest.raises(ValueError, match="K: expected integers"):
        app.compute_scores("a", "a", "one")
