"""Why does SOG not beat BR-EF on our data? One change at a time from the paper-table setting.

    python -m benchmarks.sog_ablation                       # full debtags (apt lists), about an hour on 2 cores
    python -m benchmarks.sog_ablation --variants "BR-EF" "SOG, prior bias" --seeds 42    # some rows only

The suspects: the output bias (BR needed its prior, SOG started at zero), the tag embedding init, the [MASK]
head, the loss weighting, and the number of instances per epoch (SOG's epoch holds one instance per gold tag,
about 3.5x BR's steps). Every row shares the split, encoder, input length and batch size, and is trained once
per seed (``--seeds``); the best epoch is chosen on validation. SOG rows use the paper's attention layout.
To fit three seeds in about an hour the train sample is smaller than the paper table's (600 posts).
Writes benchmarks/results/sog_ablation.{json,md} after every row, so a stopped run keeps what it measured.
"""

import argparse
from pathlib import Path

from benchmarks.common import REPO, add_run_arguments, budget_arguments, measure_rows, prepare_corpus, \
    run_neural, write_results

SOG = ["--model", "sog", "--attention_layout", "paper"]
VARIANTS = {  # row name -> train.py arguments on top of the shared budget
    "SOG, zero bias (the paper's)": SOG + ["--output_bias", "zero"],
    "SOG, prior bias": SOG,
    "BR-EF": ["--model", "br"],
    "BR-EF, 4 epochs (SOG's steps)": ["--model", "br", "--num_train_epochs", "4"],
    "SOG, prior bias, 1 instance/post, 4 epochs (BR-EF 4 epochs' steps)": SOG + ["--instances_per_post", "one",
                                                                                  "--num_train_epochs", "4"],
    "SOG, prior bias, random tag init": SOG + ["--unit_init", "random"],
    "SOG, prior bias, plain head": SOG + ["--tag_head", "plain"],
    "SOG, prior bias, loss weighted by target count": SOG + ["--loss_weighting", "target_count"],
}
BUDGET = {"max_train_samples": 600, "max_validation_samples": 300, "max_eval_samples": 500, "max_length": 64,
          "num_train_epochs": 1, "batch_size": 32, "learning_rate": 1e-4}
COLUMNS = [("steps", "train_steps", ".0f"), ("best epoch", "best_epoch", ".1f"), ("train s", "train_seconds", ".0f")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, BUDGET)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--output_dir", default="outputs/sog_ablation")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "sog_ablation"),
                   help="path stem of the .json and .md written")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    _, corpus_dir, settings = prepare_corpus(args, output_dir)
    settings["epochs"] = args.num_train_epochs
    results = Path(args.results)

    budget = budget_arguments(args, args.num_train_epochs)
    rows = measure_rows(args.variants, args.seeds, lambda name, seed: {**run_neural(
        name, VARIANTS[name], args, corpus_dir, seed, output_dir, budget), "arguments": VARIANTS[name]},
                        on_row=lambda rows: write_results(results, settings, rows, COLUMNS, args.update))
    print("\n" + results.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
