"""What each piece of the small-budget recipe buys, alone and together: one seed each, the same wall-clock training
budget for every row, on a slice of a corpus. The screen that chose train.py's defaults.

    python -m benchmarks.recipe_ablation --dataset stackexchange --data_dir data/stackexchange/cooking.csv.zip \
        --results benchmarks/results/recipe_ablation_cooking
    python -m benchmarks.recipe_ablation --dataset debtags --results benchmarks/results/recipe_ablation_debtags
    python -m benchmarks.recipe_ablation --max_train_minutes 1 --max_train_samples 500 --variants "SOG, as before"

The pieces (train.py flags): the recipe (``--head_learning_rate``, warmup and linear decay over the time budget,
weight decay off biases/LayerNorm/embeddings, evaluations spread over the budget), the attention layout, the lexical
expert (``--lexical_mode mix|prior|joint``) and the context length (``--max_length`` 64 / 128 / 256). Every row
trains for ``--max_train_minutes`` (the expert's fit included), chooses its checkpoint (and the expert's weight)
on validation and is scored once on test. Writes ``--results``.{json,md} after every row.
"""

import argparse
from pathlib import Path

from benchmarks.common import (CLASSICAL, REPO, add_run_arguments, budget_arguments, measure_rows,
                               prepare_corpus, run_classical, run_neural, write_results)
from evaluation import load_tag_metric

PAPER = ["--model", "sog", "--attention_layout", "paper"]
ONE_PASS = ["--model", "sog", "--attention_layout", "one-pass"]
RECIPE = ["--head_learning_rate", "1e-3", "--lr_scheduler_type", "linear", "--warmup_ratio", "0.05",
          "--weight_decay", "0.01", "--evaluations", "3", "--lexical_mode", "none"]
VARIANTS = {  # row name -> train.py arguments on top of the shared budget (64 units, batch 32, lr 1e-4, constant)
    "SOG, as before (paper layout)": PAPER,
    "SOG + recipe": PAPER + RECIPE,
    "SOG + expert (mix), no recipe": PAPER + ["--lexical_mode", "mix"],
    "SOG + recipe, one-pass": ONE_PASS + RECIPE,
    "SOG + recipe + mix": PAPER + RECIPE + ["--lexical_mode", "mix"],
    "SOG + recipe + mix, one-pass": ONE_PASS + RECIPE + ["--lexical_mode", "mix"],
    "SOG + recipe + prior, one-pass": ONE_PASS + RECIPE + ["--lexical_mode", "prior"],
    "SOG + recipe + joint, one-pass": ONE_PASS + RECIPE + ["--lexical_mode", "joint", "--lexical_learning_rate",
                                                           "3e-3", "--lexical_weight_decay", "0.01"],
    "SOG + recipe + mix, one-pass, 128 units": ONE_PASS + RECIPE + ["--lexical_mode", "mix", "--max_length", "128"],
    "SOG + recipe + mix, one-pass, 256 units": ONE_PASS + RECIPE + ["--lexical_mode", "mix", "--max_length", "256"],
}
BUDGET = {"max_train_minutes": 8.0, "max_train_samples": 5000, "max_validation_samples": 300,
          "max_eval_samples": 1000, "max_length": 64, "batch_size": 32, "learning_rate": 1e-4}
COLUMNS = [("train min", "train_minutes", ".1f"), ("epochs", "epochs_trained", ".2f"), ("steps", "train_steps", ".0f"),
           ("best epoch", "best_epoch", ".2f"), ("expert weight", "lexical_weight", ".2f"),
           ("generate posts/s", "generate_posts_per_s", ".1f")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, BUDGET)
    p.set_defaults(seeds=[42])
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS) + list(CLASSICAL[1:]),
                   default=list(VARIANTS) + list(CLASSICAL[1:]))
    p.add_argument("--output_dir", default="outputs/recipe_ablation")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "recipe_ablation"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    splits, corpus_dir, settings = prepare_corpus(args, output_dir)
    settings["max_train_minutes"] = args.max_train_minutes
    budget = budget_arguments(args, 100) + ["--max_train_minutes", str(args.max_train_minutes)]
    metric = load_tag_metric()

    def run_one(name, seed):
        if name in VARIANTS:
            row = {**run_neural(name, VARIANTS[name], args, corpus_dir, seed, output_dir, budget),
                   "arguments": VARIANTS[name]}
        else:
            row = run_classical(name, splits, metric, seed)
        return {**row, "train_minutes": round(row["train_seconds"] / 60, 1)}

    stem = Path(args.results)
    rows = measure_rows(args.variants, args.seeds, run_one,
                        on_row=lambda rows: write_results(stem, settings, rows, COLUMNS, args.update))
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
