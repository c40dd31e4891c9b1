"""The paper's Table 2 on our data, side by side in one run: does SOG 1-to-M > SOG 1-to-1 > BR-EF > AR > frequency
hold, and early fusion > late fusion? With the tools practitioners use instead (TF-IDF + logistic regression,
Omikuji) on the same fused context.

    python benchmarks/paper_table.py                    # full debtags (apt lists), a CPU budget of about an hour
    python benchmarks/paper_table.py --device-scale     # the paper's setting (all posts, 384 units, 5 epochs), for a GPU
    python benchmarks/paper_table.py --dataset data/debtags-sample --max_train_samples 300   # a quick look

Every model gets the same split, train subset, encoder, seed, input length and epoch budget. Writes
benchmarks/results/paper_table.{json,md,png}. Scores in %; the neural rows are the best epoch on the test posts.
"""

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import train  # noqa: E402
from baselines import FrequencyBaseline, OmikujiBaseline, TfidfLogisticBaseline  # noqa: E402
from data_builders.__main__ import write_folder  # noqa: E402

NEURAL = {  # row name -> train.py arguments
    "SOG 1-to-M": ["--model", "sog", "--scheme", "1-to-M"],
    "SOG 1-to-1": ["--model", "sog", "--scheme", "1-to-1"],
    "BR-EF": ["--model", "br"],
    "BR-LF": ["--model", "br-lf"],
    "AR 1-to-M": ["--model", "ar", "--scheme", "1-to-M"],
    "AR 1-to-1": ["--model", "ar", "--scheme", "1-to-1"],
}
CLASSICAL = ("Frequency", "TF-IDF + LR", "Omikuji")
CPU_BUDGET = {"max_train_samples": 1500, "max_eval_samples": 300, "max_length": 64, "num_train_epochs": 1,
              "batch_size": 32, "learning_rate": 1e-4}
DEVICE_SCALE = {"max_train_samples": None, "max_eval_samples": None, "max_length": 384, "num_train_epochs": 5,
                "batch_size": 64, "learning_rate": 5e-5}
METRICS = [f"{m}@{k}" for m in ("P", "R") for k in train.K_VALUES]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="debtags", help="as train.py --dataset (default: the full debtags corpus)")
    p.add_argument("--data_dir")
    p.add_argument("--model_name_or_path", help="encoder for every neural model (default: offline MiniLM)")
    p.add_argument("--device-scale", dest="device_scale", action="store_true", help="the paper's full setting")
    for name, value in CPU_BUDGET.items():
        p.add_argument(f"--{name}", type=type(value), default=None,
                       help=f"CPU budget default: {value}" + (" (0: all)" if name.startswith("max_") else ""))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--models", nargs="+", choices=list(NEURAL) + list(CLASSICAL), help="a subset of the rows")
    p.add_argument("--output_dir", default="outputs/paper_table")
    p.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--results_name", help="file stem (default: paper_table, or paper_table_device)")
    p.add_argument("--update", action="store_true",
                   help="replace only the rows run now in the existing results (same settings required)")
    args = p.parse_args(argv)
    budget = DEVICE_SCALE if args.device_scale else CPU_BUDGET
    for name, value in budget.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def percent_row(scores: dict) -> dict:
    return {f"{m}@{k}": round(scores[f"{'precision' if m == 'P' else 'recall'}@{k}"], 2)
            for m in ("P", "R") for k in train.K_VALUES}


def run_neural(name, extra, args, corpus_dir) -> dict:
    """Train one model with the shared budget; ``extra`` train.py arguments come last, so they may override it."""
    output = Path(args.output_dir) / re.sub(r"[^\w.-]+", "_", name).strip("_").lower()
    argv = ["--dataset", str(corpus_dir), "--max_length", str(args.max_length),
            "--num_train_epochs", str(args.num_train_epochs), "--per_device_train_batch_size", str(args.batch_size),
            "--per_device_eval_batch_size", "64", "--learning_rate", str(args.learning_rate), "--seed", str(args.seed),
            "--output_dir", str(output), "--report_to", "none"]
    if args.model_name_or_path:
        argv += ["--model_name_or_path", args.model_name_or_path]
    summary = train.main(argv + list(extra))
    best = max(summary["history"], key=lambda row: row["precision@1"])
    instances = summary["instances_per_epoch"] * len(summary["history"])
    return {"model": name, **percent_row(best), "best_epoch": best["epoch"], "train_steps": summary["completed_steps"],
            "train_seconds": round(summary["train_seconds"], 1),
            "train_instances_per_s": round(instances / summary["train_seconds"], 2),
            "generate_posts_per_s": round(best["n"] / best["generate_seconds"], 2)}


def run_classical(name, train_posts, train_tags, test_posts, test_tags, metric) -> dict:
    score = lambda predictions, references: train.score(metric, predictions, references)
    start = time.perf_counter()
    if name == "Frequency":
        model = FrequencyBaseline().fit(train_tags)
        fitted = time.perf_counter()
        predictions = model.predict(len(test_posts), max(train.K_VALUES))
    else:
        model = TfidfLogisticBaseline().fit(train_posts, train_tags, score) if name == "TF-IDF + LR" else \
            OmikujiBaseline().fit(train_posts, train_tags)
        fitted = time.perf_counter()
        predictions = model.predict(test_posts, max(train.K_VALUES))
    done = time.perf_counter()
    row = {"model": name, **percent_row(score(predictions, test_tags)), "train_seconds": round(fitted - start, 1),
           "train_instances_per_s": round(len(train_posts) / max(fitted - start, 1e-9), 2),
           "generate_posts_per_s": round(len(test_posts) / max(done - fitted, 1e-9), 2)}
    if name == "TF-IDF + LR":
        row["chosen_C"] = model.c
    return row


def merged_rows(path: Path, settings: dict, new_rows: list[dict]) -> list[dict]:
    """The rows of an earlier run with those of this run swapped in (appended when new)."""
    earlier = json.loads(path.read_text())
    differing = {k for k in settings if k != "machine" and earlier["settings"].get(k) != settings[k]}
    if differing:
        raise ValueError(f"--update: {path} was made with other settings ({sorted(differing)})")
    fresh = {row["model"]: row for row in new_rows}
    rows = [fresh.pop(row["model"], row) for row in earlier["rows"]]
    return rows + list(fresh.values())


def markdown(rows, settings) -> str:
    lines = ["| model | " + " | ".join(METRICS) + " | train s | train inst/s | generate posts/s |",
             "|---" + "|---:" * (len(METRICS) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[m]:.2f}" for m in METRICS) +
                     f" | {r['train_seconds']:.0f} | {r['train_instances_per_s']:.1f} | {r['generate_posts_per_s']:.1f} |")
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"Settings: {described}\n\n" + "\n".join(lines) + "\n"


def bar_chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    width = 0.8 / len(rows)
    for ax, kind in zip(axes, ("P", "R")):
        for i, row in enumerate(rows):
            ax.bar([k + (i - len(rows) / 2) * width for k in range(len(train.K_VALUES))],
                   [row[f"{kind}@{k}"] for k in train.K_VALUES], width, label=row["model"])
        ax.set_xticks(range(len(train.K_VALUES)), [f"{kind}@{k}" for k in train.K_VALUES])
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left")
    figure.suptitle("Tag recommendation on debtags: precision and recall at K")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def prepare_corpus(args):
    """The split every model of a run shares, written as a folder train.py reads; and the run's settings."""
    corpus = train.load_corpus(args.dataset, args.data_dir)
    corpus["train"] = train.subset(corpus["train"], args.max_train_samples, args.seed)
    corpus["test"] = train.subset(corpus["test"], args.max_eval_samples, args.seed)
    corpus_dir = Path(args.output_dir) / "corpus"
    write_folder(corpus, str(corpus_dir), "---\nconfigs:\n- config_name: default\n  data_files:\n"
                 "  - split: train\n    path: data/train-*\n  - split: test\n    path: data/test-*\n---\n")
    settings = {"dataset": args.dataset, "train_posts": len(corpus["train"]), "test_posts": len(corpus["test"]),
                "encoder": args.model_name_or_path or "all-MiniLM-L6-v2 (offline)", "max_length": args.max_length,
                "epochs": args.num_train_epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "seed": args.seed, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                                             f"{'cuda' if torch.cuda.is_available() else 'cpu'}"}
    print("settings: " + json.dumps(settings))
    return corpus, corpus_dir, settings


def main(argv=None):
    args = parse_args(argv)
    wanted = args.models or list(CLASSICAL[:1]) + list(NEURAL) + list(CLASSICAL[1:])
    corpus, corpus_dir, settings = prepare_corpus(args)

    train_posts, train_tags = train.posts_of(corpus["train"]), [list(t) for t in corpus["train"]["tags"]]
    test_posts, test_tags = train.posts_of(corpus["test"]), [list(t) for t in corpus["test"]["tags"]]
    metric = train.load_tag_metric()
    rows = []
    for name in wanted:
        start = time.perf_counter()
        row = run_neural(name, NEURAL[name], args, corpus_dir) if name in NEURAL else \
            run_classical(name, train_posts, train_tags, test_posts, test_tags, metric)
        rows.append(row)
        print(f"== {name}: P@1 {row['P@1']:.2f} R@5 {row['R@5']:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)

    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    stem = args.results_name or ("paper_table_device" if args.device_scale else "paper_table")
    if args.update:
        rows = merged_rows(results / f"{stem}.json", settings, rows)
    (results / f"{stem}.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    table = markdown(rows, settings)
    (results / f"{stem}.md").write_text(table)
    bar_chart(rows, results / f"{stem}.png")
    print("\n" + table)
    return rows


if __name__ == "__main__":
    main()
