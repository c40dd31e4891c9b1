"""Build a tag corpus, write it as Parquet with a dataset card, print its statistics (the paper's Table 1).

    python -m data_builders debtags --output_dir data/debtags
    python -m data_builders stacksample --data_dir ~/stacksample --output_dir data/stacksample
    python -m data_builders instagram --data_dir ~/instaloader --min_tag_freq 5 --push_to_hub me/my-tags
"""

import argparse
import math
import os
import shlex
import sys
from collections import Counter

from . import BUILDERS, build


def corpus_statistics(corpus) -> list[dict]:
    """Posts, distinct tags and tags per post, per split and overall."""
    rows, everything = [], Counter()
    total_posts = total_tags = 0
    for split, dataset in corpus.items():
        tags = dataset["tags"]
        counts = Counter(t for row in tags for t in row)
        everything.update(counts)
        occurrences = sum(len(row) for row in tags)
        rows.append({"split": split, "posts": len(tags), "distinct tags": len(counts),
                     "tags per post": occurrences / max(1, len(tags))})
        total_posts += len(tags)
        total_tags += occurrences
    rows.append({"split": "all", "posts": total_posts, "distinct tags": len(everything),
                 "tags per post": total_tags / max(1, total_posts)})
    return rows


def statistics_table(rows: list[dict]) -> str:
    lines = ["| split | posts | distinct tags | tags per post |", "|---|---:|---:|---:|"]
    lines += [f"| {r['split']} | {r['posts']:,} | {r['distinct tags']:,} | {r['tags per post']:.2f} |" for r in rows]
    return "\n".join(lines)


def dataset_card(name: str, builder_class, statistics: str, report_lines: list[str], command: str,
                 splits: list[str]) -> str:
    data_files = "\n".join(f"  - split: {split}\n    path: data/{split}-*" for split in splits)
    return f"""---
license: other
task_categories:
- text-classification
tags:
- tag-recommendation
- multi-label
configs:
- config_name: default
  data_files:
{data_files}
  default: true
---

# {name}: a tag recommendation corpus

Built by the `{name}` builder of `data_builders/` (SOG project). {builder_class.__doc__.strip()}

- Source: {builder_class.DESCRIPTION.strip()}
- License: {builder_class.LICENSE}
- Schema: `id`, `text`, `image` (an image description, may be empty), `location` (may be empty),
  `time` (ISO-8601, may be empty), `tags` (list of strings), `group` (posts that must share a split, e.g.
  a Debian source package's binaries; the id when the source has no such grouping).
- Split: 9:1 train/test by a hash of each post's group (stable across runs and machines); `train.py`
  carves its validation split from train by the same hash, so a group never straddles two splits.

Regenerate with:

```bash
{command}
```

## Statistics

{statistics}

## Rows dropped while building

```
{chr(10).join(report_lines)}
```
"""


ROWS_PER_SHARD = 100_000


def write_folder(corpus, output_dir: str, card: str, rows_per_shard: int = ROWS_PER_SHARD):
    """Each split as Parquet shards of at most ``rows_per_shard`` rows (``data/{split}-0000i-of-0000n.parquet``, the
    Hub's naming), written from the memory-mapped Arrow a batch at a time, and the card."""
    os.makedirs(os.path.join(output_dir, "data"), exist_ok=True)
    for split, dataset in corpus.items():
        if not len(dataset):
            continue
        shards = math.ceil(len(dataset) / rows_per_shard)
        for index in range(shards):
            shard = dataset.shard(num_shards=shards, index=index, contiguous=True)
            shard.to_parquet(os.path.join(output_dir, "data", f"{split}-{index:05d}-of-{shards:05d}.parquet"))
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as stream:
        stream.write(card)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_builders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("--data_dir", help="where the raw source lies (see each builder's description)")
    parser.add_argument("--output_dir", help="write Parquet files and a dataset card here")
    parser.add_argument("--config_name", help="a builder config (its recipe); default: the paper's")
    parser.add_argument("--min_tag_freq", type=int)
    parser.add_argument("--max_tags_per_post", type=int)
    parser.add_argument("--min_score", type=int)
    parser.add_argument("--max_posts", type=int, help="keep a hash-chosen sample of this many posts")
    parser.add_argument("--strict", action="store_true", help="fail on the first row that cannot be used")
    parser.add_argument("--cache_dir", help="the datasets cache to build in")
    parser.add_argument("--push_to_hub", metavar="REPO", help="upload the output folder as a Hub dataset")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        corpus, report = build(args.name, data_dir=args.data_dir, config_name=args.config_name,
                               cache_dir=args.cache_dir, min_tag_freq=args.min_tag_freq,
                               max_tags_per_post=args.max_tags_per_post, min_score=args.min_score,
                               max_posts=args.max_posts, strict=args.strict or None)
    except (ValueError, FileNotFoundError) as error:   # bad or empty input: say so, write nothing, exit non-zero
        raise SystemExit(f"error: {error}") from None
    statistics = statistics_table(corpus_statistics(corpus))
    print(f"\n{args.name}: Table 1 statistics\n{statistics}\n")
    print("\n".join(report.lines()))
    if args.output_dir or args.push_to_hub:
        output_dir = args.output_dir or os.path.join("outputs", "datasets", args.name)
        command = "python -m data_builders " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])
                                                          if a != "--push_to_hub" and a != args.push_to_hub)
        splits = [split for split, dataset in corpus.items() if len(dataset)]
        for split in sorted(set(corpus) - set(splits)):
            print(f"warning: split {split!r} is empty (too few posts); it is left out of {output_dir}")
        write_folder(corpus, output_dir, dataset_card(args.name, BUILDERS[args.name], statistics, report.lines(),
                                                      command, splits))
        print(f"wrote {output_dir}")
        if args.push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(args.push_to_hub, repo_type="dataset", exist_ok=True)
            api.upload_folder(folder_path=output_dir, repo_id=args.push_to_hub, repo_type="dataset")
            print(f"pushed to the Hub dataset {args.push_to_hub}")
    return corpus


if __name__ == "__main__":
    main()
