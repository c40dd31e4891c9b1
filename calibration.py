"""Fitting the map from a tag's step probability to its ``score`` (the estimated probability that the tag belongs to
the post's set), on a validation split's generated tags, and measuring how well scores match hit rates.

The map itself is applied by ``modeling_sog.calibrated_scores`` (it ships with the model):
``score = sigmoid(slope * logit(p) + step_slope * log(step) + intercept)``; this module fits its three numbers.
"""

import torch


def calibration_rows(predictions, gold):
    """(step probability, step, hit) for every generated tag; hit: the tag is in the post's gold set."""
    return [(tag["step_probability"], step, tag["label"] in set(tags))
            for generated, tags in zip(predictions, gold) for step, tag in enumerate(generated, start=1)]


def fit_score_calibration(predictions, gold) -> dict | None:
    """Logistic regression of hit on (logit(step probability), log(step)): the mapping ``generate_tags`` turns
    step probabilities into scores with. ``None`` when the predictions hold only hits or only misses."""
    rows = calibration_rows(predictions, gold)
    hits = torch.tensor([float(hit) for _, _, hit in rows], dtype=torch.float64)
    if not rows or hits.min() == hits.max():
        return None
    p = torch.tensor([prob for prob, _, _ in rows], dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    features = torch.stack([torch.logit(p), torch.log(torch.tensor([float(s) for _, s, _ in rows],
                                                                     dtype=torch.float64))], dim=1)
    weights = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ weights + bias, hits) \
            + 1e-4 * weights.pow(2).sum()   # a light ridge keeps the fit finite on separable data
        loss.backward()
        return loss

    optimizer.step(closure)
    return {"slope": round(weights[0].item(), 6), "step_slope": round(weights[1].item(), 6),
            "intercept": round(bias.item(), 6), "fitted_on": "validation", "tags": len(rows),
            "posts": len(predictions)}


def calibration_report(predictions, gold, bins: int = 10) -> dict:
    """How well scores match hit rates: mean score, hit rate and expected calibration error (ECE)."""
    rows = [(tag["score"], tag["label"] in set(tags)) for generated, tags in zip(predictions, gold)
            for tag in generated]
    if not rows:
        return {"tags": 0}
    error = 0.0
    for b in range(bins):
        inside = [(s, h) for s, h in rows if b / bins <= s < (b + 1) / bins or (b == bins - 1 and s == 1.0)]
        if inside:
            error += len(inside) / len(rows) * abs(sum(s for s, _ in inside) / len(inside)
                                                   - sum(h for _, h in inside) / len(inside))
    return {"tags": len(rows), "mean_score": sum(s for s, _ in rows) / len(rows),
            "hit_rate": sum(h for _, h in rows) / len(rows), "expected_calibration_error": error}
