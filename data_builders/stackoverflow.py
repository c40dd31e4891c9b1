"""Stack Overflow questions: the Kaggle StackSample release and the official Stack Exchange dumps."""

import csv
import io
import os
import re
import sys
import zipfile
from collections import defaultdict
from xml.etree import ElementTree

from .common import Post, Rejected, TagCorpusBuilder, TagCorpusConfig, detect_encoding, html_to_text, unique

KAGGLE_URL = "https://www.kaggle.com/datasets/stackoverflow/stacksample"
STACKSAMPLE_FILES = ("Questions.csv", "Tags.csv")


def question_text(title: str, body_html: str) -> str:
    return f"{title.strip()}\n{html_to_text(body_html)}".strip()


def _binary_opener(data_dir: str, name: str):
    """A function that opens ``name`` (bytes) from the extracted folder or from any zip inside ``data_dir``."""
    for candidate in (os.path.join(data_dir, name), os.path.join(data_dir, "stacksample", name)):
        if os.path.isfile(candidate):
            return lambda: open(candidate, "rb")
    archives = [data_dir] if data_dir.endswith(".zip") else [
        os.path.join(data_dir, f) for f in sorted(os.listdir(data_dir)) if f.endswith(".zip")]
    for archive in archives:
        with zipfile.ZipFile(archive) as bundle:
            member = next((m for m in bundle.namelist() if os.path.basename(m) == name), None)
        if member is not None:  # the member keeps its archive open until it is closed itself
            return lambda: zipfile.ZipFile(archive).open(member)
    raise FileNotFoundError(
        f"stacksample: expected {name} in {data_dir} (the extracted folder or stacksample.zip); "
        f"download the StackSample dataset from {KAGGLE_URL} and pass its folder as --data_dir")


def _open_stacksample(data_dir: str, name: str, report):
    """A text stream over ``name``, in the encoding its bytes show (BOM, then strict UTF-8, then Latin-1: the
    Kaggle release is Latin-1, re-saved copies are often UTF-8); the report says which was used."""
    opener = _binary_opener(data_dir, name)
    encoding = detect_encoding(opener, name)
    report.notes.append(f"{name}: read as {encoding}")
    return io.TextIOWrapper(opener(), encoding=encoding, newline="")


class StackSample(TagCorpusBuilder):
    """Kaggle ``stackoverflow/stacksample``: Questions.csv (HTML bodies; Latin-1 in the release) and Tags.csv."""

    DESCRIPTION = (f"StackSample needs {' and '.join(STACKSAMPLE_FILES)} (or stacksample.zip) in data_dir; "
                   f"download it from {KAGGLE_URL}.")
    LICENSE = "CC BY-SA 3.0 (Stack Overflow content)"
    HOMEPAGE = KAGGLE_URL
    BUILDER_CONFIGS = [TagCorpusConfig(name="paper", min_score=5, min_tag_freq=10,
                                       description="Score >= 5, tags seen >= 10 times (the paper's recipe)"),
                       TagCorpusConfig(name="all", description="every question and tag")]
    DEFAULT_CONFIG_NAME = "paper"

    def read_posts(self, data_dir):
        csv.field_size_limit(sys.maxsize)
        tags, tag_lines = defaultdict(list), defaultdict(list)
        with _open_stacksample(data_dir, "Tags.csv", self.report) as stream:
            for line, row in enumerate(csv.DictReader(stream), start=2):
                if not row.get("Id") or not row.get("Tag"):
                    yield Rejected("malformed Tags.csv row (no Id or Tag)", f"Tags.csv line {line}")
                    continue
                tags[row["Id"].strip()].append(row["Tag"].strip().lower())
                tag_lines[row["Id"].strip()].append(line)
        questions = set()
        with _open_stacksample(data_dir, "Questions.csv", self.report) as stream:
            reader = csv.DictReader(stream)
            missing = {"Id", "Title", "Body", "Score", "CreationDate"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"stacksample: Questions.csv lacks column(s) {sorted(missing)}")
            for row in reader:
                where = f"Questions.csv line {reader.line_num}"
                try:
                    score = int(row["Score"])
                except (TypeError, ValueError):
                    yield Rejected("malformed Questions.csv row (Score is not an integer)", where)
                    continue
                qid = (row["Id"] or "").strip()
                if not qid:
                    yield Rejected("malformed Questions.csv row (no Id)", where)
                    continue
                questions.add(qid)
                yield Post(id=qid, text=question_text(row["Title"] or "", row["Body"] or ""),
                           tags=unique(tags.get(qid, [])), time=(row["CreationDate"] or "").strip(), score=score)
        # Tags.csv rows are tags of posts, not posts; those of a question Questions.csv lacks are counted here.
        for qid in sorted(set(tag_lines) - questions):
            for line in tag_lines[qid]:
                yield Rejected("Tags.csv row of a question not in Questions.csv", f"Tags.csv line {line} (Id {qid})")


TAG_LIST = re.compile(r"<([^<>]+)>|\|([^|]+)")


def parse_tag_field(value: str) -> list[str]:
    """``<python><pandas>`` (older dumps) or ``|python|pandas|`` (2024+ dumps) -> ``["python", "pandas"]``."""
    return unique(m.group(1) or m.group(2) for m in TAG_LIST.finditer(value or "") if (m.group(1) or m.group(2)).strip())


KAGGLE_TRANSFER_COLUMNS = ("id", "title", "content", "tags")
TRANSFER_URL = "https://www.kaggle.com/c/transfer-learning-on-stack-exchange-tags"


def _stackexchange_source(data_dir: str) -> tuple[str, str]:
    """(kind, path): ``"xml"`` for a dump's Posts.xml, ``"csv"`` for a site's CSV in the Kaggle "Transfer Learning
    on Stack Exchange Tags" layout (plain or zipped). ``data_dir`` is the file itself or a folder holding one."""
    if os.path.isfile(data_dir):
        name = data_dir.lower()
        if name.endswith(".xml"):
            return "xml", data_dir
        if name.endswith((".csv", ".zip")):
            return "csv", data_dir
        raise ValueError(f"stackexchange: {data_dir} is neither Posts.xml nor a .csv / .csv.zip file")
    if os.path.isfile(os.path.join(data_dir, "Posts.xml")):
        return "xml", os.path.join(data_dir, "Posts.xml")
    tables = sorted(f for f in os.listdir(data_dir) if f.lower().endswith((".csv", ".csv.zip")))
    if len(tables) == 1:
        return "csv", os.path.join(data_dir, tables[0])
    if tables:
        raise ValueError(f"stackexchange: {data_dir} holds several sites ({', '.join(tables)}); pass one file as "
                         "--data_dir")
    raise FileNotFoundError(f"stackexchange: expected Posts.xml or a site's .csv / .csv.zip in {data_dir}. "
                            f"{StackExchange.DESCRIPTION}")


def _open_csv_source(path: str, report):
    """A text stream over a site's CSV, from the file or from the one .csv inside a zip; the encoding as its
    bytes show it (reported)."""
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as bundle:
            members = [m for m in bundle.namelist() if m.lower().endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"stackexchange: {path} should hold one .csv, it holds {members or 'none'}")
        opener = lambda: zipfile.ZipFile(path).open(members[0])
        name = f"{os.path.basename(path)}:{members[0]}"
    else:
        opener, name = (lambda: open(path, "rb")), os.path.basename(path)
    encoding = detect_encoding(opener, name)
    report.notes.append(f"{name}: read as {encoding}")
    return name, io.TextIOWrapper(opener(), encoding=encoding, newline="")


class StackExchange(TagCorpusBuilder):
    """Questions of any Stack Exchange site: the official data dump's ``Posts.xml``, or a site's CSV in the layout
    of Kaggle's "Transfer Learning on Stack Exchange Tags" (``id``, ``title``, ``content`` as HTML, ``tags``
    separated by spaces)."""

    DESCRIPTION = ("StackExchange needs Posts.xml of a site's data dump (the file itself or its folder), or a site's "
                   "CSV (id, title, content, tags; plain or zipped) as in Kaggle's \"Transfer Learning on Stack "
                   f"Exchange Tags\" ({TRANSFER_URL}), in data_dir; the dumps are published by Stack Exchange, Inc. "
                   "(see archive.org/details/stackexchange).")
    LICENSE = "CC BY-SA (Stack Exchange content)"
    BUILDER_CONFIGS = [TagCorpusConfig(name="default", min_tag_freq=10,
                                       description="every question, tags seen >= 10 times")]
    DEFAULT_CONFIG_NAME = "default"

    def read_posts(self, data_dir):
        kind, path = _stackexchange_source(data_dir)
        yield from (self.read_posts_xml(path) if kind == "xml" else self.read_csv(path))

    def read_csv(self, path):
        csv.field_size_limit(sys.maxsize)
        name, stream = _open_csv_source(path, self.report)
        with stream:
            reader = csv.DictReader(stream)
            missing = set(KAGGLE_TRANSFER_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"stackexchange: {name} lacks column(s) {sorted(missing)} (expected "
                                 f"{', '.join(KAGGLE_TRANSFER_COLUMNS)})")
            for row in reader:
                where = f"{name} line {reader.line_num}"
                post_id = (row["id"] or "").strip()
                if not post_id:
                    yield Rejected("malformed CSV row (no id)", where)
                    continue
                yield Post(id=post_id, text=question_text(row["title"] or "", row["content"] or ""),
                           tags=unique(t.lower() for t in (row["tags"] or "").split()))

    def read_posts_xml(self, path):
        rows = ElementTree.iterparse(path, events=("end",))
        try:
            for _, element in rows:
                if element.tag != "row":
                    continue
                attributes = dict(element.attrib)
                element.clear()
                post_id = attributes.get("Id", "").strip()
                kind = attributes.get("PostTypeId")
                if kind is None:
                    yield Rejected("malformed row (no PostTypeId)", f"Posts.xml Id={post_id or '?'}")
                    continue
                if kind != "1":  # answers, wiki pages...: not questions, so not posts of this corpus
                    yield Rejected(f"not a question (PostTypeId={kind})", f"Posts.xml Id={post_id or '?'}")
                    continue
                if not post_id:
                    yield Rejected("malformed row (no Id)", "Posts.xml question without Id")
                    continue
                try:
                    score = int(attributes.get("Score", "0"))
                except ValueError:
                    yield Rejected("malformed row (Score is not an integer)", f"Posts.xml Id={post_id}")
                    continue
                yield Post(id=post_id, text=question_text(attributes.get("Title", ""), attributes.get("Body", "")),
                           tags=[t.lower() for t in parse_tag_field(attributes.get("Tags", ""))],
                           time=attributes.get("CreationDate", "").strip(), score=score)
        except ElementTree.ParseError as error:
            yield Rejected(f"malformed XML, the rest of the file is unreadable ({error})", path)
