"""A ``train.py`` output folder read back by the benchmarks that score trained runs again (``expert_weights``,
``held_out_weights``, ``paired_runs``): its summary, its arguments, its splits rebuilt from them, its model.

A run's splits come from its own arguments (``train_summary.json``) over this checkout's ``train.py`` rules, so the
validation and test posts are the ones it was trained and scored with; arguments added to ``train.py`` after the run
take their defaults.
"""

import argparse
import json
from pathlib import Path
from typing import NamedTuple

from transformers import AutoTokenizer

import train
from corpora import DEFAULT_VALIDATION_PERCENTAGE, Split, load_corpus, prepare_splits
from recipe import MODEL_CLASSES

class RunSplits(NamedTuple):
    train: object          # the train split's table
    validation: Split
    sample: Split          # what the run read of validation while training (``train.validation_sample``)
    test: Split


def run_summary(folder: Path) -> dict:
    """A run's ``train_summary.json``, refused with the folder named when it is missing (not a finished run)."""
    path = Path(folder) / train.TRAIN_SUMMARY
    if not path.is_file():
        raise SystemExit(f"{folder}: no {train.TRAIN_SUMMARY}: not a finished train.py output folder (a run writes it last)")
    return json.loads(path.read_text())


def run_args(summary: dict) -> argparse.Namespace:
    """A run's ``train.py`` arguments: its own, over this checkout's defaults (for arguments added after it ran)."""
    return argparse.Namespace(**{**vars(train.parse_args(["--output_dir", "unused"])), **summary["args"]})


def run_splits(summary: dict) -> RunSplits:
    """A run's splits, rebuilt from its own arguments."""
    args = run_args(summary)
    train_split, validation, test, _ = train.splits_of(load_corpus(args.dataset, args.data_dir), args)
    validation = Split.of("validation", validation)
    return RunSplits(train_split, validation, train.validation_sample(validation, args), Split.of("test", test))


def load_trained(folder: Path):
    """A trained run's summary, model (this checkout's code, not the folder's) and tokenizer."""
    summary = run_summary(folder)
    model = MODEL_CLASSES[summary["args"]["model"]].from_pretrained(folder).eval()
    return summary, model, AutoTokenizer.from_pretrained(folder, trust_remote_code=True)


def load_run(folder: Path):
    """``load_trained``, refused unless the run's expert is frozen (mix, prior): a jointly trained expert, or none,
    has no weight to choose."""
    summary, model, tokenizer = load_trained(folder)
    if model.lexical is None or model.config.lexical_mode == "joint":
        raise SystemExit(f"{folder}: lexical_mode {model.config.lexical_mode!r}: only a frozen expert (mix, prior) "
                         "has a weight to fit or score")
    return summary, model, tokenizer


def corpus_name(saved: dict) -> str:
    """What a run read, in short: the last two parts of its corpus path (or builder name and raw data folder)."""
    where = saved["data_dir"] or saved["dataset"]
    return "/".join(Path(where).parts[-2:]) if where else "the bundled sample"


def carved_validation(dataset, data_dir) -> Split:
    """Every validation post a benchmark carved from ``dataset``'s train split (``train.py``'s rule)."""
    return Split.of("carved validation",
                    prepare_splits(load_corpus(dataset, data_dir), DEFAULT_VALIDATION_PERCENTAGE)[1])


def ids_within(carved: Split, used: Split, folder: Path) -> set[str]:
    """The ids of a run's validation posts, refused unless all of them are carved validation posts."""
    used_ids = {str(i) for i in used.data["id"]}
    missing = sorted(used_ids - {str(i) for i in carved.data["id"]})
    if missing:
        raise SystemExit(f"{folder}: {len(missing)} of its {len(used_ids)} validation posts (first: {missing[0]!r}) "
                         "are not in the carved validation of --dataset/--data_dir: name the corpus the benchmark "
                         "that trained it read")
    return used_ids
