"""Precision, recall, F1 and nDCG at K for ranked tag sets (an `evaluate` metric module)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Scores ranked tag predictions against gold tag sets, as tag recommendation papers do:
P@K = |top-K ∩ gold| / K and R@K = |top-K ∩ gold| / |gold|, each averaged over posts.
F1@K is the harmonic mean of a post's P@K and R@K (0 when both are 0), averaged over posts.
nDCG@K uses binary gains: sum over hits at rank r (1-based) of 1/log2(r+1), divided by the best
possible value, sum_{r=1}^{min(K, |gold|)} 1/log2(r+1); averaged over posts.

Semantics: a prediction repeated in a list counts once, at its first rank; a list shorter than K
counts the missing ranks as misses (P@K still divides by K); a gold tag listed twice counts once; an
empty gold list is an error that names its index.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str` or `int`): ranked tags per post, best first.
    references (`list` of `list` of `str` or `int`): the gold tags of each post (order is ignored).
    k (`int` or `list` of `int`, defaults to `[1, 3, 5]`): the cut-offs.
Returns:
    `dict`: `precision@K`, `recall@K`, `f1@K`, `ndcg@K` for each K (fractions in [0, 1]) and `n`, the
    number of posts scored.
Examples:
    >>> metric = evaluate.load("evaluate_metrics/precision_at_k")
    >>> scores = metric.compute(predictions=[["python", "pandas", "numpy"], ["css"]],
    ...                         references=[["pandas", "python"], ["html", "css"]], k=[1, 3])
    >>> scores["precision@1"], scores["recall@1"], scores["precision@3"], scores["recall@3"]
    (1.0, 0.5, 0.5, 0.75)
    >>> scores["n"]
    2
"""

_CITATION = """
@inproceedings{sog-tag-recommendation,
  title = {Sequence-Oblivious Generation for Tag Recommendation},
  note  = {P@K and R@K as defined in its evaluation section}
}
"""

DEFAULT_K = (1, 3, 5)


def normalise_ks(k) -> list[int]:
    ks = [k] if isinstance(k, (int, np.integer)) else list(k)
    if not ks or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in ks):
        raise ValueError(f"k must be a positive int or a non-empty list of them, got {k!r}")
    return sorted(set(int(v) for v in ks))


def hit_matrix(predictions, references, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, depth) booleans: is the r-th distinct prediction of post i gold; and |gold| per post."""
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    flat_hits = []
    gold_sizes = np.empty(len(references), dtype=np.int64)
    misses = [False] * depth
    for i, (ranked, gold) in enumerate(zip(predictions, references)):
        gold = set(gold)
        if not gold:
            raise ValueError(f"references[{i}] is empty: every post needs at least one gold tag")
        gold_sizes[i] = len(gold)
        top = list(ranked[:depth])
        if len(set(top)) != len(top):  # a repeat counts once, at its first rank
            top = list(dict.fromkeys(ranked))[:depth]
        flat_hits.extend([tag in gold for tag in top])
        flat_hits.extend(misses[len(top):])
    hits = np.array(flat_hits, dtype=bool).reshape(len(predictions), depth)
    return hits, gold_sizes


def scores_at_k(predictions, references, k=DEFAULT_K) -> dict:
    """The metric itself, usable without `evaluate` (what `_compute` calls)."""
    ks = normalise_ks(k)
    hits, gold_sizes = hit_matrix(predictions, references, max(ks))
    cumulative = hits.cumsum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    gains = (hits * discounts).cumsum(axis=1)
    ideal = discounts.cumsum()
    result = {}
    for kk in ks:
        found = cumulative[:, kk - 1]
        precision = found / kk
        recall = found / gold_sizes
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
        ndcg = gains[:, kk - 1] / ideal[np.minimum(kk, gold_sizes) - 1]
        result[f"precision@{kk}"] = float(precision.mean())
        result[f"recall@{kk}"] = float(recall.mean())
        result[f"f1@{kk}"] = float(f1.mean())
        result[f"ndcg@{kk}"] = float(ndcg.mean())
    result["n"] = len(predictions)
    return result


def _features(value_type: str) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Sequence(datasets.Value(value_type)),
                              "references": datasets.Sequence(datasets.Value(value_type))})


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrecisionAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[_features("string"), _features("int64")],
            reference_urls=[],
        )

    def _compute(self, predictions, references, k=DEFAULT_K):
        if not predictions:
            raise ValueError("no posts to score: predictions and references are empty")
        return scores_at_k(predictions, references, k)

