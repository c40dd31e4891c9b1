"""Debian packages tagged with debtags: the real corpus every Debian/Ubuntu machine has offline.

Source: the apt lists (``Packages`` with ``Tag:`` fields, long descriptions from ``Translation-en``), as
written to ``/var/lib/apt/lists`` by ``apt-get update -o Acquire::Languages=en``. Plain, ``.gz``, ``.xz``
and ``.lz4`` files are read.
"""

import gzip
import lzma
import os
import re

from .common import Post, Rejected, TagCorpusBuilder, TagCorpusConfig, unique

APT_LISTS = "/var/lib/apt/lists"


def read_compressed(path: str) -> str:
    if path.endswith(".lz4"):
        import lz4.frame  # only this format needs the extra package

        with open(path, "rb") as stream:
            return lz4.frame.decompress(stream.read()).decode("utf-8", "replace")
    opener = gzip.open if path.endswith(".gz") else lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        return stream.read()


def deb822_paragraphs(text: str):
    """Yield ``(fields, line_number)`` per paragraph; continuation lines are kept with their newlines."""
    fields, key, start = {}, None, 1
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if fields:
                yield fields, start
            fields, key = {}, None
            start = number + 1
        elif line[0] in " \t" and key is not None:
            fields[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        # any other line is garbage inside a paragraph: ignored, the paragraph's fields decide
    if fields:
        yield fields, start


def long_description(value: str) -> str:
    """Body of a deb822 description: leading space removed, ``.`` lines are paragraph breaks."""
    lines = [line[1:] if line.startswith(" ") else line for line in value.split("\n")[1:]]
    return "\n".join("" if line.strip() == "." else line.rstrip() for line in lines).strip()


def list_files(data_dir: str, marker: str) -> list[str]:
    return sorted(os.path.join(data_dir, name) for name in os.listdir(data_dir)
                  if re.search(marker + r"(\.(gz|xz|lz4))?$", name))


class Debtags(TagCorpusBuilder):
    """text = short + long description, location = archive section, tags = debtags facets."""

    DESCRIPTION = (f"Debtags reads apt lists (*_Packages and *_Translation-en, plain/.gz/.xz/.lz4) from data_dir "
                   f"(default {APT_LISTS}); fill them with: apt-get update -o Acquire::Languages=en")
    LICENSE = "package descriptions: DFSG-free, under each package's license; debtags data: public domain"
    HOMEPAGE = "https://wiki.debian.org/Debtags"
    BUILDER_CONFIGS = [TagCorpusConfig(name="default", min_tag_freq=10,
                                       description="packages with a Tag field, tags seen >= 10 times")]
    DEFAULT_CONFIG_NAME = "default"

    def default_data_dir(self):
        return APT_LISTS

    def read_posts(self, data_dir):
        package_files = list_files(data_dir, r"_Packages")
        translation_files = list_files(data_dir, r"_Translation-en")
        if not package_files:
            raise FileNotFoundError(f"debtags: no *_Packages file in {data_dir}. {self.DESCRIPTION}")
        if not translation_files:
            raise FileNotFoundError(f"debtags: no *_Translation-en file in {data_dir} (long descriptions). "
                                    f"{self.DESCRIPTION}")
        long_descriptions = {}
        for path in translation_files:
            for fields, _ in deb822_paragraphs(read_compressed(path)):
                key = (fields.get("Package"), fields.get("Description-md5"))
                long_descriptions.setdefault(key, long_description(fields.get("Description-en", "")))
        for path in package_files:
            name = os.path.basename(path)
            for fields, line in deb822_paragraphs(read_compressed(path)):
                where = f"{name} line {line}"
                package = fields.get("Package", "").strip()
                if not package:
                    yield Rejected("malformed paragraph (no Package field)", where)
                    continue
                if "Tag" not in fields:
                    yield Rejected("no Tag field (package not tagged)", where)
                    continue
                tags = unique(t.strip() for t in fields["Tag"].replace("\n", " ").split(",") if t.strip())
                short = fields.get("Description", "").split("\n")[0].strip()
                body = long_descriptions.get((package, fields.get("Description-md5")), "")
                source = fields.get("Source", package).split("(")[0].strip() or package
                yield Post(id=package, text=f"{short}\n{body}".strip(), tags=tags,
                           location=fields.get("Section", "").strip(), group=source)
