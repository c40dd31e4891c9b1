"""The lexical expert's weights fitted again, by this checkout's ``train.py``, on runs already trained: for each
``train.py`` output folder of a model with a frozen expert (mix, prior), the first step's weight is chosen on the
run's validation P@1 (``train.fit_lexical_weight``) and, for generators (SOG, AR), the later steps' weight on its
validation R@5 (``train.fit_later_lexical_weight``), as ``train.py`` does; the run's test split is scored once
with them, next to the run's own test scores, and compared with the run's own test predictions post by post (the
gain's standard error is then that of a paired difference).

    python -m benchmarks.expert_weights outputs/equal_cost/sog_train.py_defaults__seed42 [...] \
        --results benchmarks/results/expert_weights
    python -m benchmarks.expert_weights RUN... --dataset debtags    # later weight on every carved validation post

With ``--lexical_units words`` (or ``both``, ``pieces``), a mix run's expert is fitted again first, reading those
units as ``train.py`` fits it (vocabulary, idf and weights on the run's own train split, C on the posts its first
weight reads): a mix run's encoder never met its expert while training, so the encoder with the new expert is what
``train.py --lexical_units words`` would train, up to which evaluation's checkpoint it keeps (chosen with the expert
mixed in).

With ``--dataset``/``--data_dir`` (the corpus the benchmark that trained the runs read), a run trained on a sample
of the carved validation posts is refitted as ``train.py --validation_sample_while_training`` would have fitted
it: the first step's weight on its own sample, the later steps' weight (and the validation scores) on every carved
validation post; a run whose validation posts are not all in that corpus's carved validation is refused.

What it measures: a change in how the weights are chosen, on the same checkpoints (each run's own chosen
checkpoint: a summary keeps only that one's weights, so whether the new rule would have chosen another evaluation
is not measured). Each run's splits are rebuilt from its own arguments (``train_summary.json``), so validation and
test are the posts it was trained and scored with; the test errors count the posts of one group as one draw.
"""

import argparse
from pathlib import Path

from accelerate import Accelerator

import train
from benchmarks.common import (REPO, machine, paired_gain, percent_row, run_test_predictions, score_runs,
                               test_group_statistics)
from benchmarks.trained_runs import (RunSplits, carved_validation, corpus_name, ids_within, load_run, run_args,
                                     run_splits)
from configuration_sog import LEXICAL_UNITS
from corpora import Split
from evaluation import K_VALUES, generate_and_score, labels, load_tag_metric, per_post_scores


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="train.py output folders (train_summary.json, the saved model)")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "expert_weights"))
    p.add_argument("--dataset", help="the corpus the runs' benchmark read, as train.py --dataset: fit the later "
                   "steps' weight on its whole carved validation (default: on each run's own validation)")
    p.add_argument("--data_dir")
    p.add_argument("--lexical_units", choices=("as trained",) + LEXICAL_UNITS, default="as trained",
                   help="fit each (mix) run's expert again, reading these units as train.py --lexical_units does, "
                   "before its weights (default: keep the run's own expert)")
    p.add_argument("--batch_size", type=int, default=64)
    return p.parse_args(argv)


def refit_reading(units: str, folder: Path, summary: dict, model, tokenizer, splits: RunSplits, accelerator) -> dict:
    """Replace a mix run's expert with one that reads ``units``, fitted as ``train.py --lexical_units UNITS`` fits
    it (``train.word_vocabulary``, ``train.prepare_lexical_expert``); returns its report."""
    if model.config.lexical_mode != "mix":
        raise SystemExit(f"{folder}: lexical_mode {model.config.lexical_mode!r}: only a mix run's encoder trained "
                         "without its expert, so only there can another expert stand in")
    args = argparse.Namespace(**{**vars(run_args(summary)), "lexical_units": units})
    words, vocabulary = train.word_vocabulary(args, splits.train, accelerator)
    model.config.lexical_units, model.config.lexical_words = units, words
    model.new_lexical_expert()                           # one row per unit it reads, fitted below
    training = train.TrainingData.encode(args, accelerator, model, tokenizer, splits.train, model.config.tag_names)
    _, expert, seconds = train.prepare_lexical_expert(args, model, tokenizer, training, splits.sample, print,
                                                      vocabulary)
    return {**expert, "seconds": round(seconds, 1)}


def sample_posts(record: dict) -> int:
    """The validation posts a run (its summary) or a refitted row read while training: all of them where it
    records no sample (runs made before train.py read one)."""
    return record.get("validation_sample_posts", record["validation_posts"])


def refit(folder: Path, accelerator, metric, batch_size: int, carved: Split | None = None,
          lexical_units: str = "as trained") -> dict:
    summary, model, tokenizer = load_run(folder)
    saved = summary["args"]
    splits = run_splits(summary)
    validation, sample, test = splits.validation, splits.sample, splits.test
    if (len(test), len(validation), len(sample)) != (summary["test_posts"], summary["validation_posts"],
                                                     sample_posts(summary)):
        raise SystemExit(f"{folder}: rebuilt splits have {len(validation)} validation ({len(sample)} read while "
                         f"training) / {len(test)} test posts, the run had {summary['validation_posts']} "
                         f"({sample_posts(summary)}) / {summary['test_posts']}")
    if carved is not None:
        ids_within(carved, validation, folder)
        validation = carved
    before = {"weight": model.config.lexical_weight, "later_weight": model.config.lexical_later_weight}
    expert = (None if lexical_units == "as trained" else
              refit_reading(lexical_units, folder, summary, model, tokenizer, splits, accelerator))
    by_weight, gain_se = train.fit_lexical_weight(accelerator, model, tokenizer, sample, metric, batch_size)
    row = {"run": folder.name, "dataset": corpus_name(saved),
           "validation_posts": len(validation), "validation_groups": len(set(validation.groups)),
           "validation_sample_posts": len(sample),
           "test_posts": len(test), "weight_before": before["weight"], "weight": model.config.lexical_weight,
           "validation_P@1_by_weight": by_weight, "validation_P@1_gain_se_by_weight": gain_se,
           **({"expert": expert} if expert else {})}
    if model.decodes_in_steps:
        _, _, by_later = train.fit_later_lexical_weight(accelerator, model, tokenizer, validation, metric,
                                                        saved["num_tags"], batch_size)
        row.update({"later_weight_before": before["later_weight"], "later_weight": model.config.lexical_later_weight,
                    "validation_R@5_by_later_weight": by_later})
    scores, predictions = generate_and_score(accelerator, model, tokenizer, test, saved["num_tags"], batch_size,
                                             metric)
    own = run_test_predictions(folder / train.TEST_PREDICTIONS, test.data)
    return {**row, "test_before": percent_row(summary["test"]), "test_after": percent_row(scores),
            "test_after_se": test_group_statistics(metric, labels(predictions), test.gold, test.groups),
            "test_gain": paired_gain(*(per_post_scores(metric, ranked, test.gold, max(K_VALUES)) for ranked in
                                       (labels(line["predicted"] for line in own), labels(predictions))), test.groups)}


def expert_label(report: dict) -> str:
    """A refitted expert in a table: what it reads (how many words), its C."""
    reads = {"pieces": "word pieces", "words": "words", "both": "word pieces and words"}[report["units"]]
    words = f"{report['words']:,}; " if "words" in report else ""
    return f"{reads} ({words}C={report['C']:g})"


def markdown(rows: list[dict]) -> str:
    lines = ["| run | dataset | expert | validation posts (groups) | first weight: before → after "
             "| later weight: before → after | test P@1: before / after (± grouped SE) "
             "| test R@5: before / after (± grouped SE) | test gain P@1 / R@5 (± paired grouped SE) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b, a, se, gain = r["test_before"], r["test_after"], r["test_after_se"], r["test_gain"]
        # a run trained before train.py fitted the later weight had one weight at every step: its first
        later = ("(one pass)" if "later_weight" not in r else
                 f"{r['weight_before'] if r['later_weight_before'] is None else r['later_weight_before']:g} → "
                 f"{r['later_weight']:g}")
        # the first step's weight read the posts the run read while training, where that was a sample
        posts = f"{r['validation_posts']} ({r['validation_groups']})" + (
            f"; first weight: {sample_posts(r)}" if sample_posts(r) != r["validation_posts"] else "")
        expert = expert_label(r["expert"]) if "expert" in r else "as trained"
        lines.append(f"| {r['run']} | {r['dataset']} | {expert} | {posts} | "
                     f"{r['weight_before']:g} → {r['weight']:g} | {later} | {b['P@1']:.2f} / {a['P@1']:.2f} "
                     f"(± {se['P@1_se']:.2f}) | {b['R@5']:.2f} / {a['R@5']:.2f} (± {se['R@5_se']:.2f}) | "
                     f"{gain['P@1']:+.2f} (± {gain['P@1_se']:.2f}) / {gain['R@5']:+.2f} (± {gain['R@5_se']:.2f}) |")
    whole = any(sample_posts(r) != r["validation_posts"] for r in rows)
    return (f"Settings: machine={machine()}; each run's own checkpoint and splits; its expert weights chosen again on "
            f"validation by this checkout's train.py" + ("; where a row names the posts its first weight read (the "
            "run's own), its later weight read every validation post carved from the corpus" if whole else "") +
            ("; where the expert names what it reads, it was fitted again reading that (the run's own train split, "
             "C on the posts its first weight read) before its weights" if any("expert" in r for r in rows) else "") +
            "; the test split scored once; the gain is over the run's own test predictions, post by post.\n\n"
            + "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    accelerator, metric = Accelerator(cpu=True), load_tag_metric()
    carved = carved_validation(args.dataset, args.data_dir) if args.dataset else None
    return score_runs(args.runs, lambda folder: [refit(folder, accelerator, metric, args.batch_size, carved,
                                                       args.lexical_units)], Path(args.results), markdown)


if __name__ == "__main__":
    main()
