"""Why does SOG not beat BR-EF on our data? One change at a time from the paper-table setting.

    python benchmarks/sog_ablation.py                       # full debtags (apt lists), about an hour on 2 cores
    python benchmarks/sog_ablation.py --variants "BR-EF" "SOG, prior bias"    # some rows only

The suspects the paper-table run left: the output bias (BR needed its prior, SOG starts at zero), the
learning rate, the tag embedding init, the [MASK] head, and the number of instances per epoch (SOG's
epoch holds one instance per gold tag, about 3.5x BR's steps). Every row shares the split, encoder, seed,
input length and batch size of benchmarks/paper_table.py's CPU budget; the test split is larger (500 posts)
so that differences of a few points are not all noise. Each row names what differs from the first.
Writes benchmarks/results/sog_ablation.{json,md} after every row, so a stopped run keeps what it measured.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_table import CPU_BUDGET, METRICS, REPO, merged_rows, prepare_corpus, run_neural  # noqa: E402

VARIANTS = {  # row name -> train.py arguments on top of the shared budget
    "SOG, zero bias (paper table)": ["--model", "sog", "--output_bias", "zero"],
    "SOG, prior bias": ["--model", "sog"],
    "BR-EF": ["--model", "br"],
    "BR-EF, 4 epochs (SOG's steps)": ["--model", "br", "--num_train_epochs", "4"],
    "SOG, prior bias, 1 instance/post, 4 epochs (BR-EF 4 epochs' steps)": ["--model", "sog", "--instances_per_post", "one",
                                                                     "--num_train_epochs", "4"],
    "SOG, prior bias, lr 3e-4": ["--model", "sog", "--learning_rate", "3e-4"],
    "SOG, prior bias, random tag init": ["--model", "sog", "--unit_init", "random"],
    "SOG, prior bias, plain head": ["--model", "sog", "--tag_head", "plain"],
    "SOG, prior bias, loss weighted by target count": ["--model", "sog", "--loss_weighting", "target_count"],
    "SOG, prior bias, 2 epochs": ["--model", "sog", "--num_train_epochs", "2"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="debtags")
    p.add_argument("--data_dir")
    p.add_argument("--model_name_or_path")
    for name, value in CPU_BUDGET.items():
        p.add_argument(f"--{name}", type=type(value), default=500 if name == "max_eval_samples" else value)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--output_dir", default="outputs/sog_ablation")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "sog_ablation"),
                   help="path stem of the .json and .md written")
    p.add_argument("--update", action="store_true",
                   help="keep the other rows of the existing results (same settings required)")
    return p.parse_args(argv)


def p_at_1_standard_error(p_at_1: float, test_posts: int) -> float:
    """Binomial standard error of P@1 (in points): how far apart two rows must be to mean something."""
    share = p_at_1 / 100
    return 100 * math.sqrt(share * (1 - share) / test_posts)


def markdown(rows, settings) -> str:
    lines = ["| variant | " + " | ".join(METRICS) + " | steps | best epoch | train s |",
             "|---" + "|---:" * (len(METRICS) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[m]:.2f}" for m in METRICS) +
                     f" | {r['train_steps']} | {r['best_epoch']} | {r['train_seconds']:.0f} |")
    error = p_at_1_standard_error(80, settings["test_posts"])
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return (f"Settings: {described}\n\nOne standard error of P@1 near 80 on {settings['test_posts']} test posts: "
            f"{error:.1f} points.\n\n" + "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    _, corpus_dir, settings = prepare_corpus(args)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    new_rows = []
    for name in args.variants:
        start = time.perf_counter()
        new_rows.append({**run_neural(name, VARIANTS[name], args, corpus_dir), "arguments": VARIANTS[name]})
        print(f"== {name}: P@1 {new_rows[-1]['P@1']:.2f} R@5 {new_rows[-1]['R@5']:.2f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        rows = merged_rows(results.with_suffix(".json"), settings, new_rows) if args.update else new_rows
        results.with_suffix(".json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
        results.with_suffix(".md").write_text(markdown(rows, settings))
    print("\n" + markdown(rows, settings))
    return rows


if __name__ == "__main__":
    main()
