"""Where a generator's R@5 is made: for each ``train.py`` output folder, its validation and test splits scored as
the run decodes them (a generator greedily, step by step; a ranking model in one pass) and, for a generator (SOG,
AR), by its first step's ranking alone: one pass with no tag given, the expert's first-step offsets added, its top
tags. For each, P@1, R@5 and the hit rate at each position of the tags generated; for a generator, greedy's gain
over its first step's ranking, post by post, with its paired standard error.

    python -m benchmarks.first_step_ranking RUNS/sog_train.py_defaults__seed42 \\
        RUNS/br-ef_the_same_defaults_recipe_and_expert__seed42 --results benchmarks/results/first_step_ranking_cooking

What it tells: whether steps after the first, each given the tags chosen so far, add to a generator's R@5 over what
its first step already ranks (greedy above the first step's ranking: the paper's claim for conditioning, measured on
one checkpoint), or cost it (a wrong early tag leading the later steps astray: greedy below), and, next to a ranking
model's row, at which positions the two part (both decodings share the first tag, so the same P@1). Nothing is
chosen here; each run's own checkpoint, splits (rebuilt from its own arguments) and calibration are used as they
are, so the first-step ranking's scores are its own step's probabilities through the run's calibration.
"""

import argparse
from pathlib import Path

from accelerate import Accelerator

from benchmarks.common import GROUPED_MEASURES, REPO, machine, paired_gain, score_runs
from benchmarks.trained_runs import load_trained, run_splits
from evaluation import K_VALUES, generate_and_score, hits_by_position, labels, load_tag_metric, per_post_scores
from modeling_sog import SetDecoder, tag_probabilities


class FirstStepRanking(SetDecoder):
    """A ``SetDecoder`` whose step-by-step decoding stops at the first step: the step's top tags, as a ranking
    model's one pass gives them (``SetDecoder.ranked``)."""

    def greedy(self, step_logits, num_posts: int, offsets=None, probabilities=None) -> list[list[tuple]]:
        logits = step_logits(list(range(num_posts)), [[] for _ in range(num_posts)]).float()   # [posts, tags]
        if offsets is not None:
            logits = logits + offsets.at(1).to(logits.device).float()
        return self.ranked(tag_probabilities(logits, "softmax") if probabilities is None else probabilities(logits, 1))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="train.py output folders (train_summary.json, the saved model)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "first_step_ranking"))
    p.add_argument("--batch_size", type=int, default=64)
    return p.parse_args(argv)


def decodings(model) -> dict:
    """How each row of a run decodes: as trained, and for a generator its first step's ranking too."""
    own = {"greedy, step by step" if model.decodes_in_steps else "one pass": model.tag_set_decoder}
    return {**own, "first step's ranking": FirstStepRanking} if model.decodes_in_steps else own


def score_run(folder: Path, accelerator, metric, batch_size: int) -> list[dict]:
    """A run's rows, one per decoding; a generator's first-step row also holds greedy's gain over it, post by post
    (``common.paired_gain``): what the steps after the first, each given the tags so far, add."""
    summary, model, tokenizer = load_trained(folder)
    splits = run_splits(summary)
    depth, rows, per_post = max(K_VALUES), [], []
    for decoding, decoder in decodings(model).items():
        model.tag_set_decoder = decoder
        row, posts = {"run": folder.name, "model": model.display_name, "decoding": decoding}, {}
        for split in (splits.validation, splits.test):
            scores, predictions = generate_and_score(accelerator, model, tokenizer, split, depth, batch_size, metric)
            ranked = labels(predictions)
            row[split.name] = {"posts": len(split), "P@1": round(scores["precision@1"], 2),
                               f"R@{depth}": round(scores[f"recall@{depth}"], 2),
                               "hits_by_position": [round(h, 2) for h in hits_by_position(metric, ranked, split.gold,
                                                                                          depth)]}
            posts[split.name] = per_post_scores(metric, ranked, split.gold, depth)
        rows.append(row)
        per_post.append(posts)
    if model.decodes_in_steps:
        greedy, first = per_post
        for split in (splits.validation, splits.test):
            rows[1][split.name]["greedy_gain"] = paired_gain(first[split.name], greedy[split.name], split.groups)
    return rows


def markdown(rows: list[dict]) -> str:
    p, r = GROUPED_MEASURES
    lines = []
    for split in ("validation", "test"):
        lines += [f"**{split}**", "", f"| run | model | decoding | posts | {p} | {r} "
                  "| hit rate at positions 1 / 2 / 3 / 4 / 5 | greedy's gain over this row (± paired SE) |",
                  "|---|---|---|---:|---:|---:|---|---:|"]
        for row in rows:
            scores, gain = row[split], row[split].get("greedy_gain")
            gained = "" if gain is None else (f"{gain[p]:+.2f} (± {gain[p + '_se']:.2f}) / "
                                              f"{gain[r]:+.2f} (± {gain[r + '_se']:.2f})")
            lines.append(f"| {row['run']} | {row['model']} | {row['decoding']} | {scores['posts']} | "
                         f"{scores[p]:.2f} | {scores[r]:.2f} | "
                         + " / ".join(f"{h:.1f}" for h in scores["hits_by_position"]) + f" | {gained} |")
        lines.append("")
    return (f"Settings: machine={machine()}; each run's own checkpoint, splits and calibration; nothing chosen. "
            "A hit rate at position r is the share of posts whose r-th generated tag is gold. Greedy's gain over a "
            f"generator's first-step ranking is post by post ({p} / {r}; its standard error counts the posts of one "
            "group as one draw): under two of them, a tie.\n\n" + "\n".join(lines))


def main(argv=None):
    args = parse_args(argv)
    accelerator, metric = Accelerator(cpu=True), load_tag_metric()
    return score_runs(args.runs, lambda folder: score_run(folder, accelerator, metric, args.batch_size),
                      Path(args.results), markdown)


if __name__ == "__main__":
    main()
