"""Instagram posts: an instaloader download folder, or a JSONL file in the common schema."""

import json
import lzma
import os
import re
from datetime import datetime, timezone

from .common import FEATURES, Post, Rejected, TagCorpusBuilder, TagCorpusConfig, unique

HASHTAG = re.compile(r"#(\w+)", re.UNICODE)
# "Photo by Ana on May 01, 2020. May be an image of 1 person and beach." -> "1 person and beach"
_CAPTION_PREFIXES = re.compile(
    r"^(?:(?:photo|image|video)(?: shared)? by .*? (?:on|tagging) .*?\.\s*)?"
    r"(?:may be an? (?:image|photo|video|graphic|cartoon|illustration) of |image may contain:\s*)?",
    re.IGNORECASE)


def hashtags_and_text(caption: str) -> tuple[list[str], str]:
    """Lower-cased hashtags (unicode letters allowed) and the caption with them removed."""
    tags = unique(tag.lower() for tag in HASHTAG.findall(caption))
    text = HASHTAG.sub(" ", caption)
    text = re.sub(r"[ \t]+", " ", text)
    return tags, re.sub(r" *\n *", "\n", text).strip()


def image_description(accessibility_caption: str | None) -> str:
    """Keep only what describes the image from Instagram's automatic accessibility caption."""
    if not accessibility_caption:
        return ""
    described = _CAPTION_PREFIXES.sub("", accessibility_caption.strip(), count=1)
    return described.strip().rstrip(".").strip()


def _caption_of(node: dict) -> str:
    edges = ((node.get("edge_media_to_caption") or {}).get("edges") or [])
    return (edges[0].get("node") or {}).get("text") or "" if edges else ""


def post_from_instaloader(metadata: dict, where: str) -> Post | Rejected:
    node = metadata.get("node") if isinstance(metadata, dict) else None
    if not isinstance(node, dict):
        return Rejected("instaloader JSON without a 'node' object", where)
    post_id = str(node.get("shortcode") or node.get("id") or "").strip()
    if not post_id:
        return Rejected("instaloader JSON without shortcode or id", where)
    children = [edge.get("node") or {} for edge in (node.get("edge_sidecar_to_children") or {}).get("edges") or []]
    captions = [_caption_of(node)] + [_caption_of(child) for child in children]
    tags, texts = [], []
    for caption in unique(c for c in captions if c):
        caption_tags, caption_text = hashtags_and_text(caption)
        tags.extend(caption_tags)
        if caption_text:
            texts.append(caption_text)
    images = unique(d for d in (image_description(n.get("accessibility_caption")) for n in [node] + children) if d)
    timestamp = node.get("taken_at_timestamp")
    if timestamp not in (None, "") and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))
                                        and not str(timestamp).strip().isdigit()):
        return Rejected(f"'taken_at_timestamp' is not a number of seconds ({timestamp!r})", where)
    taken = datetime.fromtimestamp(int(timestamp), tz=timezone.utc).isoformat() if timestamp else ""
    location = node.get("location") or {}
    if not isinstance(location, dict) or not isinstance(location.get("name") or "", str):
        return Rejected(f"'location' is not an object with a 'name' string ({location!r:.60})", where)
    location = (location.get("name") or "").strip()
    return Post(id=post_id, text="\n".join(texts), tags=unique(tags), image="; ".join(images), location=location,
                time=taken)


def _load_metadata(path: str):
    if path.endswith(".xz"):
        with lzma.open(path, "rt", encoding="utf-8") as stream:
            return json.load(stream)
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def post_from_jsonl(row, where: str) -> Post | Rejected:
    if not isinstance(row, dict):
        return Rejected("JSONL line is not an object", where)
    unknown = set(row) - set(FEATURES)
    if unknown:
        return Rejected(f"unknown field(s) {sorted(unknown)}", where)
    if not isinstance(row.get("tags"), list) or not all(isinstance(t, str) for t in row["tags"]):
        return Rejected("field 'tags' is not a list of strings", where)
    for name in ("id", "text", "image", "location", "time", "group"):
        if row.get(name) is not None and not isinstance(row[name], (str, int)):
            return Rejected(f"field {name!r} is not a string", where)
    if not str(row.get("id") or "").strip():
        return Rejected("field 'id' is missing", where)
    return Post(id=str(row["id"]).strip(), text=str(row.get("text") or ""), tags=unique(t.strip().lower() for t in row["tags"] if t.strip()),
                image=str(row.get("image") or ""), location=str(row.get("location") or ""),
                time=str(row.get("time") or ""), group=str(row.get("group") or ""))


def jsonl_posts(path: str):
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield Rejected(f"malformed JSON ({error.msg})", where)
                continue
            yield post_from_jsonl(row, where)


class Instagram(TagCorpusBuilder):
    """Posts from an instaloader download (``*_UTC.json`` / ``*_UTC.json.xz``, sub-folders allowed) or JSONL."""

    DESCRIPTION = ("Instagram needs an instaloader download folder (one *_UTC.json or *_UTC.json.xz metadata "
                   "file per post, sub-folders allowed) or a .jsonl file in the common schema as data_dir.")
    LICENSE = "the posts' authors' (check Instagram's terms before redistributing)"
    BUILDER_CONFIGS = [
        TagCorpusConfig(name="paper", max_tags_per_post=20, min_tag_freq=400,
                        description="<= 20 hashtags per post, hashtags seen >= 400 times (the paper's recipe)"),
        TagCorpusConfig(name="small", max_tags_per_post=20, min_tag_freq=5,
                        description="for small exports: hashtags seen >= 5 times")]
    DEFAULT_CONFIG_NAME = "paper"

    def read_posts(self, data_dir):
        if os.path.isfile(data_dir):
            yield from jsonl_posts(data_dir)
            return
        found = False
        for folder, _, files in sorted(os.walk(data_dir)):
            for name in sorted(files):
                path = os.path.join(folder, name)
                if name.endswith(".jsonl"):
                    found = True
                    yield from jsonl_posts(path)
                elif name.endswith(("_UTC.json", "_UTC.json.xz")):
                    found = True
                    try:
                        metadata = _load_metadata(path)
                    except (json.JSONDecodeError, lzma.LZMAError, UnicodeDecodeError, EOFError) as error:
                        yield Rejected(f"malformed JSON ({type(error).__name__})", path)
                        continue
                    yield post_from_instaloader(metadata, path)
        if not found:
            raise FileNotFoundError(f"instagram: no *_UTC.json, *_UTC.json.xz or .jsonl file under {data_dir}")
