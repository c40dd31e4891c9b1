import gzip
import json
import lzma
import zipfile

import datasets
import pytest

from data_builders import build, split_of
from data_builders.__main__ import main as cli_main
from data_builders.instagram import hashtags_and_text, image_description
from data_builders.stackoverflow import parse_tag_field

QUESTIONS = (
    'Id,OwnerUserId,CreationDate,ClosedDate,Score,Title,Body\n'
    '80,26,2008-08-01T13:57:07Z,NA,26,Caf\xe9 encoding in Python,'
    '"<p>How do I read <code>caf\xe9</code> &amp; friends?</p>\n<pre><code>if a &lt; b:\n    print(a)\n</code></pre>"\n'
    '90,58,2008-08-01T14:41:24Z,2012-12-26T03:45:49Z,144,Good branching tutorials,"<p>Any <b>good</b> ones?</p>"\n'
    '120,83,2008-08-01T15:50:08Z,NA,2,Low score question,"<p>Too low.</p>"\n'
    '260,91,2008-08-01T23:22:08Z,NA,49,Scripting in C#,"<p>Embed a script</p>"\n'
    '330,63,2008-08-02T02:51:36Z,NA,x,Broken score,"<p>bad</p>"\n'
)
TAGS = "Id,Tag\n80,python\n80,encoding\n90,svn\n90,git\n120,python\n260,c#\n260,python\n"


def write_stacksample(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Questions.csv").write_bytes(QUESTIONS.encode("latin-1"))
    (folder / "Tags.csv").write_bytes(TAGS.encode("latin-1"))
    return folder


def rows_by_id(corpus):
    return {row["id"]: row for split in corpus.values() for row in split}


def test_stacksample_reads_latin1_html_and_applies_the_paper_recipe(tmp_path):
    corpus, report = build("stacksample", data_dir=str(write_stacksample(tmp_path / "raw")), cache_dir=tmp_path / "c",
                           min_tag_freq=2)
    rows = rows_by_id(corpus)
    assert set(rows) == {"80", "260"}          # 120: score 2 < 5; 90: its tags are seen once each; 330: bad score
    text = rows["80"]["text"]
    assert text.startswith("Café encoding in Python\nHow do I read café & friends?")
    assert "if a < b:\n    print(a)" in text  # code stays readable
    assert rows["80"]["tags"] == ["python"] and rows["80"]["time"] == "2008-08-01T13:57:07Z"
    assert report.rows["score below min_score=5"] == 1
    assert report.rows["no tag left after min_tag_freq"] == 1
    assert report.rows["malformed Questions.csv row (Score is not an integer)"] == 1
    assert report.tags_dropped["tag seen fewer than min_tag_freq=2 times"] == 4   # encoding, svn, git, c#


def test_stacksample_reads_the_kaggle_zip_and_names_missing_files(tmp_path):
    raw = write_stacksample(tmp_path / "raw")
    with zipfile.ZipFile(tmp_path / "stacksample.zip", "w") as bundle:
        bundle.write(raw / "Questions.csv", "Questions.csv")
        bundle.write(raw / "Tags.csv", "Tags.csv")
    (tmp_path / "zipped").mkdir()
    (tmp_path / "stacksample.zip").rename(tmp_path / "zipped" / "stacksample.zip")
    corpus, _ = build("stacksample", data_dir=str(tmp_path / "zipped"), cache_dir=tmp_path / "c", min_tag_freq=1)
    assert set(rows_by_id(corpus)) == {"80", "90", "260"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Tags.csv.*kaggle"):
        build("stacksample", data_dir=str(tmp_path / "empty"), cache_dir=tmp_path / "c")


def test_strict_mode_names_the_first_bad_row(tmp_path):
    with pytest.raises(ValueError, match=r"Questions.csv line \d+: malformed"):
        build("stacksample", data_dir=str(write_stacksample(tmp_path / "raw")), cache_dir=tmp_path / "c",
              min_score=0, min_tag_freq=1, strict=True)


POSTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" CreationDate="2010-07-19T19:12:12.510" Score="26" Title="Merge &amp; join in R"
       Body="&lt;p&gt;How do I &lt;em&gt;merge&lt;/em&gt; two data frames?&lt;/p&gt;" Tags="&lt;r&gt;&lt;dataframe&gt;" />
  <row Id="2" PostTypeId="2" ParentId="1" CreationDate="2010-07-19T19:14:00.000" Score="3" Body="an answer" />
  <row Id="3" PostTypeId="1" CreationDate="2024-05-01T08:00:00.000" Score="1" Title="Pipes"
       Body="&lt;p&gt;x |&amp;gt; f()&lt;/p&gt;" Tags="|r|dataframe|pipe|" />
  <row PostTypeId="1" Title="no id" Body="b" Tags="|r|" />
</posts>
"""


def test_stackexchange_dump_reads_questions_with_both_tag_syntaxes(tmp_path):
    (tmp_path / "Posts.xml").write_text(POSTS_XML, encoding="utf-8")
    corpus, report = build("stackexchange", data_dir=str(tmp_path), cache_dir=tmp_path / "c", min_tag_freq=1)
    rows = rows_by_id(corpus)
    assert set(rows) == {"1", "3"}
    assert rows["1"]["text"] == "Merge & join in R\nHow do I merge two data frames?"
    assert rows["1"]["tags"] == ["r", "dataframe"] and rows["3"]["tags"] == ["r", "dataframe", "pipe"]
    assert rows["3"]["text"].endswith("x |> f()") and rows["1"]["time"] == "2010-07-19T19:12:12.510"
    assert report.rows["malformed row (no Id)"] == 1
    assert parse_tag_field("<c++><c#>") == ["c++", "c#"]


SITE_CSV = ('id,title,content,tags\n'
            '1,How can I get chewy cookies?,"<p>Mine are <b>too</b> crisp &amp; dry.</p>",baking cookies texture\n'
            '2,Bacon in an oven?,"<p>How long?</p>\n",oven Bacon\n'
            ',No id,"<p>x</p>",baking\n'
            '4,No tags,"<p>y</p>",\n'
            '5,Bread,"<p>rise</p>",baking bread baking\n')


@pytest.mark.parametrize("zipped", [False, True])
def test_stackexchange_reads_a_sites_kaggle_csv_plain_or_zipped(tmp_path, zipped):
    if zipped:
        with zipfile.ZipFile(tmp_path / "cooking.csv.zip", "w") as bundle:
            bundle.writestr("cooking.csv", SITE_CSV)
        source = tmp_path / "cooking.csv.zip"
    else:
        source = tmp_path / "cooking.csv"
        source.write_text(SITE_CSV, encoding="utf-8")
    for data_dir in (source, tmp_path):      # the file itself, or the folder that holds it
        corpus, report = build("stackexchange", data_dir=str(data_dir), cache_dir=tmp_path / "c", min_tag_freq=1)
        rows = rows_by_id(corpus)
        assert set(rows) == {"1", "2", "5"}
        assert rows["1"]["text"] == "How can I get chewy cookies?\nMine are too crisp & dry."
        assert rows["1"]["tags"] == ["baking", "cookies", "texture"] and rows["2"]["tags"] == ["oven", "bacon"]
        assert rows["5"]["tags"] == ["baking", "bread"]
        assert report.read == 5 and report.written == 3
        assert report.rows["malformed CSV row (no id)"] == 1 and report.rows["no tags"] == 1
        assert any("read as utf-8" in note for note in report.notes)


def test_stackexchange_csv_errors_name_the_file_and_what_is_wrong(tmp_path):
    (tmp_path / "bad.csv").write_text("id,title,body\n1,x,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.csv lacks column\(s\) \['content', 'tags'\]"):
        build("stackexchange", data_dir=str(tmp_path / "bad.csv"), cache_dir=tmp_path / "c")
    (tmp_path / "other.csv").write_text(SITE_CSV, encoding="utf-8")
    with pytest.raises(ValueError, match="several sites"):
        build("stackexchange", data_dir=str(tmp_path), cache_dir=tmp_path / "c")


def instaloader_post(shortcode, caption, timestamp, location=None, accessibility=None, children=()):
    node = {"id": str(abs(hash(shortcode)) % 10**12), "shortcode": shortcode, "taken_at_timestamp": timestamp,
            "edge_media_to_caption": {"edges": [{"node": {"text": caption}}] if caption else []},
            "location": {"name": location} if location else None, "accessibility_caption": accessibility}
    if children:
        node["edge_sidecar_to_children"] = {"edges": [{"node": child} for child in children]}
    return {"node": node, "instaloader": {"node_type": "Post", "version": "4.10"}}


def write_instaloader(folder):
    beach = instaloader_post("Bx1", "Sunset at the #beach with friends #Summer #été", 1593615120, "Nice, France",
                             "Photo by Ana on July 01, 2020. May be an image of 2 people, ocean and twilight.")
    sidecar = instaloader_post(
        "Cy2", "Coffee first #coffee then work", 1609491600, None, None,
        children=[{"accessibility_caption": "May be an image of coffee cup.", "edge_media_to_caption": {"edges": []}},
                  {"accessibility_caption": "Image may contain: laptop", "edge_media_to_caption":
                      {"edges": [{"node": {"text": "my desk #workspace"}}]}}])
    (folder / "#beach").mkdir(parents=True)
    (folder / "#summer").mkdir()
    for sub in ("#beach", "#summer"):  # the same post saved under two hashtags
        (folder / sub / "2020-07-01_14-52-00_UTC.json").write_text(json.dumps(beach), encoding="utf-8")
    with lzma.open(folder / "#summer" / "2021-01-01_09-00-00_UTC.json.xz", "wt", encoding="utf-8") as stream:
        json.dump(sidecar, stream)
    (folder / "#summer" / "2021-01-02_09-00-00_UTC.json").write_text("{not json", encoding="utf-8")
    return folder


def test_instaloader_folder_with_sidecar_duplicates_and_bad_json(tmp_path):
    corpus, report = build("instagram", data_dir=str(write_instaloader(tmp_path / "dl")), cache_dir=tmp_path / "c",
                           min_tag_freq=1)
    rows = rows_by_id(corpus)
    assert set(rows) == {"Bx1", "Cy2"}
    beach, sidecar = rows["Bx1"], rows["Cy2"]
    assert beach["tags"] == ["beach", "summer", "été"]
    assert beach["text"] == "Sunset at the with friends"
    assert beach["image"] == "2 people, ocean and twilight" and beach["location"] == "Nice, France"
    assert beach["time"] == "2020-07-01T14:52:00+00:00"
    assert sidecar["tags"] == ["coffee", "workspace"] and sidecar["location"] == ""
    assert sidecar["text"] == "Coffee first then work\nmy desk"
    assert sidecar["image"] == "coffee cup; laptop"
    assert report.rows["duplicate id"] == 1
    assert report.rows["malformed JSON (JSONDecodeError)"] == 1


def test_instagram_paper_recipe_drops_posts_with_too_many_tags(tmp_path):
    rows = [{"id": str(i), "text": "t", "tags": ["a"] if i else [f"x{j}" for j in range(21)]} for i in range(3)]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    corpus, report = build("instagram", data_dir=str(path), cache_dir=tmp_path / "c", min_tag_freq=1)
    assert set(rows_by_id(corpus)) == {"1", "2"}
    assert report.rows["more than max_tags_per_post=20 tags"] == 1
    assert report.rows["malformed JSON (Expecting property name enclosed in double quotes)"] == 1


def test_caption_helpers():
    assert hashtags_and_text("#Start middle #Mid-word end #END") == (["start", "mid", "end"], "middle -word end")
    assert image_description("Photo shared by Bo on May 01, 2020 tagging @x. May be an image of a dog.") == "a dog"
    assert image_description(None) == ""


PACKAGES = """Package: foo
Source: foo-src (1.2-1)
Version: 1.2-1
Section: utils
Description: Frobnicate files
Description-md5: aaa
Tag: implemented-in::c, interface::commandline,
 role::program

Package: libfoo1
Source: foo-src
Section: libs
Description: Frobnicate library
Description-md5: bbb
Tag: implemented-in::c, role::shared-lib

Package: untagged
Section: misc
Description: No tags here
Description-md5: ccc

Package: bar
Section: python
Description: Bar for Python
Description-md5: ddd
Tag: implemented-in::python, role::program
"""
TRANSLATIONS = """Package: foo
Description-md5: aaa
Description-en: Frobnicate files
 Foo frobnicates files.
 .
 It is fast.

Package: bar
Description-md5: ddd
Description-en: Bar for Python
 A module.
"""


def test_debtags_reads_apt_lists_and_keeps_source_siblings_together(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    with gzip.open(lists / "deb_dists_main_binary-amd64_Packages.gz", "wt", encoding="utf-8") as stream:
        stream.write(PACKAGES)
    (lists / "deb_dists_main_i18n_Translation-en").write_text(TRANSLATIONS, encoding="utf-8")
    corpus, report = build("debtags", data_dir=str(lists), cache_dir=tmp_path / "c", min_tag_freq=1)
    rows = rows_by_id(corpus)
    assert set(rows) == {"foo", "libfoo1", "bar"}
    assert rows["foo"]["text"] == "Frobnicate files\nFoo frobnicates files.\n\nIt is fast."
    assert rows["foo"]["tags"] == ["implemented-in::c", "interface::commandline", "role::program"]
    assert rows["foo"]["location"] == "utils" and rows["libfoo1"]["text"] == "Frobnicate library"
    split_of_row = {row["id"]: split for split, dataset in corpus.items() for row in dataset}
    assert split_of_row["foo"] == split_of_row["libfoo1"] == split_of("foo-src")
    assert report.rows["no Tag field (package not tagged)"] == 1


def test_split_is_a_stable_hash_near_nine_to_one():
    assert split_of("python3-pandas") == split_of("python3-pandas")
    test_share = sum(split_of(str(i)) == "test" for i in range(20000)) / 20000
    assert 0.09 < test_share < 0.11


def test_cli_writes_parquet_and_a_card_that_load_dataset_reads(tmp_path, capsys):
    raw = write_stacksample(tmp_path / "raw")
    out = tmp_path / "out"
    cli_main(["stacksample", "--data_dir", str(raw), "--output_dir", str(out), "--min_tag_freq", "1",
              "--cache_dir", str(tmp_path / "c")])
    printed = capsys.readouterr().out
    assert "| all | 3 |" in printed and "score below min_score=5" in printed
    card = (out / "README.md").read_text()
    assert "configs:" in card and "path: data/train-*" in card
    reloaded = datasets.load_dataset(str(out))
    assert "split 'test' is empty" in printed     # these 3 posts all hash into train
    assert sorted(reloaded) == ["train"] and reloaded["train"].num_rows == 3
    assert reloaded["train"].features["tags"].feature.dtype == "string"


def test_unknown_builder_is_an_error():
    with pytest.raises(ValueError, match="unknown dataset builder 'reddit'"):
        build("reddit")


# ----- every row read is written or counted ---------------------------------------------------------------
EVERY_KIND_XML = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" Score="5" Title="Kept" Body="&lt;p&gt;a&lt;/p&gt;" Tags="|r|" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="3" Body="an answer" />
  <row Id="3" Score="1" Title="No type" Body="b" Tags="|r|" />
  <row PostTypeId="1" Title="no id" Body="b" Tags="|r|" />
  <row Id="5" PostTypeId="1" Score="x" Title="Bad score" Body="b" Tags="|r|" />
  <row Id="6" PostTypeId="1" Score="2" Title="No tags" Body="b" />
  <row Id="1" PostTypeId="1" Score="5" Title="Duplicate" Body="b" Tags="|r|" />
  <row Id="8" PostTypeId="1" Score="5" Title="" Body="" Tags="|r|" />
  <row Id="9" PostTypeId="1" Score="5" Title="Rare tag only" Body="b" Tags="|rare|" />
  <row Id="10" PostTypeId="1" Score="5" Title="Kept too" Body="b" Tags="|r|" />
</posts>
"""


def test_every_row_of_a_dump_is_written_or_dropped_for_a_named_reason(tmp_path):
    (tmp_path / "Posts.xml").write_text(EVERY_KIND_XML, encoding="utf-8")
    corpus, report = build("stackexchange", data_dir=str(tmp_path), cache_dir=tmp_path / "c", min_tag_freq=2)
    assert set(rows_by_id(corpus)) == {"1", "10"}
    assert report.read == 10 and report.written == 2 and report.read == report.written + report.dropped
    assert dict(report.rows) == {"not a question (PostTypeId=2)": 1, "malformed row (no PostTypeId)": 1,
                                 "malformed row (no Id)": 1, "malformed row (Score is not an integer)": 1,
                                 "no tags": 1, "duplicate id": 1, "no text": 1,
                                 "no tag left after min_tag_freq": 1}
    assert "read 10 row(s): wrote 2, dropped 8" in "\n".join(report.lines())


@pytest.mark.parametrize("content", ["", "this is not XML at all", "<posts></posts>"])
def test_a_dump_with_no_post_is_an_error_and_writes_nothing(tmp_path, content, capsys):
    (tmp_path / "Posts.xml").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="no post left"):
        build("stackexchange", data_dir=str(tmp_path), cache_dir=tmp_path / "c")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["stackexchange", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"),
                  "--cache_dir", str(tmp_path / "c2")])
    assert exit_info.value.code != 0 and "no post left" in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_html_entities_are_decoded_once():
    from data_builders.common import html_to_text

    assert html_to_text("<p><code>&amp;lt;div&amp;gt;</code> &amp; &lt;b&gt;</p>") == "&lt;div&gt; & <b>"


@pytest.mark.parametrize("encoding,bom,expected", [("utf-8", b"", "utf-8"), ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
                                                   ("latin-1", b"", "latin-1")])
def test_stacksample_reads_each_encoding_and_says_which(tmp_path, encoding, bom, expected):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Questions.csv").write_bytes(bom + QUESTIONS.encode(encoding))
    (raw / "Tags.csv").write_bytes(TAGS.encode(encoding) + b"999,orphan\n")
    corpus, report = build("stacksample", data_dir=str(raw), cache_dir=tmp_path / "c", min_tag_freq=1)
    assert rows_by_id(corpus)["80"]["text"].startswith("Café encoding in Python\nHow do I read café & friends?")
    assert f"Questions.csv: read as {expected}" in "\n".join(report.lines())
    assert report.rows["Tags.csv row of a question not in Questions.csv"] == 1
    assert report.read == report.written + report.dropped


def test_instaloader_rows_with_odd_fields_are_counted_not_fatal(tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    good = instaloader_post("Ok1", "fine #tag", 1593615120, "Nice")
    string_location = instaloader_post("Bad1", "x #tag", 1593615120)
    string_location["node"]["location"] = "Nice, France"
    text_time = instaloader_post("Bad2", "y #tag", "yesterday")
    for name, post in (("a", good), ("b", string_location), ("c", text_time)):
        (folder / f"2020-07-01_14-52-0{len(name)}_{name}_UTC.json").write_text(json.dumps(post), encoding="utf-8")
    corpus, report = build("instagram", data_dir=str(folder), cache_dir=tmp_path / "c", min_tag_freq=1)
    assert set(rows_by_id(corpus)) == {"Ok1"}
    reasons = "\n".join(report.rows)
    assert "'location' is not an object" in reasons and "'taken_at_timestamp' is not a number" in reasons
    assert report.read == 3 and report.dropped == 2


def test_timestamps_with_a_utc_designator_parse_on_every_supported_python():
    from inputs_sog import parse_timestamp, time_to_words

    assert parse_timestamp("2008-08-01T13:57:07Z").utcoffset().total_seconds() == 0
    assert time_to_words("2008-08-01T13:57:07Z") == "summer weekday afternoon"


# ----- streaming: the same corpus as the list-based algorithm it replaced -----------------------------------
def in_memory_reference(builder, data_dir):
    """The builders' algorithm before they streamed, written out as the specification: every post in a list,
    filtered in order, the max_posts sample by hash, the tag-frequency filter over what is left, split by hash."""
    from collections import Counter

    from data_builders.common import Rejected, RowReport, hash_rank

    config = builder.config
    builder.report = RowReport()
    posts, seen, drops = [], set(), Counter()
    for item in builder.read_posts(data_dir):
        if isinstance(item, Rejected):
            drops[item.reason] += 1
        elif item.id in seen:
            drops["duplicate id"] += 1
        elif not item.text.strip() and not item.image.strip():
            drops["no text"] += 1
        elif not item.tags:
            drops["no tags"] += 1
        elif config.min_score is not None and (item.score is None or item.score < config.min_score):
            drops[f"score below min_score={config.min_score}"] += 1
        elif config.max_tags_per_post is not None and len(item.tags) > config.max_tags_per_post:
            drops[f"more than max_tags_per_post={config.max_tags_per_post} tags"] += 1
        else:
            seen.add(item.id)
            posts.append(item)
    if config.max_posts is not None and len(posts) > config.max_posts:
        drops[f"not in the max_posts={config.max_posts} sample"] += len(posts) - config.max_posts
        posts = sorted(posts, key=lambda p: (hash_rank(p.group or p.id), p.id))[:config.max_posts]
    frequency = Counter(tag for post in posts for tag in post.tags)
    splits = {"train": [], "test": []}
    for post in posts:
        tags = [t for t in post.tags if frequency[t] >= config.min_tag_freq]
        if not tags:
            drops["no tag left after min_tag_freq"] += 1
            continue
        post.tags = tags
        splits[split_of(post.group or post.id)].append(post.as_example())
    return splits, drops


def duplicated_and_rare_dump(folder):
    rows = "".join(f'<row Id="{i}" PostTypeId="1" Score="{i % 7}" Title="Question {i}" Body="&lt;p&gt;body {i}&lt;/p&gt;" '
                   f'Tags="|t{i % 5}|t{i % 11}|{"rare" + str(i) if i % 4 == 0 else "t1"}|" />\n' for i in range(60))
    rows += '<row Id="7" PostTypeId="1" Score="3" Title="Again" Body="b" Tags="|t2|" />\n'      # a duplicate id
    rows += '<row Id="70" PostTypeId="1" Score="3" Title="" Body="" Tags="|t2|" />\n'           # no text
    (folder / "Posts.xml").write_text(f'<?xml version="1.0"?>\n<posts>\n{rows}</posts>\n', encoding="utf-8")
    return folder


@pytest.mark.parametrize("filters", [{"min_tag_freq": 1}, {"min_tag_freq": 3}, {"min_tag_freq": 2, "max_posts": 25},
                                     {"min_tag_freq": 1, "min_score": 3, "max_tags_per_post": 2, "max_posts": 9}])
def test_the_streaming_build_writes_the_rows_and_counts_of_the_list_based_one(tmp_path, filters):
    from data_builders import make_builder

    for name, data_dir in (("stackexchange", duplicated_and_rare_dump(tmp_path)),
                           ("stacksample", write_stacksample(tmp_path / "stacksample"))):
        expected, drops = in_memory_reference(make_builder(name, str(data_dir), **filters), str(data_dir))
        if not any(expected.values()):            # nothing left: an error, as before
            with pytest.raises(ValueError, match="no post left"):
                build(name, data_dir=str(data_dir), cache_dir=tmp_path / "c", **filters)
            continue
        corpus, report = build(name, data_dir=str(data_dir), cache_dir=tmp_path / "c", **filters)
        for split in ("train", "test"):
            written = sorted(corpus[split], key=lambda row: row["id"])
            assert written == sorted(expected[split], key=lambda row: row["id"]), (name, split)
        assert dict(report.rows) == dict(drops), name
        assert report.written == sum(len(rows) for rows in expected.values())


def test_output_is_sharded_parquet_that_load_dataset_reads_whole(tmp_path):
    from data_builders.__main__ import write_folder

    corpus, _ = build("stackexchange", data_dir=str(duplicated_and_rare_dump(tmp_path)), cache_dir=tmp_path / "c")
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n" \
           "  - split: test\n    path: data/test-*\n---\n"
    write_folder(corpus, str(tmp_path / "out"), card, rows_per_shard=10)
    shards = sorted(p.name for p in (tmp_path / "out" / "data").glob("train-*.parquet"))
    assert len(shards) == -(-corpus["train"].num_rows // 10) > 1 and shards[0].endswith(f"-of-{len(shards):05d}.parquet")
    reloaded = datasets.load_dataset(str(tmp_path / "out"))
    assert reloaded["train"]["id"] == corpus["train"]["id"]
