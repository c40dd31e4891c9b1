"""The ``sog`` command end to end, in subprocesses, on a tiny saved model: stdin, JSONL in and out, exit codes,
the errors for a missing model folder and for a bad line, ``eval`` through the project's metric, and the
hand-over of ``build``/``train`` to their own parsers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_sog import SOGForTagGeneration

REPO = Path(__file__).resolve().parents[1]


def sog(*args, stdin=None, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "sog_cli", *map(str, args)], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def expected_tags(folder, posts, **options):
    from transformers import AutoTokenizer

    model = SOGForTagGeneration.from_pretrained(folder).eval()
    return [[t["label"] for t in row]
            for row in model.generate_tags(posts, AutoTokenizer.from_pretrained(folder), **options)]


def lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_suggest_reads_stdin_one_post_per_line(tiny_model_folder):
    posts = ["How do I merge two dataframes?", "Centering a div with css", "java streams"]
    done = sog("suggest", tiny_model_folder, "--num_tags", 3, stdin="\n".join(posts) + "\n")
    assert done.returncode == 0, done.stderr
    rows = lines(done.stdout)
    assert [row["id"] for row in rows] == ["1", "2", "3"]
    assert [[t["label"] for t in row["tags"]] for row in rows] == expected_tags(tiny_model_folder, posts, num_tags=3)
    assert all(set(t) == {"label", "score"} for row in rows for t in row["tags"])
    assert "tagged 3 post(s)" in done.stderr and "skipped 0" in done.stderr
    assert "\r" not in done.stderr               # no progress bar when stderr is not a terminal


def test_suggest_takes_posts_as_arguments(tiny_model_folder):
    done = sog("suggest", tiny_model_folder, "first post", "second post", "--num_tags", 2)
    assert done.returncode == 0 and [row["id"] for row in lines(done.stdout)] == ["1", "2"]


def test_suggest_jsonl_in_and_out_keeps_order_ids_and_every_field(tiny_model_folder, tmp_path):
    posts = [{"id": "a", "text": "pandas merge"}, {"id": "b", "text": "sunset", "image": "a beach",
                                                    "location": "Nice", "time": "2021-07-01T20:10:00Z"},
             {"id": "c", "text": "regex", "tags": ["ignored"], "group": "g"}]
    source, target = tmp_path / "posts.jsonl", tmp_path / "tags.jsonl"
    source.write_text("\n".join(json.dumps(p) for p in posts) + "\n", encoding="utf-8")
    done = sog("suggest", tiny_model_folder, "--input", source, "--output", target, "--threshold", 0.0, "--batch_size", 2)
    assert done.returncode == 0, done.stderr
    rows = lines(target.read_text())
    assert [row["id"] for row in rows] == ["a", "b", "c"] and done.stdout == ""
    clean = [{k: v for k, v in p.items() if k not in ("id", "tags", "group")} for p in posts]
    assert [[t["label"] for t in row["tags"]] for row in rows] == expected_tags(tiny_model_folder, clean, threshold=0.0)


def test_a_bad_line_is_reported_with_its_number_skipped_and_counted(tiny_model_folder, tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text('{"text": "ok"}\n{not json\n{"text": 3}\n{"caption": "x"}\n{"text": "fine", "time": "soon"}\n'
                      '{"text": "also ok"}\n', encoding="utf-8")
    done = sog("suggest", tiny_model_folder, "--input", source)
    assert done.returncode == 3, done.stderr
    assert [row["id"] for row in lines(done.stdout)] == ["1", "6"]
    for message in ("line 2: not JSON", "line 3: field 'text' must be a string", "line 4: unknown field(s) ['caption']",
                    "line 5: post field 'time' is not an ISO-8601 timestamp"):
        assert message in done.stderr
    assert "skipped 4 malformed line(s)" in done.stderr
    strict = sog("suggest", tiny_model_folder, "--input", source, "--strict")
    assert strict.returncode == 1 and "line 2: not JSON" in strict.stderr and "--strict" in strict.stderr


def test_errors_for_a_missing_model_bad_parameters_and_bad_usage(tiny_model_folder, tmp_path):
    missing = sog("suggest", tmp_path / "no-such-model", "text")
    assert missing.returncode == 1 and "model folder" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_a_model = sog("suggest", tmp_path, "text")
    assert not_a_model.returncode == 1 and "no config.json" in not_a_model.stderr
    bad = sog("suggest", tiny_model_folder, "text", "--num_tags", 0)
    assert bad.returncode == 1 and "num_tags must be" in bad.stderr
    usage = sog("suggest")
    assert usage.returncode == 2 and "usage: sog suggest" in usage.stderr
    no_input = sog("suggest", tiny_model_folder, "--input", tmp_path / "absent.jsonl")
    assert no_input.returncode == 1 and "no such file" in no_input.stderr


def test_eval_prints_the_metric_table_and_writes_predictions(tiny_model_folder, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": str(i), "text": f"post {i} about python", "tags": ["python", "pandas"][: 1 + i % 2]}
            for i in range(40)]
    corpus.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    predictions = tmp_path / "predicted.jsonl"
    done = sog("eval", tiny_model_folder, "--dataset", corpus, "--predictions", predictions, "--num_tags", 3)
    assert done.returncode == 0, done.stderr
    assert "| K | P@K | R@K | F1@K | nDCG@K |" in done.stdout and "| 5 |" in done.stdout
    written = lines(predictions.read_text())
    test_ids = {r["id"] for r in written}
    assert test_ids and all(len(r["tags"]) == 3 for r in written) and all("gold" in r for r in written)
    missing_split = sog("eval", tiny_model_folder, "--dataset", corpus, "--split", "validation")
    assert missing_split.returncode == 1 and "no 'validation' split" in missing_split.stderr


def test_build_and_train_hand_over_to_their_own_parsers(tmp_path):
    train_help = sog("train", "--help")
    assert train_help.returncode == 0 and "--max_train_minutes" in train_help.stdout
    build_help = sog("build", "--help")
    assert build_help.returncode == 0 and "--max_posts" in build_help.stdout
    (tmp_path / "Posts.xml").write_text("not xml", encoding="utf-8")
    empty = sog("build", "stackexchange", "--data_dir", tmp_path, "--output_dir", tmp_path / "out",
                "--cache_dir", tmp_path / "cache")
    assert empty.returncode != 0 and "no post left" in empty.stderr and not (tmp_path / "out").exists()


def test_the_console_script_is_installed():
    script = shutil.which("sog", path=str(Path(sys.executable).parent))
    assert script, "pip install -e . installs the sog command next to the interpreter"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "sog suggest MODEL" in done.stdout


@pytest.fixture(scope="module")
def lexical_model_folder(tmp_path_factory, tokenizer):
    """A tiny SOG model whose lexical expert knows that 'banana' means fruit."""
    from tests.helpers import tiny_sog

    model = tiny_sog(lexical_mode="mix")
    banana = tokenizer.convert_tokens_to_ids("banana")
    with torch.no_grad():
        model.lexical.idf.fill_(1.0)
        model.lexical.weight[banana, 1] = 8.0                  # tag 1 is "pandas" in the helpers' vocabulary
    folder = tmp_path_factory.mktemp("lexical-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_suggest_explain_gives_each_tag_the_words_behind_it(lexical_model_folder, tiny_model_folder):
    done = sog("suggest", lexical_model_folder, "a banana split recipe", "--num_tags", 2, "--explain")
    assert done.returncode == 0, done.stderr
    [row] = lines(done.stdout)
    assert row["tags"][0]["label"] == "pandas" and row["tags"][0]["words"][0] == "banana"
    refused = sog("suggest", tiny_model_folder, "text", "--explain")
    assert refused.returncode == 1 and "needs a model with a lexical expert" in refused.stderr
    assert "Traceback" not in refused.stderr
