"""Two trained runs on the same test posts, post by post. For each pair ``BEFORE AFTER`` of ``train.py`` run folders,
AFTER's gain over BEFORE in test P@1 and R@5, read from the test predictions each run wrote (``eval_predictions.jsonl``),
with the standard error of the post-by-post difference counting the posts of one group as one draw (a Debian source
package on debtags). Where the two runs agree on most posts that error is far smaller than either run's own, so a
gain can stand beyond two of them where the two rows of an equal-cost table, each with its own error bar, tie.

    python -m benchmarks.paired_runs RUNS/sog_seed42 RUNS/sog_bf16_seed42 RUNS/sog_seed43 RUNS/sog_bf16_seed43 \\
        --results benchmarks/results/paired_runs_debtags_bf16

Pairs trained with the same seed share the data order and the first weights, which is what makes them a pair. Both
runs of a pair must have been scored on the same test split (refused otherwise, naming the run). No model is loaded
and nothing is scored again: a pair costs the reading of its corpus.
"""

import argparse
import statistics
from pathlib import Path

from benchmarks.common import GROUPED_MEASURES, REPO, machine, paired_gain, run_test_predictions, save_results
from benchmarks.trained_runs import run_splits, run_summary
from evaluation import K_VALUES, labels, load_tag_metric, per_post_scores
from train import TEST_PREDICTIONS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="BEFORE AFTER", help="train.py output folders, two by two")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "paired_runs"))
    args = p.parse_args(argv)
    if len(args.runs) % 2:
        p.error(f"runs: {len(args.runs)} folders given; they are read as pairs (BEFORE AFTER), so give an even number")
    return args


def compare(before: Path, after: Path, metric) -> dict:
    """AFTER's test scores, BEFORE's, and AFTER's gain (``common.paired_gain``) on BEFORE's test split."""
    test = run_splits(run_summary(before)).test
    per_post = [per_post_scores(metric, labels(line["predicted"] for line in run_test_predictions(
        folder / TEST_PREDICTIONS, test.data)), test.gold, max(K_VALUES)) for folder in (before, after)]
    scores = [{m: round(100 * statistics.fmean(run[m]), 2) for m in GROUPED_MEASURES} for run in per_post]
    return {"before": before.name, "after": after.name, "test_posts": len(test), "test_before": scores[0],
            "test_after": scores[1], "test_gain": paired_gain(*per_post, test.groups)}


def markdown(rows: list[dict]) -> str:
    p, r = GROUPED_MEASURES
    lines = [f"| before | after | test {p}: before / after | test {r}: before / after | gain {p} (± paired SE) "
             f"| gain {r} (± paired SE) |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        b, a, gain = row["test_before"], row["test_after"], row["test_gain"]
        lines.append(f"| {row['before']} | {row['after']} | {b[p]:.2f} / {a[p]:.2f} | {b[r]:.2f} / {a[r]:.2f} | "
                     f"{gain[p]:+.2f} (± {gain[p + '_se']:.2f}) | {gain[r]:+.2f} (± {gain[r + '_se']:.2f}) |")
    if len(rows) > 1:
        mean = {m: statistics.fmean(row["test_gain"][m] for row in rows) for m in GROUPED_MEASURES}
        lines.append(f"| mean of {len(rows)} pairs | | | | {mean[p]:+.2f} | {mean[r]:+.2f} |")
    return (f"Settings: machine={machine()}; each pair's test split rebuilt from BEFORE's own arguments, both runs' "
            f"test predictions as they wrote them; the paired standard error counts the posts of one group as one "
            f"draw. A gain under two of them is a tie. The pairs' mean has no error bar: they share the test posts, "
            f"so they are not independent draws.\n\n" + "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    metric = load_tag_metric()
    rows = [compare(Path(before), Path(after), metric) for before, after in zip(args.runs[::2], args.runs[1::2])]
    print(save_results(Path(args.results), {"rows": rows}, markdown(rows)))
    return rows


if __name__ == "__main__":
    main()
