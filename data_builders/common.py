"""What every tag-corpus builder shares: the schema, the filters, the row report and the stable split.

A builder only reads its source format (``read_posts``); this base class turns what it read into the
``train``/``test`` splits of the common schema, applying the paper's filters in order and counting every
row or tag it drops, by reason.

It streams: a first pass over the source counts tags (and, with ``max_posts``, keeps the sample's ids), holding
only the ids kept so far, the tag counts and the sample; a second pass per split filters, splits and hands each
post to ``datasets``, which writes it to Arrow on disk. No list of posts is ever held. Posts come out in the
order the source holds them.
"""

import codecs
import hashlib
import heapq
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import datasets
from tqdm.auto import tqdm

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


@dataclass
class CorpusPlan:
    """What the first pass learned: the tag counts the frequency filter reads, the ids of a ``max_posts`` sample
    (None: every post), and the ids seen twice (their later rows are the duplicates)."""

    tag_counts: Counter = field(default_factory=Counter)
    sample: set | None = None
    duplicated: set = field(default_factory=set)


class _LargestFirst:
    """A heap entry that puts the largest (rank, id) on top: the heap keeps the ``max_posts`` smallest."""

    __slots__ = ("key", "tags")

    def __init__(self, key, tags):
        self.key, self.tags = key, tags

    def __lt__(self, other):
        return self.key > other.key


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
        self.count_pass(data_dir)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"split": "train", "data_dir": data_dir}),
                datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"split": "test", "data_dir": data_dir})]

    def _generate_examples(self, split, data_dir):
        for post in self.posts_of_split(data_dir, split):
            yield post.id, post.as_example()

    def finish(self):
        """After both splits are written: no row may be lost, and an empty corpus is an error."""
        self.report.check_balance()
        if not self.report.written:
            raise ValueError(f"{self.name}: no post left from {self.config.data_dir}\n" + "\n".join(self.report.lines()))

    def row_verdict(self, post: Post) -> str | None:
        """Why a post read from the source is dropped (None: it is kept), the filters every pass applies."""
        config = self.config
        if not post.text.strip() and not post.image.strip():
            return "no text"
        if not post.tags:
            return "no tags"
        if config.min_score is not None and (post.score is None or post.score < config.min_score):
            return f"score below min_score={config.min_score}"
        if config.max_tags_per_post is not None and len(post.tags) > config.max_tags_per_post:
            return f"more than max_tags_per_post={config.max_tags_per_post} tags"
        return None

    def kept_rows(self, data_dir: str, desc: str, first_pass: bool):
        """The posts of the source that pass the row filters, the first kept row of an id only, with a progress bar
        (rows/s). The first pass counts every row read and every row dropped, by reason, and notes the ids kept
        twice; a later pass remembers only those ids, so its memory does not grow with the corpus."""
        report, plan = self.report, self.plan
        remembered = set()
        for item in tqdm(self.read_posts(data_dir), desc=f"{self.name}: {desc}", unit=" rows", disable=None,
                         mininterval=2):
            report.read += first_pass
            if isinstance(item, Rejected):
                if first_pass:
                    report.reject(item.reason, item.where)
                continue
            if item.id in remembered:
                if first_pass:
                    report.reject("duplicate id", f"id {item.id}")
                    plan.duplicated.add(item.id)
                continue
            reason = self.row_verdict(item)
            if reason:
                if first_pass:
                    report.reject(reason, f"id {item.id}")
                continue
            if first_pass or item.id in plan.duplicated:
                remembered.add(item.id)
            yield item

    def count_pass(self, data_dir: str) -> CorpusPlan:
        """Pass 1: count rows and drops, the tags of the kept posts, and (``max_posts``) choose the sample by a hash
        of each post's group: the heap holds the sample's ids and tags, nothing else of the posts."""
        config, report = self.config, self.report
        self.plan = plan = CorpusPlan()
        heap, kept = [], 0
        for post in self.kept_rows(data_dir, "counting tags", first_pass=True):
            kept += 1
            if config.max_posts is None:
                plan.tag_counts.update(post.tags)
                continue
            entry = _LargestFirst((hash_rank(post.group or post.id), post.id), tuple(post.tags))
            if len(heap) < config.max_posts:
                heapq.heappush(heap, entry)
            elif entry.key < heap[0].key:
                heapq.heapreplace(heap, entry)
        if config.max_posts is not None:
            plan.sample = {entry.key[1] for entry in heap}
            for entry in heap:
                plan.tag_counts.update(entry.tags)
            if kept > config.max_posts:
                reason = f"not in the max_posts={config.max_posts} sample"
                report.rows[reason] += kept - config.max_posts
                report.first_row.setdefault(reason, "chosen by a hash of the post's group")
        return plan

    def posts_of_split(self, data_dir: str, split: str):
        """Pass 2, once per split: the posts of ``split`` that pass every filter, their rare tags removed; counts
        what it writes and the posts left with no tag."""
        config, report, plan = self.config, self.report, self.plan
        for post in self.kept_rows(data_dir, f"writing {split}", first_pass=False):
            if plan.sample is not None and post.id not in plan.sample:
                continue
            if split_of(post.group or post.id) != split:
                continue
            tags = [t for t in post.tags if plan.tag_counts[t] >= config.min_tag_freq]
            if len(tags) < len(post.tags):
                report.tags_dropped[f"tag seen fewer than min_tag_freq={config.min_tag_freq} times"] += (
                    len(post.tags) - len(tags))
            if not tags:
                report.reject("no tag left after min_tag_freq", f"id {post.id}")
                continue
            post.tags = tags
            report.written += 1
            yield post


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
