"""Dataset builders that turn tag corpora into one schema: id, text, image, location, time, tags.

    from data_builders import build
    corpus = build("debtags")                                    # a DatasetDict with train / test
    corpus = build("stacksample", data_dir="~/kaggle/stacksample", min_tag_freq=50)

Each builder is a ``datasets.GeneratorBasedBuilder`` used directly (datasets 5.x no longer loads scripts).
"""

import os

import datasets

from .common import FEATURES, TagCorpusBuilder, split_of, validation_rank
from .debtags import Debtags
from .instagram import Instagram
from .stackoverflow import StackExchange, StackSample

BUILDERS = {"debtags": Debtags, "stacksample": StackSample, "stackexchange": StackExchange,
            "instagram": Instagram}


def make_builder(name: str, data_dir: str | None = None, config_name: str | None = None, cache_dir=None,
                 **filters) -> TagCorpusBuilder:
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset builder {name!r}; choose one of {sorted(BUILDERS)}")
    overrides = {k: v for k, v in filters.items() if v is not None}
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else None
    return BUILDERS[name](config_name=config_name, data_dir=data_dir, cache_dir=cache_dir, dataset_name=name,
                          **overrides)


def build(name: str, data_dir: str | None = None, config_name: str | None = None, cache_dir=None, **filters):
    """Build a corpus and return ``(DatasetDict, RowReport)``."""
    builder = make_builder(name, data_dir, config_name, cache_dir, **filters)
    builder.download_and_prepare(download_mode="force_redownload")
    builder.finish()
    splits = {}
    for split in ("train", "test"):
        if builder.info.splits[split].num_examples:
            splits[split] = builder.as_dataset(split=split)
        else:  # datasets cannot read back an empty split; small exports can have one
            splits[split] = datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    return datasets.DatasetDict(splits), builder.report


__all__ = ["BUILDERS", "FEATURES", "build", "make_builder", "split_of", "validation_rank"]
