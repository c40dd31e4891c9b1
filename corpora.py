"""Tag corpora as the training and evaluation code read them: loading (a builder, a local folder or file, a Hub
dataset), the train / validation / test splits, seeded samples, and each split's posts and gold tags.

The validation split is the corpus's own, or carved from train by the hash of each post's group (the hash the
builders split train/test with), before any sampling: the test split and the tag vocabulary never depend on it.
"""

import hashlib
import math
import os
import re
import tempfile
from collections import Counter
from functools import cached_property
from pathlib import Path

import datasets

from data_builders import BUILDERS, build, split_of, validation_rank
from inputs_sog import POST_FIELDS

REPO = Path(__file__).resolve().parent
BUNDLED_CORPUS = REPO / "data" / "debtags-sample"
DEFAULT_VALIDATION_PERCENTAGE = 5.0
MIN_VALIDATION_POSTS = 300        # carved validation splits get at least this many posts ...
MAX_VALIDATION_SHARE = 0.2        # ... unless that would take more than this share of train


CORPUS_CACHE = Path(os.environ.get("SOG_CORPUS_CACHE", Path(tempfile.gettempdir()) / "sog-corpora"))


def files_fingerprint(path: str) -> str:
    """What identifies a local corpus's content: every file's path, size and modification time."""
    files = [Path(path)] if os.path.isfile(path) else sorted(p for p in Path(path).rglob("*") if p.is_file())
    described = [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha1("\n".join(described).encode("utf-8")).hexdigest()[:16]


def load_local(path: str, *args, **kwargs):
    """load_dataset for a local folder or file, through a cache of its own, named by a fingerprint of the files:
    datasets' shared cache can hand back another folder's data when the file names match (seen with two corpus
    folders of benchmarks/paper_table.py). The Arrow it writes there is memory-mapped, not read into memory, so
    a corpus costs pages the system can drop, whatever its size; DDP processes load it under
    ``main_process_first``."""
    cache = CORPUS_CACHE / files_fingerprint(path)
    if args:   # a builder name ("json", "parquet") and data_files=path
        return datasets.load_dataset(*args, cache_dir=str(cache), **kwargs)
    return datasets.load_dataset(path, cache_dir=str(cache), **kwargs)


def load_corpus(dataset: str | None, data_dir: str | None = None) -> datasets.DatasetDict:
    """A builder name, a local folder or Parquet/JSONL file in the common schema, or a Hub dataset id; None is
    the bundled debtags sample."""
    if dataset is None:
        dataset = str(BUNDLED_CORPUS)
    if dataset in BUILDERS:
        corpus, report = build(dataset, data_dir=data_dir)
        print("\n".join(report.lines()))
    elif os.path.isfile(dataset):
        kind = "parquet" if dataset.endswith(".parquet") else "json" if re.search(r"\.jsonl?$", dataset) else None
        if kind is None:
            raise ValueError(f"--dataset {dataset}: expected a .parquet, .json or .jsonl file")
        table = load_local(dataset, kind, data_files=dataset, split="train")
        if "id" not in table.column_names:
            raise ValueError(f"--dataset {dataset}: a single file needs an 'id' column to split train/test by hash")
        corpus = datasets.DatasetDict({
            split: table.filter(lambda row, s=split: split_of(str(row["id"])) == s) for split in ("train", "test")})
    elif os.path.isdir(dataset):
        corpus = load_local(dataset)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", dataset):
        corpus = datasets.load_dataset(dataset)
    else:
        raise ValueError(f"--dataset {dataset!r} is neither a builder ({', '.join(sorted(BUILDERS))}), "
                         "an existing file or folder, nor a Hub dataset id (user/name)")
    return check_corpus(corpus, dataset)


def check_corpus(corpus, name: str) -> datasets.DatasetDict:
    for split in ("train", "test") + (("validation",) if "validation" in corpus else ()):
        if split not in corpus:
            raise ValueError(f"dataset {name} has no {split!r} split (it has {sorted(corpus)})")
        if "tags" not in corpus[split].column_names:
            raise ValueError(f"dataset {name}, split {split!r}: no 'tags' column (columns: "
                             f"{corpus[split].column_names})")
        if len(corpus[split]) == 0:
            raise ValueError(f"dataset {name}: split {split!r} is empty")
    return corpus


def group_keys(table) -> list[str]:
    """Each post's group, the unit the builders' hash splits move whole (a Debian source package; the post's own id
    where the corpus has no ``group`` column or the cell is empty)."""
    ids = [str(i) for i in table["id"]]
    if "group" not in table.column_names:
        return ids
    return [group or post_id for group, post_id in zip(table["group"], ids)]


def carve_validation(train_split, percentage: float):
    """Split a train split into (train, validation) by the hash of each post's group (its id when the corpus
    has no ``group`` column): groups go to validation in hash order until it holds ``percentage`` % of the
    posts, and at least MIN_VALIDATION_POSTS where that stays under MAX_VALIDATION_SHARE of train."""
    if not 0 < percentage < 100:
        raise ValueError(f"--validation_split_percentage must be between 0 and 100, got {percentage}")
    keys = group_keys(train_split)
    members = {}
    for row, key in enumerate(keys):
        members.setdefault(key, []).append(row)
    if len(members) < 2:
        raise ValueError(f"cannot carve a validation split from a train split of {len(members)} group(s); "
                         "give the corpus a 'validation' split or more posts")
    wanted = max(math.ceil(len(keys) * percentage / 100), min(MIN_VALIDATION_POSTS, int(len(keys) * MAX_VALIDATION_SHARE)))
    chosen = []
    for key in sorted(members, key=lambda k: (validation_rank(k), k)):
        if len(chosen) >= wanted or len(chosen) + len(members[key]) >= len(keys):
            break
        chosen.extend(members[key])
    chosen_set = set(chosen)
    return (train_split.select([i for i in range(len(keys)) if i not in chosen_set]),
            train_split.select(sorted(chosen)))


def subset(table, size: int | None, seed: int):
    """A seeded random sample of ``size`` rows (corpora are often sorted, e.g. by package name)."""
    if not size or size >= len(table):
        return table
    return table.shuffle(seed=seed).select(range(size))


def prepare_splits(corpus, validation_percentage: float = DEFAULT_VALIDATION_PERCENTAGE, max_train=None,
                   max_validation=None, max_test=None, seed: int = 42):
    """(train, validation, test, where validation came from): validation is the corpus's own or carved from
    train before any sampling; then each split is a seeded sample of at most ``max_*`` posts."""
    train_split = corpus["train"]
    if "validation" in corpus:
        validation, source = corpus["validation"], "the corpus's validation split"
    else:
        train_split, validation = carve_validation(train_split, validation_percentage)
        source = (f"carved from train by group hash ({len(validation)} posts: {validation_percentage:g} %, at least "
                  f"{MIN_VALIDATION_POSTS})")
    return (subset(train_split, max_train, seed), subset(validation, max_validation, seed),
            subset(corpus["test"], max_test, seed), source)


def posts_of(table) -> list[dict]:
    """The context fields of each row (columns the corpus lacks count as empty)."""
    return list(iter_posts(table))


def iter_posts(table, batch_size: int = 10_000):
    """``posts_of``, a batch of rows at a time: reading a large split this way holds one batch in memory."""
    columns = [c for c in POST_FIELDS if c in table.column_names]
    if not columns:
        yield from ({} for _ in range(len(table)))
        return
    for batch in table.select_columns(columns).iter(batch_size=batch_size):
        yield from ({c: batch[c][row] for c in columns} for row in range(len(batch[columns[0]])))


def column(table, name: str, batch_size: int = 10_000):
    """The values of one column, read a batch at a time (a memory-mapped table stays on disk)."""
    for batch in table.select_columns([name]).iter(batch_size=batch_size):
        yield from batch[name]


def tags_by_post_count(post_tags) -> list[tuple[str, int]]:
    """(tag, number of posts carrying it), most frequent first, ties by name; ``post_tags`` is any iterable of
    tag lists (``column(table, "tags")`` streams a split's)."""
    counts = Counter(tag for tags in post_tags for tag in set(tags))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def tag_vocabulary(train_tags, min_tag_freq: int) -> list[str]:
    """Train-split tags seen at least ``min_tag_freq`` times, most frequent first."""
    vocabulary = [tag for tag, count in tags_by_post_count(train_tags) if count >= min_tag_freq]
    if not vocabulary:
        raise ValueError(f"the tag vocabulary is empty: no train tag is seen >= {min_tag_freq} times "
                         "(lower --min_tag_freq)")
    return vocabulary


class Split:
    """One split as evaluation reads it: its rows (``data``), each row's post (context fields) and gold tags, the
    last two read from the table when first asked for."""

    def __init__(self, name: str, data: datasets.Dataset):
        self.name, self.data = name, data

    @classmethod
    def of(cls, name: str, table) -> "Split":
        return cls(name, table)

    @cached_property
    def posts(self) -> list:
        return posts_of(self.data)

    @cached_property
    def gold(self) -> list:
        return [list(tags) for tags in column(self.data, "tags")]

    @cached_property
    def groups(self) -> list[str]:
        return group_keys(self.data)

    def __len__(self) -> int:
        return len(self.data)
