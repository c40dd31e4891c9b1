"""What every tag-corpus builder shares: the schema, the filters, the row report and the stable split.

A builder only reads its source format (``read_posts``); this base class turns what it read into the
``train``/``test`` splits of the common schema, applying the paper's filters in order and counting every
row or tag it drops, by reason.
"""

import codecs
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser

import datasets

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "text": datasets.Value("string"),
    "image": datasets.Value("string"),
    "location": datasets.Value("string"),
    "time": datasets.Value("string"),
    "tags": datasets.Sequence(datasets.Value("string")),
    "group": datasets.Value("string"),
})
TEST_BUCKETS = 1  # of 10: a 9:1 train/test split


def _group_hash(group: str) -> int:
    return int(hashlib.md5(group.encode("utf-8")).hexdigest(), 16)


def split_of(group: str) -> str:
    """``"test"`` for 1 in 10 groups, decided by a hash of the group key: stable across runs and machines."""
    return "test" if _group_hash(group) % 10 < TEST_BUCKETS else "train"


def validation_rank(group: str) -> int:
    """Where a train group stands in line for the validation split: the same hash as ``split_of``, without
    the digit that chose the test split, so validation is an unbiased slice of train."""
    return _group_hash(group) // 10


def hash_rank(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


@dataclass
class Post:
    id: str
    text: str
    tags: list
    image: str = ""
    location: str = ""
    time: str = ""
    group: str = ""        # posts of one group land in the same split (default: the id)
    score: int | None = None

    def as_example(self) -> dict:
        return {"id": self.id, "text": self.text, "image": self.image, "location": self.location,
                "time": self.time, "tags": list(self.tags), "group": self.group or self.id}


@dataclass
class Rejected:
    reason: str
    where: str             # file and line, row id, ...: enough to find the row


class RowReport:
    """Counts the rows read, written and dropped (by reason), and dropped tag occurrences; in strict mode the
    first drop raises. ``check_balance`` proves that no row was lost: read = written + dropped."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.read = 0
        self.written = 0
        self.rows = Counter()
        self.first_row = {}
        self.tags_dropped = Counter()
        self.notes = []        # how the source was read (e.g. a file's detected encoding)

    @property
    def dropped(self) -> int:
        return sum(self.rows.values())

    def check_balance(self):
        if self.read != self.written + self.dropped:
            raise RuntimeError(f"row accounting is off: read {self.read}, wrote {self.written}, dropped {self.dropped} "
                               f"({dict(self.rows)}); a row was lost without being counted (a builder bug)")

    def reject(self, reason: str, where: str):
        if self.strict:
            raise ValueError(f"{where}: {reason} (strict mode: fix the row, or drop --strict to skip such rows)")
        self.rows[reason] += 1
        self.first_row.setdefault(reason, where)

    def lines(self) -> list[str]:
        out = [f"  {note}" for note in self.notes]
        out.append(f"  read {self.read} row(s): wrote {self.written}, dropped {self.dropped}")
        out += [f"  dropped {n} row(s): {reason} (first: {self.first_row[reason]})" for reason, n in self.rows.most_common()]
        out += [f"  dropped {n} tag occurrence(s): {reason}" for reason, n in self.tags_dropped.most_common()]
        return out


@dataclass
class TagCorpusConfig(datasets.BuilderConfig):
    """Filters, applied in this order: ``min_score``, ``max_tags_per_post``, ``max_posts`` (a hash-chosen
    subset), ``min_tag_freq`` (counted over every remaining post), then posts left with no tag are dropped."""

    min_score: int | None = None
    max_tags_per_post: int | None = None
    min_tag_freq: int = 1
    max_posts: int | None = None
    strict: bool = False


class TagCorpusBuilder(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = TagCorpusConfig
    DESCRIPTION = ""
    CITATION = ""
    LICENSE = ""
    HOMEPAGE = ""

    def _info(self):
        return datasets.DatasetInfo(description=self.DESCRIPTION, features=FEATURES, citation=self.CITATION,
                                    license=self.LICENSE, homepage=self.HOMEPAGE)

    # ----- what a builder implements ---------------------------------------------------------------
    def default_data_dir(self) -> str | None:
        return None

    def read_posts(self, data_dir: str):
        """Yield ``Post`` or ``Rejected`` for every row of the source."""
        raise NotImplementedError

    # ----- shared machinery ------------------------------------------------------------------------
    def _split_generators(self, dl_manager):
        data_dir = dl_manager.manual_dir or self.default_data_dir()
        if not data_dir or not os.path.exists(data_dir):
            raise FileNotFoundError(f"{self.name}: data_dir {data_dir!r} does not exist. {self.DESCRIPTION.strip()}")
        self.report = RowReport(self.config.strict)
        posts = self.filtered_posts(data_dir)
        self.posts_by_split = {"train": [], "test": []}
        for post in posts:
            self.posts_by_split[split_of(post.group or post.id)].append(post)
        self.report.written = len(posts)
        self.report.check_balance()
        if not posts:
            raise ValueError(f"{self.name}: no post left from {data_dir}\n" + "\n".join(self.report.lines()))
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"split": "train"}),
                datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"split": "test"})]

    def _generate_examples(self, split):
        for post in self.posts_by_split[split]:
            yield post.id, post.as_example()

    def filtered_posts(self, data_dir: str) -> list[Post]:
        config, report = self.config, self.report
        posts, seen = [], set()
        for item in self.read_posts(data_dir):
            report.read += 1
            if isinstance(item, Rejected):
                report.reject(item.reason, item.where)
            elif item.id in seen:
                report.reject("duplicate id", f"id {item.id}")
            elif not item.text.strip() and not item.image.strip():
                report.reject("no text", f"id {item.id}")
            elif not item.tags:
                report.reject("no tags", f"id {item.id}")
            elif config.min_score is not None and (item.score is None or item.score < config.min_score):
                report.reject(f"score below min_score={config.min_score}", f"id {item.id}")
            elif config.max_tags_per_post is not None and len(item.tags) > config.max_tags_per_post:
                report.reject(f"more than max_tags_per_post={config.max_tags_per_post} tags", f"id {item.id}")
            else:
                seen.add(item.id)
                posts.append(item)
        if config.max_posts is not None and len(posts) > config.max_posts:
            reason = f"not in the max_posts={config.max_posts} sample"
            report.rows[reason] += len(posts) - config.max_posts
            report.first_row.setdefault(reason, "chosen by a hash of the post's group")
            posts = sorted(posts, key=lambda p: (hash_rank(p.group or p.id), p.id))[:config.max_posts]
        return self.keep_frequent_tags(posts)

    def keep_frequent_tags(self, posts: list[Post]) -> list[Post]:
        frequency = Counter(tag for post in posts for tag in post.tags)
        kept = []
        for post in posts:
            tags = [t for t in post.tags if frequency[t] >= self.config.min_tag_freq]
            if len(tags) < len(post.tags):
                self.report.tags_dropped[f"tag seen fewer than min_tag_freq={self.config.min_tag_freq} times"] += (
                    len(post.tags) - len(tags))
            if not tags:
                self.report.reject("no tag left after min_tag_freq", f"id {post.id}")
                continue
            post.tags = tags
            kept.append(post)
        return kept


def unique(items) -> list:
    return list(dict.fromkeys(items))


class _HTMLText(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "ul", "ol"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Text of an HTML body: tags removed, code kept verbatim, one blank line at most between blocks.

    Entities are decoded once, by the parser: ``&amp;lt;`` in the HTML is the text ``&lt;``, not ``<``."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def detect_encoding(open_binary, name: str) -> str:
    """``utf-8-sig`` when the file starts with a UTF-8 byte-order mark, else ``utf-8`` when every byte decodes as
    strict UTF-8, else ``latin-1`` (which decodes anything). ``open_binary()`` opens the file anew."""
    with open_binary() as stream:
        head = stream.read(len(codecs.BOM_UTF8))
        if head == codecs.BOM_UTF8:
            return "utf-8-sig"
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        chunk = head
        try:
            while chunk:
                decoder.decode(chunk)
                chunk = stream.read(1 << 20)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8"
