"""The lexical expert's weights scored on validation posts a run never used: does the weight ``train.py`` chose on
its validation sample generalise, and is the grid wide enough? The quality benchmarks carve validation from train
(by group hash) and hand ``train.py`` a sample of it (500 posts); the rest of the carved posts are fresh draws from
the same distribution that no choice has seen. For each run (a ``train.py`` output folder of a generator or ranking
model with a frozen expert) and each weight, on the run's own validation posts and on the held-out ones:

- the first step's weight by P@1 (one decoding step per weight);
- for generators, the later steps' weight by R@5, the first step's weight kept at the run's own.

Each cell is the mean in points with, in the JSON, the standard error of its gain over weight 1 counting a group's
posts as one draw (``train.best_lexical_weight``'s statistic). The test split is not touched.

    python -m benchmarks.held_out_weights outputs/equal_cost/sog_train.py_defaults__seed42 [...] \
        --dataset debtags --results benchmarks/results/held_out_weights

``--dataset``/``--data_dir`` name the corpus the benchmark that trained the runs read (the run folders only hold
the sampled splits); a run whose validation posts are not all in that corpus's carved validation is refused.
"""

import argparse
from pathlib import Path

from accelerate import Accelerator

import train
from benchmarks.common import REPO, machine, score_runs
from benchmarks.trained_runs import carved_validation, corpus_name, ids_within, load_run, run_splits
from corpora import Split
from evaluation import K_VALUES, generate_and_score, labels, load_tag_metric, per_post_scores

# train.py's grid and three steps past its edge (4): on full debtags the later steps' weight was chosen at the
# edge in 4 of 6 runs
WEIGHTS = (*train.LEXICAL_WEIGHTS, 8.0, 16.0, 32.0)
ANCHOR = 1.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="train.py output folders (train_summary.json, the saved model)")
    p.add_argument("--dataset", default="debtags", help="the corpus the runs' benchmark read, as train.py --dataset")
    p.add_argument("--data_dir")
    p.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS),
                   help=f"the expert's weights to score (default: {' '.join(f'{w:g}' for w in WEIGHTS)}; 1 is added)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "held_out_weights"))
    p.add_argument("--batch_size", type=int, default=64)
    return p.parse_args(argv)


def held_out_posts(carved: Split, used: Split, folder: Path) -> Split:
    """The carved validation posts that are not in the run's own validation split."""
    used_ids = ids_within(carved, used, folder)
    rest = carved.data.filter(lambda row: str(row["id"]) not in used_ids)
    if len(rest) == 0:
        raise SystemExit(f"{folder}: its validation split is the whole carved validation: no held-out posts")
    return Split.of("held-out validation", rest)


def by_weight(weights, per_post_at, groups) -> dict:
    """Each weight's mean (points) and the grouped standard error of its gain over weight 1."""
    _, means, gain_se = train.best_lexical_weight(weights, per_post_at, ANCHOR, groups)
    return {"mean": means, "gain_se": gain_se}


def score_run(folder: Path, carved, weights, accelerator, metric, batch_size: int) -> dict:
    summary, model, tokenizer = load_run(folder)
    saved = summary["args"]
    config, k = model.config, max(K_VALUES)
    first, later = config.lexical_weight, config.lexical_later_weight
    used = run_splits(summary).validation
    splits = {"used": used, "held_out": held_out_posts(carved, used, folder)}

    def per_post(split, steps, measure, **weights_set):
        for name, value in weights_set.items():
            setattr(config, name, value)
        predictions = generate_and_score(accelerator, model, tokenizer, split, steps, batch_size, metric)[1]
        return per_post_scores(metric, labels(predictions), split.gold, k)[measure]

    row = {"run": folder.name, "dataset": corpus_name(saved), "weight": first, "later_weight": later,
           "posts": {name: len(split) for name, split in splits.items()},
           "groups": {name: len(set(split.groups)) for name, split in splits.items()}}
    for name, split in splits.items():
        row[f"{name}_P@1_by_weight"] = by_weight(
            weights, lambda w: per_post(split, 1, "P@1", lexical_weight=w), split.groups)
        if model.decodes_in_steps:
            row[f"{name}_R@{k}_by_later_weight"] = by_weight(
                weights, lambda w: per_post(split, saved["num_tags"], f"R@{k}", lexical_weight=first,
                                            lexical_later_weight=w), split.groups)
    return row


def markdown(rows: list[dict], weights) -> str:
    k = max(K_VALUES)
    header = "| run | measure | posts (groups) | " + " | ".join(f"{w:g}" for w in weights) + " |"
    lines = [header, "|---|---|---:|" + "---:|" * len(weights)]
    for r in rows:
        measures = [("P@1 by weight", "P@1_by_weight", "weight")]
        if f"used_R@{k}_by_later_weight" in r:
            measures.append((f"R@{k} by later weight", f"R@{k}_by_later_weight", "later_weight"))
        for label, key, chosen in measures:
            for split in ("used", "held_out"):
                cells = r[f"{split}_{key}"]["mean"]
                marked = [f"**{cells[w]:.2f}**" if w == r[chosen] else f"{cells[w]:.2f}" for w in weights]
                lines.append(f"| {r['run']} ({r['dataset']}) | {split.replace('_', '-')} {label} | "
                             f"{r['posts'][split]} ({r['groups'][split]}) | " + " | ".join(marked) + " |")
    return (f"Settings: machine={machine()}; each run's own checkpoint; its validation sample (used) and the carved "
            f"validation posts it never saw (held-out); bold: the weight the run chose on its sample; the test split "
            f"is not touched.\n\n" + "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    weights = sorted({*args.weights, ANCHOR})
    if any(w < 0 for w in weights):
        raise SystemExit(f"--weights must be 0 or above, got {min(weights):g}")
    accelerator, metric = Accelerator(cpu=True), load_tag_metric()
    carved = carved_validation(args.dataset, args.data_dir)
    return score_runs(args.runs, lambda folder: [score_run(folder, carved, weights, accelerator, metric,
                                                           args.batch_size)], Path(args.results),
                      lambda rows: markdown(rows, weights), lambda rows: {"weights": weights, "rows": rows})


if __name__ == "__main__":
    main()
