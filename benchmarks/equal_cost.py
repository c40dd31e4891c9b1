"""Quality at equal cost: BR-EF, SOG (paper layout) and SOG (one-pass layout) each trained for the same wall-clock
budget on this machine, on the full debtags corpus, next to Omikuji and TF-IDF + LR on the same split.

    python -m benchmarks.equal_cost                              # 30 minutes of training per neural model
    python -m benchmarks.equal_cost --max_train_minutes 2 --max_train_samples 2000 --max_eval_samples 300   # a look

Split: the builder's source-package train/test split, all test posts; the validation split is carved from
train by group hash (``train.py``'s rule) and sampled. Each neural model trains until ``--max_train_minutes`` of
training time (evaluation excluded) runs out, ending after that step, with validation scored at each epoch end
and at the end; the test split is scored once, on the epoch chosen on validation. The models run one after the
other, alone on the machine. Writes benchmarks/results/equal_cost.{json,md}.
"""

import argparse
from pathlib import Path

from benchmarks.common import CLASSICAL, REPO, add_run_arguments, budget_arguments, markdown, measure_rows, prepare_corpus, \
    run_classical, run_neural, write_results
from evaluation import load_tag_metric


NEURAL = {
    "BR-EF (sigmoid)": ["--model", "br"],
    "SOG 1-to-M, paper layout": ["--model", "sog", "--attention_layout", "paper"],
    "SOG 1-to-M, one-pass layout": ["--model", "sog", "--attention_layout", "one-pass"],
    # A batch of 32 posts is about 118 instances; 8 posts (about 30) match the paper layout's 32 instances a step.
    "SOG 1-to-M, one-pass layout, 8 posts a batch": ["--model", "sog", "--attention_layout", "one-pass",
                                                      "--per_device_train_batch_size", "8"],
}
BUDGET = {"max_train_minutes": 30.0, "max_train_samples": None, "max_validation_samples": 500,
          "max_eval_samples": None, "max_length": 64, "batch_size": 32, "learning_rate": 1e-4}
COLUMNS = [("train min", "train_minutes", ".1f"), ("epochs", "epochs_trained", ".2f"),
           ("steps", "train_steps", ".0f"), ("best epoch", "best_epoch", ".0f"),
           ("generate posts/s", "generate_posts_per_s", ".1f")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, BUDGET)
    p.set_defaults(seeds=[42])
    p.add_argument("--models", nargs="+", choices=list(NEURAL) + list(CLASSICAL[1:]),
                   default=list(NEURAL) + list(CLASSICAL[1:]))
    p.add_argument("--output_dir", default="outputs/equal_cost")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "equal_cost"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    splits, corpus_dir, settings = prepare_corpus(args, output_dir)
    settings["max_train_minutes"] = args.max_train_minutes
    # Epochs are not the limit here: the clock is.
    budget = budget_arguments(args, 100) + ["--max_train_minutes", str(args.max_train_minutes)]
    metric = load_tag_metric()

    def run_one(name, seed):
        if name in NEURAL:
            row = run_neural(name, NEURAL[name], args, corpus_dir, seed, output_dir, budget)
        else:
            row = run_classical(name, splits, metric, seed)
        return {**row, "train_minutes": round(row["train_seconds"] / 60, 1)}

    stem = Path(args.results)
    rows = measure_rows(args.models, args.seeds, run_one,
                        on_row=lambda rows: write_results(stem, settings, rows, markdown(rows, settings, COLUMNS)))
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
