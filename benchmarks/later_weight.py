"""The lexical expert's weight after the first tag, fitted on runs already trained: for each ``train.py`` output
folder of a generator (SOG, AR) with a frozen expert, the weight from the second step on is chosen on the run's
validation split by R@5, as ``train.py`` now does at its end (``fit_later_lexical_weight``), and the run's test split
is scored once with it, next to the run's own test scores (one weight at every step).

    python -m benchmarks.later_weight outputs/equal_cost/sog_train.py_defaults__seed42 [...] \
        --results benchmarks/results/later_weight

Why: the weight is chosen on the first step's P@1, and the later steps, which make the rest of the set, may want
another (on full cooking, validation R@5 rose from 77.3 at the P@1 weight 1 to 79.1 at weight 2). The first step
is untouched, so P@1 must not move; the script checks it. Each run's splits are rebuilt from its own arguments
(``train_summary.json``), so validation and test are the posts it was trained and scored with.
"""

import argparse
import json
from pathlib import Path

from accelerate import Accelerator
from transformers import AutoTokenizer

import train
from benchmarks.common import REPO, machine, percent_row
from corpora import Split, load_corpus
from evaluation import generate_and_score, load_tag_metric
from recipe import MODEL_CLASSES

SPLIT_ARGUMENTS = ("dataset", "data_dir", "seed", "validation_split_percentage", "max_train_samples",
                   "max_validation_samples", "max_eval_samples")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="train.py output folders (train_summary.json, the saved model)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "later_weight"))
    p.add_argument("--batch_size", type=int, default=64)
    return p.parse_args(argv)


def run_splits(summary: dict) -> tuple[Split, Split]:
    """The validation and test splits of a run, rebuilt from its own arguments."""
    saved = summary["args"]
    argv = ["--output_dir", "unused"]
    for name in SPLIT_ARGUMENTS:
        if saved.get(name) is not None:
            argv += [f"--{name}", str(saved[name])]
    args = train.parse_args(argv)
    _, validation, test, _ = train.splits_of(load_corpus(args.dataset, args.data_dir), args)
    return Split.of("validation", validation), Split.of("test", test)


def refit(folder: Path, accelerator, metric, batch_size: int) -> dict:
    summary = json.loads((folder / "train_summary.json").read_text())
    saved = summary["args"]
    model_class = MODEL_CLASSES[saved["model"]]
    if not model_class.decodes_in_steps:
        raise SystemExit(f"{folder}: a {saved['model']} model ranks in one pass: it has no later steps to weigh")
    model = model_class.from_pretrained(folder).eval()   # this checkout's code, not the folder's copy
    if model.lexical is None or model.config.lexical_mode == "joint":
        raise SystemExit(f"{folder}: lexical_mode {model.config.lexical_mode!r}: only a frozen expert (mix, prior) "
                         "has a weight to fit")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    validation, test = run_splits(summary)
    if len(test) != summary["test_posts"] or len(validation) != summary["validation_posts"]:
        raise SystemExit(f"{folder}: rebuilt splits have {len(validation)} validation / {len(test)} test posts, the "
                         f"run had {summary['validation_posts']} / {summary['test_posts']}")
    validation_after, _, by_weight = train.fit_later_lexical_weight(accelerator, model, tokenizer, validation, metric,
                                                                    saved["num_tags"], batch_size)
    test_after = generate_and_score(accelerator, model, tokenizer, test, saved["num_tags"], batch_size, metric)[0]
    before, after = percent_row(summary["test"]), percent_row(test_after)
    if abs(before["P@1"] - after["P@1"]) > 0.01:
        raise SystemExit(f"{folder}: test P@1 moved ({before['P@1']} -> {after['P@1']}): the first step changed")
    return {"run": folder.name, "dataset": "/".join(Path(saved["data_dir"] or saved["dataset"]).parts[-2:]),
            "test_posts": len(test), "weight": model.config.lexical_weight,
            "later_weight": model.config.lexical_later_weight, "validation_R@5_by_later_weight": by_weight,
            # the first step's weight is among those tried: later steps at it are the run as trained
            "validation_R@5_one_weight": by_weight[model.config.lexical_weight],
            "validation_R@5_fitted": round(validation_after["recall@5"], 2),
            "test_one_weight": before, "test_fitted": after}


def markdown(rows: list[dict]) -> str:
    lines = ["| run | dataset | test posts | weight | later weight | validation R@5: one weight / fitted | "
             "test P@1 | test R@3: one weight / fitted | test R@5: one weight / fitted | test P@5: one weight / fitted |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b, a = r["test_one_weight"], r["test_fitted"]
        lines.append(f"| {r['run']} | {r['dataset']} | {r['test_posts']} | {r['weight']:g} | {r['later_weight']:g} | "
                     f"{r['validation_R@5_one_weight']:.2f} / {r['validation_R@5_fitted']:.2f} | {a['P@1']:.2f} | "
                     f"{b['R@3']:.2f} / {a['R@3']:.2f} | {b['R@5']:.2f} / {a['R@5']:.2f} | "
                     f"{b['P@5']:.2f} / {a['P@5']:.2f} |")
    return (f"Settings: machine={machine()}; each run's own checkpoint, first-step weight and splits; the later weight "
            f"chosen on validation R@5, the test split scored once.\n\n" + "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    accelerator, metric = Accelerator(cpu=True), load_tag_metric()
    rows = []
    stem = Path(args.results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for folder in args.runs:
        rows.append(refit(Path(folder), accelerator, metric, args.batch_size))
        print(json.dumps(rows[-1]), flush=True)
        stem.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=1))
        stem.with_suffix(".md").write_text(markdown(rows))
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
