"""What the quality benchmarks share: the split every row of a run sees, one train.py run per seed, the mean and
spread over seeds, the classical baselines, and one Markdown renderer.

Rules every table follows: the epoch (or the C of TF-IDF + LR) is chosen on the validation split, never on test;
every neural row is trained with several seeds (``--seeds``) and reported as mean and standard deviation; the
settings line gives one standard error of P@1 for the test size and, from each row's own test predictions, the
standard errors of P@1 and R@5 counting the posts of one group as one draw (``"P@1_se"``, ``"R@5_se"``), and where
groups hold several test posts the scores without the largest group; a difference under two standard errors reads as
a tie.
"""

import json
import math
import platform
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

import train
from classical_baselines import FrequencyBaseline, OmikujiBaseline, TfidfLogisticBaseline
from corpora import DEFAULT_VALIDATION_PERCENTAGE, Split, group_keys, load_corpus, prepare_splits
from data_builders.__main__ import write_folder
from evaluation import (K_VALUES, clustered_standard_error, labels, load_tag_metric, paired_difference, per_post_scores,
                        score)
from score_tables import score_table

REPO = Path(__file__).resolve().parents[1]
METRICS = [f"{m}@{k}" for m in ("P", "R") for k in K_VALUES]
# the measures read group by group (``test_group_statistics``), and every table's last columns where its rows have
# them
GROUPED_MEASURES = ("P@1", f"R@{max(K_VALUES)}")
WITHOUT_LARGEST_GROUP = [(f"{m} w/o largest group", f"{m}_without_largest_group", ".2f") for m in GROUPED_MEASURES]
CLASSICAL = ("Frequency", "TF-IDF + LR", "Omikuji")
DEFAULT_SEEDS = (42, 43, 44)
CORPUS_CARD = ("---\nconfigs:\n- config_name: default\n  data_files:\n" + "".join(
    f"  - split: {split}\n    path: data/{split}-*\n" for split in ("train", "validation", "test")) + "---\n")


def add_run_arguments(parser, budget: dict):
    """The arguments every quality benchmark takes; ``budget`` holds its defaults (None: all posts)."""
    parser.add_argument("--dataset", default="debtags", help="as train.py --dataset (default: the full debtags corpus)")
    parser.add_argument("--data_dir")
    parser.add_argument("--model_name_or_path", help="encoder for every neural model (default: offline MiniLM)")
    for name, value in budget.items():
        kind = float if isinstance(value, float) else int
        parser.add_argument(f"--{name}", type=kind, default=value, help=f"default: {value}")
    parser.add_argument("--data_seed", type=int, default=42, help="seed of the train/validation/test samples")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="training seeds: every neural row is trained once per seed")
    parser.add_argument("--reuse_runs", action="store_true",
                        help="read runs whose folder already holds a summary made with the same train.py arguments")
    parser.add_argument("--update", action="store_true",
                        help="swap the rows run now into the results file already there, keeping its other rows (the "
                             "other settings must match; each row keeps its own seeds): a long table over sittings")


# How train.py trained before the small-budget recipe (one constant rate for every weight, no warmup or decay, no
# weight decay, no lexical expert, an evaluation per epoch, float32 whatever the processor), pinned: the tables made
# that way stay reproducible whatever train.py's defaults become. The rows of the paper table and of the SOG
# ablation run it.
BEFORE_THE_RECIPE = ["--lr_scheduler_type", "constant", "--warmup_ratio", "0", "--weight_decay", "0",
                     "--lexical_mode", "none", "--evaluations", "0", "--mixed_precision", "no"]


def budget_arguments(args, num_train_epochs, recipe=BEFORE_THE_RECIPE) -> list[str]:
    """train.py arguments for the budget every row of a run shares (the settings line records the same values),
    with the encoder and the new units at the one learning rate, and ``recipe`` (the one before the small-budget
    recipe unless told)."""
    return ["--max_length", str(args.max_length), "--num_train_epochs", str(num_train_epochs),
            "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
            "--head_learning_rate", str(args.learning_rate), *recipe]


def percent_row(scores: dict) -> dict:
    return {f"{m}@{k}": round(scores[f"{'precision' if m == 'P' else 'recall'}@{k}"], 2)
            for m in ("P", "R") for k in K_VALUES}


def prepare_corpus(args, output_dir: Path):
    """The split every row of a run shares, written as a folder train.py reads: validation carved from the full
    train split by group hash (train.py's rule), then seeded samples of train, validation and test."""
    train_split, validation, test, source = prepare_splits(
        load_corpus(args.dataset, args.data_dir), DEFAULT_VALIDATION_PERCENTAGE, args.max_train_samples,
        args.max_validation_samples, args.max_eval_samples, args.data_seed)
    splits = {"train": train_split, "validation": validation, "test": test}
    corpus_dir = output_dir / "corpus"
    write_folder(splits, str(corpus_dir), CORPUS_CARD)
    dataset = f"{args.dataset} ({Path(args.data_dir).name})" if args.data_dir else args.dataset
    settings = {"dataset": dataset, "train_posts": len(splits["train"]),
                "validation_posts": len(splits["validation"]), "validation": source,
                "test_posts": len(splits["test"]),
                "encoder": args.model_name_or_path or "all-MiniLM-L6-v2 (offline)",
                "seeds": list(args.seeds), "machine": machine(),
                # the budget every row shares, where the benchmark has one (equal_cost's rows each say their own)
                **{name: getattr(args, name) for name in ("max_length", "batch_size", "learning_rate")
                   if hasattr(args, name)}}
    print("settings: " + json.dumps(settings), flush=True)
    return splits, corpus_dir, settings


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, {'cuda' if torch.cuda.is_available() else 'cpu'}"


def run_neural(name: str, extra: list, args, corpus_dir: Path, seed: int, output_dir: Path, budget_args=()) -> dict:
    """Train one model on the run's split with one seed; ``extra`` train.py arguments come last (they may override
    the shared budget). The row holds the test scores of the epoch chosen on validation. With ``--reuse_runs``, a
    run folder whose train_summary.json was made with the same train.py arguments is read instead of retrained
    (a benchmark stopped half-way resumes where it stopped)."""
    output = output_dir / re.sub(r"[^\w.-]+", "_", f"{name}_seed{seed}").strip("_").lower()
    argv = ["--dataset", str(corpus_dir), "--seed", str(seed), "--output_dir", str(output), "--report_to", "none",
            "--per_device_eval_batch_size", "64", *budget_args]
    if args.model_name_or_path:
        argv += ["--model_name_or_path", args.model_name_or_path]
    argv += list(extra)
    summary = reusable_summary(output / train.TRAIN_SUMMARY, argv) if getattr(args, "reuse_runs", False) else None
    if summary is None:
        summary = train.main(argv)
    by_group = test_group_statistics_of_run(output / train.TEST_PREDICTIONS, load_corpus(str(corpus_dir))["test"])
    posts_trained = summary["epochs_trained"] * summary["train_posts"]
    return {"model": name, "seed": seed, **percent_row(summary["test"]),
            "validation_P@1": round(summary["validation"]["precision@1"], 2),
            "best_epoch": summary["best_epoch"], "epochs_run": len(summary["history"]),
            **validation_curve(summary),
            "train_steps": summary["completed_steps"], "train_seconds": round(summary["train_seconds"], 1),
            "epochs_trained": round(summary["epochs_trained"], 3), "train_posts_seen": round(posts_trained),
            "stopped_by": summary["stopped_by"], "mixed_precision": trained_precision(summary),
            "train_posts_per_s": round(posts_trained / max(summary["train_seconds"], 1e-9), 2),
            "generate_posts_per_s": round(summary["test_posts"] / max(summary["test_generate_seconds"], 1e-9), 2),
            "test_expected_calibration_error": round(summary["test_calibration"].get("expected_calibration_error",
                                                                                    float("nan")), 4),
            **lexical_columns(summary.get("lexical_expert")), **by_group}


def validation_curve(summary: dict) -> dict:
    """A train.py run's validation curve: the epoch of each evaluation, the metric that chose the checkpoint and R@5
    (to read where a row peaked and whether its recall kept rising after its chosen metric stopped)."""
    history = summary["history"]
    chosen_by = f"validation_{summary['metric_for_best_model']}"
    return {"validation_epochs": [row["epoch"] for row in history],
            "validation_by_epoch": [round(row[chosen_by], 2) for row in history],
            f"validation_R@{max(K_VALUES)}_by_epoch": [round(row[f"validation_recall@{max(K_VALUES)}"], 2)
                                                       for row in history]}


def lexical_columns(expert: dict | None) -> dict:
    """The lexical expert's numbers a row reports: its weight (mix, prior), its C and its fitting seconds."""
    if not expert:
        return {}
    columns = {"lexical_mode": expert["mode"], "lexical_weight": expert.get("weight")}
    if "C" in expert:
        columns.update(lexical_C=expert["C"], lexical_seconds=expert["seconds"])
    return columns


def trained_precision(summary: dict) -> str:
    """The autocast a finished run trained under: recorded since train.py resolved ``--mixed_precision auto``;
    runs made before that trained under what they were given (nothing given: float32)."""
    return summary.get("mixed_precision", (summary.get("args") or {}).get("mixed_precision") or "no")


def reusable_summary(saved: Path, argv: list) -> dict | None:
    """The summary a finished run left, if it was made with these train.py arguments (compared parsed, as JSON)."""
    if not saved.is_file():
        return None
    summary = json.loads(saved.read_text())
    current = json.loads(json.dumps(vars(train.parse_args(argv))))
    made_with = summary.get("args") or {}
    # An option train.py did not have when the run was made must be at its default (which keeps the old behaviour).
    defaults = json.loads(json.dumps(vars(train.parse_args([]))))
    if any(current.get(k) != v for k, v in made_with.items()) or \
            any(current[k] != defaults[k] for k in current.keys() - made_with.keys()):
        return None
    # --mixed_precision auto resolves by machine (and accelerate launch): the run's own resolution must be today's.
    if trained_precision(summary) != train.mixed_precision_of(current["mixed_precision"]):
        return None
    print(f"reusing {saved}", flush=True)
    return summary


def run_classical(name: str, splits, metric, seed: int) -> dict:
    """Frequency, TF-IDF + LR (C chosen on validation) or Omikuji, on the same split."""
    scorer = lambda predictions, references: score(metric, predictions, references)
    read = {name: Split.of(name, table) for name, table in splits.items()}
    posts = {name: split.posts for name, split in read.items()}
    tags = {name: split.gold for name, split in read.items()}
    start = time.perf_counter()
    if name == "Frequency":
        model = FrequencyBaseline().fit(tags["train"])
        fitted = time.perf_counter()
        predictions = model.predict(len(posts["test"]), max(K_VALUES))
    elif name == "TF-IDF + LR":
        model = TfidfLogisticBaseline().fit(posts["train"], tags["train"], posts["validation"], tags["validation"],
                                            scorer)
        fitted = time.perf_counter()
        predictions = model.predict(posts["test"], max(K_VALUES))
    else:
        model = OmikujiBaseline().fit(posts["train"], tags["train"])
        fitted = time.perf_counter()
        predictions = model.predict(posts["test"], max(K_VALUES))
    done = time.perf_counter()
    row = {"model": name, "seed": seed, **percent_row(scorer(predictions, tags["test"])),
           "train_seconds": round(fitted - start, 1),
           "train_posts_per_s": round(len(posts["train"]) / max(fitted - start, 1e-9), 2),
           "generate_posts_per_s": round(len(posts["test"]) / max(done - fitted, 1e-9), 2),
           **test_group_statistics(metric, predictions, tags["test"], group_keys(splits["test"]))}
    if name == "TF-IDF + LR":
        row["chosen_C"] = model.c
    return row


def over_seeds(runs: list[dict]) -> dict:
    """One row from the runs of one model: the mean of every number, the standard deviation of the metrics
    (``"P@1_std"`` beside ``"P@1"``), and the runs themselves."""
    row = {"model": runs[0]["model"], "seeds": [run["seed"] for run in runs]}
    for key, value in runs[0].items():
        if key in ("model", "seed") or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        values = [run[key] for run in runs]
        row[key] = round(statistics.fmean(values), 2)
        if key in METRICS:
            row[f"{key}_std"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
    row["runs"] = runs
    return row


def measure_rows(names, seeds, run_one, on_row=None) -> list[dict]:
    """One row per name, each from ``run_one(name, seed)`` for every seed (``seeds``: a list, or a function of the
    name giving its list); ``on_row(rows)`` after each row (to write the results as they come, so a stopped run
    keeps what it measured)."""
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(over_seeds([run_one(name, seed) for seed in (seeds(name) if callable(seeds) else seeds)]))
        row = rows[-1]
        print(f"== {name}: P@1 {row['P@1']:.2f} ± {row['P@1_std']:.2f}, R@5 {row['R@5']:.2f} ± {row['R@5_std']:.2f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        if on_row:
            on_row(rows)
    return rows


def p_at_1_standard_error(p_at_1: float, test_posts: int) -> float:
    """Binomial standard error of P@1 (in points) on this many test posts."""
    share = p_at_1 / 100
    return 100 * math.sqrt(share * (1 - share) / max(1, test_posts))


def test_group_statistics(metric, predictions, references, groups) -> dict:
    """One row's test scores read group by group (the builders' hash split moves a whole group to test: a Debian
    source package's binary packages, with near-identical descriptions and tags, are right or wrong together):
    ``"P@1_se"`` and ``"R@5_se"``, the standard errors in points counting the posts of one group as one draw; and,
    where some group holds several test posts, ``"P@1_without_largest_group"`` and ``"R@5_without_largest_group"``,
    the scores on the posts outside the largest one (``"largest_test_group"``, ``"largest_test_group_posts"``). On
    debtags that is ``mono``: its 147 ``libmono-*`` test packages moved a run's P@1 by up to 3 points, so two rows can
    differ on the cluster alone; the scores without it say whether they differ elsewhere."""
    per_post = per_post_scores(metric, predictions, references, max(K_VALUES))
    by_group = {f"{m}_se": round(clustered_standard_error(per_post[m], groups), 2) for m in GROUPED_MEASURES}
    sizes = Counter(groups)
    # the most posts, then the first name: the same group for every row of a split
    largest, size = min(sizes.items(), key=lambda item: (-item[1], item[0]))
    if size > 1:
        rest = [i for i, group in enumerate(groups) if group != largest]
        by_group.update({f"{m}_without_largest_group": round(100 * statistics.fmean(per_post[m][i] for i in rest), 2)
                         for m in GROUPED_MEASURES})
        by_group.update(largest_test_group=largest, largest_test_group_posts=size)
    return by_group


def paired_gain(before: dict, after: dict, groups: list[str]) -> dict:
    """``after``'s gain over ``before`` on the same posts (``per_post_scores`` of each), in points: for each of
    ``GROUPED_MEASURES`` the gain and (``"<measure>_se"``) the standard error of the post-by-post difference,
    counting the posts of one group as one draw (far smaller than either row's own when the two agree on most
    posts)."""
    gain = {}
    for m in GROUPED_MEASURES:
        mean, se = paired_difference(after[m], before[m], groups)
        gain[m], gain[f"{m}_se"] = round(mean, 2), round(se, 2)
    return gain


def run_test_predictions(predictions_file: Path, test) -> list[dict]:
    """The test predictions a train.py run wrote (one line per post: its id, gold tags and what ``generate_tags``
    gave), in the order of the test table it was scored on; refused unless they are that table's posts."""
    with open(predictions_file, encoding="utf-8") as stream:
        lines = {str(line["id"]): line for line in (json.loads(text) for text in stream if text.strip())}
    ids = [str(i) for i in test["id"]]
    unknown = sorted(set(lines) - set(ids))
    if unknown or len(lines) != len(ids):
        raise ValueError(f"{predictions_file}: {len(lines)} predictions for a test split of {len(ids)} posts"
                         + (f"; ids not in it, first: {unknown[0]!r}" if unknown else "")
                         + ": the run was scored on another split (train it again, without --reuse_runs)")
    return [lines[i] for i in ids]


def test_group_statistics_of_run(predictions_file: Path, test) -> dict:
    """``test_group_statistics`` of a train.py run, from the test predictions it wrote and the groups of the test
    table it was scored on."""
    lines = run_test_predictions(predictions_file, test)
    return test_group_statistics(load_tag_metric(), labels(line["predicted"] for line in lines),
                                 [line["gold"] for line in lines], group_keys(test))


def settings_line(settings: dict, rows: list[dict]) -> str:
    # The binomial error depends on the level: at the median row's P@1, not at a fixed guess.
    level = statistics.median(row["P@1"] for row in rows)
    error = p_at_1_standard_error(level, settings["test_posts"])
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return (f"Settings: {described}\n\nOne standard error of P@1 near {level:.0f} (the median row) on "
            f"{settings['test_posts']} test posts: "
            f"{error:.1f} points (of a difference between two rows: {error * math.sqrt(2):.1f}); a difference under "
            f"two standard errors is a tie. " + grouped_errors(rows) + cells_meaning(settings) + "\n")


def grouped_errors(rows: list[dict]) -> str:
    """The rows' standard errors with the posts of one group counted as one draw (rows measured before they were
    recorded have none, and are left out)."""
    measured = [row for row in rows if "P@1_se" in row]
    if not measured:
        return ""
    span = lambda key: (f"{min(r[key] for r in measured):.1f}" + (
        f" to {max(r[key] for r in measured):.1f}" if len({r[key] for r in measured}) > 1 else ""))
    return (f"Counting the posts of one group (what the split moves whole: a source package on debtags) as one draw, "
            f"one standard error is {span('P@1_se')} points of P@1 and {span('R@5_se')} of R@5 over the "
            f"{len(measured)} row(s) that recorded it (`P@1_se`, `R@5_se` in the JSON); where it is the larger, the "
            f"tie rule uses it. " + largest_group_line(measured))


def largest_group_line(rows: list[dict]) -> str:
    """Names the test split's largest group where rows were scored without it (``test_group_statistics``)."""
    runs = [run for row in rows for run in row.get("runs", [row]) if "largest_test_group" in run]
    if not runs:
        return ""
    headers = " and ".join(f"`{header}`" for header, _, _ in WITHOUT_LARGEST_GROUP)
    return (f"The largest test group, `{runs[0]['largest_test_group']}` ({runs[0]['largest_test_group_posts']} "
            f"posts), is right or wrong as one: the columns {headers} score each row on the other test posts, so two "
            f"rows that differ on that group alone can be told apart. ")


def cells_meaning(settings: dict) -> str:
    if len(settings.get("seeds", [])) > 1:
        return ("Cells: mean ± standard deviation over the seeds where a row has several; one seed's value (no "
                "spread: the test size's standard error above is its only error bar) where it has one.")
    return "Cells: one seed, so no spread (the test size's standard error above is the only error bar)."


def markdown(rows: list[dict], settings: dict, columns: list[tuple[str, str, str]]) -> str:
    """A table: ``columns`` are (header, row key, format) after the metric columns, then the scores without the
    largest test group; cells are mean ± standard deviation where a row has several seeds."""
    def cells(row):
        spread = len(row["seeds"]) > 1
        return {f"{'precision' if m[0] == 'P' else 'recall'}@{m[2:]}":
                f"{row[m]:.2f} ± {row[m + '_std']:.2f}" if spread else f"{row[m]:.2f}" for m in METRICS}

    # a column no row fills (a measure these rows do not have, e.g. the largest group's where every group is one
    # post) is left out rather than shown as a column of dashes
    columns = [column for column in [*columns, *WITHOUT_LARGEST_GROUP]
               if any(row.get(column[1]) is not None for row in rows)]
    table = score_table([(row["model"], cells(row), row) for row in rows], after=columns)
    return settings_line(settings, rows) + "\n" + table + "\n"


def write_results(stem: Path, settings: dict, rows: list[dict], columns, update: bool = False) -> list[dict]:
    """Writes ``stem``.json and the Markdown table ``stem``.md; with ``update`` (``--update``) this run's rows are
    swapped into the file already there (``merged_results``). Returns the rows written."""
    if update and stem.with_suffix(".json").is_file():
        settings, rows = merged_results(stem.with_suffix(".json"), settings, rows)
    save_results(stem, {"settings": settings, "rows": rows}, markdown(rows, settings, columns))
    return rows


def save_results(stem: Path, record: dict, table: str) -> str:
    """A benchmark's results: ``record`` as ``stem``.json, ``table`` (Markdown) as ``stem``.md; returns the table."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    stem.with_suffix(".md").write_text(table)
    return table


def score_runs(folders, score_run, stem: Path, table, record=lambda rows: {"rows": rows}) -> list[dict]:
    """The rows of trained runs scored one by one (``score_run(folder)``: that folder's rows), each printed, the
    results saved after every folder (``save_results`` of ``record(rows)`` and ``table(rows)``) so that a killed
    sitting keeps what it scored; the table printed last."""
    rows = []
    for folder in folders:
        for row in score_run(Path(folder)):
            rows.append(row)
            print(json.dumps(row), flush=True)
        written = save_results(stem, record(rows), table(rows))
    print("\n" + written)
    return rows


def merged_results(path: Path, settings: dict, new_rows: list[dict]) -> tuple[dict, list[dict]]:
    """The settings and rows of an earlier run with this run's rows swapped in (appended when new): a long table
    can be measured over several sittings. Each row keeps its own ``"seeds"``, so the seeds may differ between
    sittings (the settings then list every seed a row used); every other setting must match."""
    earlier = json.loads(path.read_text())
    differing = {k for k in settings
                 if k not in ("machine", "seeds") and earlier["settings"].get(k) != settings[k]}
    if differing:
        raise ValueError(f"--update: {path} was made with other settings ({sorted(differing)}); run it again "
                         f"with the same ones or write to another --results file")
    fresh = {row["model"]: row for row in new_rows}
    rows = [fresh.pop(row["model"], row) for row in earlier["rows"]] + list(fresh.values())
    seeds = sorted({seed for row in rows for seed in row.get("seeds", [])})
    return {**settings, "seeds": seeds}, rows
