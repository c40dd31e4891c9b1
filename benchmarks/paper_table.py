"""The paper's Table 2 on our data, side by side in one run: does SOG 1-to-M > SOG 1-to-1 > BR-EF > AR > frequency
hold, and early fusion > late fusion? With the tools practitioners use instead (TF-IDF + logistic regression,
Omikuji) on the same fused context.

    python -m benchmarks.paper_table                    # full debtags (apt lists), a CPU budget of about an hour
    python -m benchmarks.paper_table --device-scale     # the paper's setting (all posts, 384 units, 5 epochs), for a GPU
    python -m benchmarks.paper_table --dataset data/debtags-sample --max_train_samples 300 --seeds 1   # a quick look

Every model gets the same split, train sample, encoder, input length and epoch budget, and is trained once per
seed (``--seeds``, 3 by default); cells are mean ± standard deviation. The best epoch is chosen on a validation
split carved from train (``train.py``'s rule); the test split is scored once per run, on the chosen model.
The paper's baselines are as the paper defines them: 1-to-1 learns one fixed tag order per post (the corpus's),
BR-EF (softmax) is its cross-entropy ranking model; BR-EF (sigmoid) is our stronger variant.
Writes benchmarks/results/paper_table.{json,md,png}.
"""

import argparse
from pathlib import Path

from benchmarks.common import (CLASSICAL, REPO, add_run_arguments, budget_arguments, measure_rows,
                               prepare_corpus, run_classical, run_neural, write_results)
from evaluation import K_VALUES, load_tag_metric


NEURAL = {  # row name -> train.py arguments
    "SOG 1-to-M": ["--model", "sog", "--scheme", "1-to-M", "--attention_layout", "paper"],
    "SOG 1-to-1": ["--model", "sog", "--scheme", "1-to-1", "--attention_layout", "paper"],
    "SOG 1-to-M, one-pass layout": ["--model", "sog", "--scheme", "1-to-M", "--attention_layout", "one-pass"],
    "BR-EF (softmax, the paper's)": ["--model", "br", "--br_loss", "softmax"],
    "BR-EF (sigmoid)": ["--model", "br", "--br_loss", "sigmoid"],
    "BR-LF (sigmoid)": ["--model", "br-lf"],
    "AR 1-to-M": ["--model", "ar", "--scheme", "1-to-M"],
    "AR 1-to-1": ["--model", "ar", "--scheme", "1-to-1"],
}
CPU_BUDGET = {"max_train_samples": 1000, "max_validation_samples": 300, "max_eval_samples": 500, "max_length": 64,
              "num_train_epochs": 1, "batch_size": 32, "learning_rate": 1e-4}
DEVICE_SCALE = {"max_train_samples": None, "max_validation_samples": None, "max_eval_samples": None,
                "max_length": 384, "num_train_epochs": 5, "batch_size": 64, "learning_rate": 5e-5}
COLUMNS = [("best epoch", "best_epoch", ".1f"), ("train s", "train_seconds", ".0f"),
           ("train posts/s", "train_posts_per_s", ".1f"), ("generate posts/s", "generate_posts_per_s", ".1f")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, {name: None for name in CPU_BUDGET})
    p.add_argument("--device-scale", dest="device_scale", action="store_true", help="the paper's full setting")
    p.add_argument("--models", nargs="+", choices=list(NEURAL) + list(CLASSICAL), help="a subset of the rows")
    p.add_argument("--output_dir", default="outputs/paper_table")
    p.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--results_name", help="file stem (default: paper_table, or paper_table_device)")
    args = p.parse_args(argv)
    for name, value in (DEVICE_SCALE if args.device_scale else CPU_BUDGET).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        elif name.startswith("max_") and getattr(args, name) == 0:
            setattr(args, name, None)   # 0: all posts
    return args


def bar_chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    width = 0.8 / len(rows)
    colours = plt.get_cmap("tab20")  # the default cycle repeats after 10 rows
    for ax, kind in zip(axes, ("P", "R")):
        for i, row in enumerate(rows):
            ax.bar([k + (i - len(rows) / 2) * width for k in range(len(K_VALUES))],
                   [row[f"{kind}@{k}"] for k in K_VALUES], width, label=row["model"],
                   yerr=[row.get(f"{kind}@{k}_std", 0.0) for k in K_VALUES], capsize=2, color=colours(i % 20))
        ax.set_xticks(range(len(K_VALUES)), [f"{kind}@{k}" for k in K_VALUES])
        ax.set_ylabel("% (mean over seeds, error bar: one standard deviation)")
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    figure.suptitle("Tag recommendation on debtags: precision and recall at K")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    args = parse_args(argv)
    wanted = args.models or list(CLASSICAL[:1]) + list(NEURAL) + list(CLASSICAL[1:])
    output_dir = Path(args.output_dir)
    splits, corpus_dir, settings = prepare_corpus(args, output_dir)
    settings["epochs"] = args.num_train_epochs
    metric = load_tag_metric()
    budget = budget_arguments(args, args.num_train_epochs)
    rows = measure_rows(wanted, args.seeds, lambda name, seed: run_neural(
        name, NEURAL[name], args, corpus_dir, seed, output_dir, budget) if name in NEURAL
        else run_classical(name, splits, metric, seed))

    results = Path(args.results_dir)
    stem = results / (args.results_name or ("paper_table_device" if args.device_scale else "paper_table"))
    rows = write_results(stem, settings, rows, COLUMNS, args.update)
    bar_chart(rows, stem.with_suffix(".png"))
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
