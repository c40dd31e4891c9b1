"""The one renderer of P@K / R@K (and F1, nDCG) Markdown tables: train.py's summary, the demo, ``sog eval``, the
model card and the benchmark tables all go through ``score_table``.

>>> print(score_table([("SOG", {"precision@1": 80.0, "recall@1": 40.0}, {"posts": 3})], ks=(1,),
...                   before=[("posts", "posts", "d")]))
| model | posts | P@1 | R@1 |
|---|---:|---:|---:|
| SOG | 3 | 80.00 | 40.00 |
>>> print(score_table([("validation", {"precision@1": 80.0, "recall@1": 40.0})], ks=(1,), by_k=True))
| K | validation P@K | validation R@K |
|---|---:|---:|
| 1 | 80.00 | 40.00 |
"""

from evaluation import K_VALUES

METRIC_LABELS = {"precision": "P", "recall": "R", "f1": "F1", "ndcg": "nDCG"}


def cell(value, fmt: str = ".2f") -> str:
    """A number formatted, a string as it is (e.g. "82.00 ± 2.83"), anything else "-"."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return "-"


def score_table(entries, *, label: str = "model", metrics=("precision", "recall"), ks=K_VALUES, before=(),
                after=(), by_k: bool = False) -> str:
    """A Markdown table of scores in %.

    entries: ``(name, scores)`` or ``(name, scores, extras)``; ``scores`` maps ``"precision@1"``, ... to a number or
    a preformatted string. One row per entry, the metric columns ``P@1 P@3 P@5 R@1 ...`` between the ``before``
    and ``after`` columns, each ``(header, key in extras, format)``. ``by_k``: one row per K instead, a column per
    entry and metric (``"validation P@K"``)."""
    entries = [(entry[0], entry[1], entry[2] if len(entry) > 2 else {}) for entry in entries]
    if by_k:
        headers = ["K"] + [f"{name} {METRIC_LABELS[m]}@K".strip() for name, _, _ in entries for m in metrics]
        rows = [[str(k)] + [cell(scores.get(f"{m}@{k}")) for _, scores, _ in entries for m in metrics] for k in ks]
    else:
        headers = ([label] + [h for h, _, _ in before] + [f"{METRIC_LABELS[m]}@{k}" for m in metrics for k in ks]
                   + [h for h, _, _ in after])
        rows = [[name] + [cell(extras.get(key), fmt) for _, key, fmt in before]
                + [cell(scores.get(f"{m}@{k}")) for m in metrics for k in ks]
                + [cell(extras.get(key), fmt) for _, key, fmt in after] for name, scores, extras in entries]
    lines = ["| " + " | ".join(headers) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
