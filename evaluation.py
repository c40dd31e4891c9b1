"""Scoring tag models the same way everywhere: P/R/F1/nDCG@K through the project's evaluate module, tags generated
for every post of a split exactly once across processes, and the predictions files a run leaves."""

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import evaluate
from accelerate.utils import gather_object

REPO = Path(__file__).resolve().parent
METRIC_PATH = REPO / "evaluate_metrics" / "precision_at_k"
K_VALUES = (1, 3, 5)


def load_tag_metric():
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def metric_hits(metric, predictions, references, k: int):
    """The metric module's own ``hit_matrix`` (so a hit means what it means in ``score``): ``[posts, k]`` hits and
    each post's gold set size."""
    return sys.modules[type(metric).__module__].hit_matrix(predictions, references, k)


def per_post_scores(metric, predictions, references, k: int) -> dict:
    """Each post's P@1 (0 or 1) and R@``k``, by the metric module's own hits: what the scores average, for error
    bars that need the posts one by one."""
    hits, gold_sizes = metric_hits(metric, predictions, references, k)
    return {"P@1": hits[:, 0].astype(float).tolist(), f"R@{k}": (hits.sum(axis=1) / gold_sizes).tolist()}


def hits_by_position(metric, predictions, references, k: int) -> list[float]:
    """The share of posts (in percent) whose ``r``-th generated tag is gold, for ``r`` = 1..``k``, by the metric
    module's own hits: where in a post's tags two models' R@``k`` parts."""
    hits, _ = metric_hits(metric, predictions, references, k)
    return (100 * hits.mean(axis=0)).tolist()


def clustered_standard_error(values: list[float], groups: list[str]) -> float:
    """The standard error (in points) of the mean of per-post ``values`` (fractions) when posts were drawn in
    ``groups``: the cluster-robust estimate, sqrt(G / (G - 1) * sum over groups of (the group's summed deviation
    from the mean)^2) / n. With one post per group it is the usual standard error of a mean (for P@1: the binomial
    one, times sqrt(n / (n - 1))); NaN with fewer than two groups (no spread to read)."""
    if len(values) != len(groups):
        raise ValueError(f"{len(values)} values but {len(groups)} groups: one group per post")
    mean = math.fsum(values) / len(values)
    deviation = defaultdict(float)
    for value, group in zip(values, groups):
        deviation[group] += value - mean
    if len(deviation) < 2:
        return float("nan")
    spread = len(deviation) / (len(deviation) - 1) * math.fsum(d * d for d in deviation.values())
    return 100 * math.sqrt(spread) / len(values)


def paired_difference(values: list[float], anchor: list[float], groups: list[str]) -> tuple[float, float]:
    """How far per-post ``values`` (fractions) are ahead of ``anchor``'s on the same posts, in points, and the
    standard error of that paired difference (``clustered_standard_error``: a group's posts one draw)."""
    differences = [a - b for a, b in zip(values, anchor, strict=True)]
    return 100 * math.fsum(differences) / len(differences), clustered_standard_error(differences, groups)


def clearly_ahead(gain: float, standard_error: float) -> bool:
    """The house rule for reading a difference: ahead only beyond two standard errors, a tie otherwise. A NaN
    standard error (fewer than two groups) compares False: no evidence."""
    return gain > 2 * standard_error


def labels(predictions) -> list[list[str]]:
    """Each post's generated tags (``generate_tags``' dicts, as the predictions files hold them) as ranked labels."""
    return [[tag["label"] for tag in predicted] for predicted in predictions]


def score(metric, predictions, references) -> dict:
    """P/R/F1/nDCG@1,3,5 in percent (``n``: the number of posts), through the project's evaluate module."""
    scores = metric.compute(predictions=predictions, references=references, k=list(K_VALUES))
    return {name: (value if name == "n" else 100 * value) for name, value in scores.items()}


def generate_and_score(accelerator, model, tokenizer, split, num_tags: int, batch_size: int, metric):
    """Generate tags for every post of ``split`` (a ``corpora.Split``) exactly once across processes; return the
    scores and, per post, what ``generate_tags`` gave."""
    posts = split.posts
    # Each process takes every n-th post: no padding, so no duplicates to drop after gathering.
    mine = list(range(accelerator.process_index, len(posts), accelerator.num_processes))
    generator = accelerator.unwrap_model(model)
    tags = generator.generate_tags([posts[i] for i in mine], tokenizer, num_tags=num_tags, batch_size=batch_size)
    gathered = gather_object(list(zip(mine, tags)))
    predictions = dict(gathered)
    if sorted(predictions) != list(range(len(posts))) or len(gathered) != len(posts):
        raise RuntimeError(f"evaluation covered {len(predictions)} distinct of {len(posts)} posts "
                           f"({len(gathered)} gathered)")
    predictions = [predictions[i] for i in range(len(posts))]
    return score(metric, labels(predictions), split.gold), predictions


def write_predictions(path, split, predictions):
    """One JSON line per post: its id, gold tags and what was generated."""
    with open(path, "w", encoding="utf-8") as stream:
        for row, predicted in zip(split.data.select_columns(["id", "tags"]), predictions):
            stream.write(json.dumps({"id": row["id"], "gold": row["tags"], "predicted": predicted}) + "\n")


def read_predictions(path) -> list[list[dict]]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line)["predicted"] for line in stream if line.strip()]
