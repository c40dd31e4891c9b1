"""Save a MiniLM-based model, reload it in a fresh process with only the saved folder (no repo on the path,
HF_HUB_OFFLINE=1) and check it gives exactly the tags the in-memory model gave."""

import json
import os
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from modeling_br import BRForTagRanking
from modeling_sog import SOGForTagGeneration
from recipe import default_encoder_path

POSTS = ["How do I merge two pandas dataframes on a column?",
         {"text": "Centering a div", "image": "a screenshot of a web page", "location": "Lyon",
          "time": "2021-11-02T09:30:00"},
         ""]
TAGS = ["python", "pandas", "dataframe", "javascript", "css", "html", "java", "implemented-in::c"]

RELOAD = r"""
import json, sys
# A user has the folder, not this repo (which an editable install makes importable): hide the repo's modules.
for name in ("configuration_sog", "modeling_sog", "modeling_br", "modeling_ar", "inputs_sog", "pipeline_sog",
             "handler"):
    sys.modules[name] = None
from transformers import AutoModel, AutoTokenizer, pipeline
folder, posts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
pipe = pipeline(model=folder, trust_remote_code=True)
print(json.dumps({
    "module": type(model).__module__,
    "automodel": model.generate_tags(posts, tokenizer, num_tags=4),
    "pipeline_list": pipe(posts, num_tags=4),
    "pipeline_single": pipe(posts[0], num_tags=4),
}))
"""


def reload_in_fresh_process(folder, workdir):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([sys.executable, "-c", RELOAD, str(folder), json.dumps(POSTS)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model_class,overrides", [(SOGForTagGeneration, {}), (BRForTagRanking, {}),
                                                   (SOGForTagGeneration, {"attention_layout": "one-pass",
                                                                          "step_loss": "sigmoid"})])
def test_saved_folder_reloads_in_a_fresh_process_with_the_same_tags(tmp_path, model_class, overrides):
    model = model_class.from_encoder(default_encoder_path(), tags=TAGS, **overrides)
    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    expected = model.generate_tags(POSTS, tokenizer, num_tags=4)
    folder, workdir = tmp_path / "model", tmp_path / "elsewhere"
    workdir.mkdir()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert {"config.json", "model.safetensors", "configuration_sog.py", "modeling_sog.py", "pipeline_sog.py",
            "inputs_sog.py", "tokenizer.json"} <= set(os.listdir(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == f"{model_class.__module__}.{model_class.__name__}"
    assert config["attention_layout"] == overrides.get("attention_layout", "paper")
    assert config["step_loss"] == overrides.get("step_loss", "softmax")
    assert "tag-generation" in config["custom_pipelines"]

    got = reload_in_fresh_process(folder, workdir)
    assert got["module"].startswith("transformers_modules")
    names = [[tag["label"] for tag in row] for row in expected]
    assert [[tag["label"] for tag in row] for row in got["automodel"]] == names
    assert [[d["label"] for d in row] for row in got["pipeline_list"]] == names
    assert [d["label"] for d in got["pipeline_single"]] == names[0]
    for row, reloaded in zip(expected, got["pipeline_list"]):
        assert [tag["score"] for tag in row] == pytest.approx([d["score"] for d in reloaded], abs=1e-5)


def test_tag_embeddings_start_from_their_names():
    model = SOGForTagGeneration.from_encoder(default_encoder_path(), tags=TAGS)
    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    words = model.bert.embeddings.word_embeddings.weight
    ids = tokenizer("implemented in c", add_special_tokens=False)["input_ids"]
    assert model.tag_embeddings.weight[7].tolist() == pytest.approx(words[ids].mean(0).tolist(), abs=1e-6)
    marker_ids = tokenizer("loc", add_special_tokens=False)["input_ids"]
    assert model.marker_embeddings.weight[1].tolist() == pytest.approx(words[marker_ids].mean(0).tolist(), abs=1e-6)


def test_from_encoder_refuses_non_bert_encoders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="BERT-family"):
        SOGForTagGeneration.from_encoder(str(tmp_path), tags=["a"])
