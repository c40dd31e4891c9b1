"""Untrusted input: post text is data, requests are validated and bounded, bad posts are named; and a folder
loads the way the README says with no prompt and no warning."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import TAGS, labels_of, tiny_config
from modeling_sog import SOGForTagGeneration

CONTROL = "[CLS] [SEP] [MASK] [PAD] [UNK] "
SPELLED = "[ CLS ] [ SEP ] [ MASK ] [ PAD ] [ UNK ] "
TEXT = "a python library to read and write spreadsheets"


@pytest.fixture(scope="module")
def handler(tiny_model_folder):
    """The handler as the inference toolkit loads it: the model folder on the path, its handler.py imported."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tiny_model_folder))
        from handler import EndpointHandler

        yield EndpointHandler(str(tiny_model_folder))


@pytest.fixture(scope="module")
def tagger(tiny_model_folder):
    from transformers import pipeline

    return pipeline("tag-generation", model=str(tiny_model_folder), trust_remote_code=True)


def sog_model():
    torch.manual_seed(0)
    model = SOGForTagGeneration(tiny_config()).eval()
    with torch.no_grad():
        model.tag_embeddings.weight.normal_(0.0, 1.0)
    return model


# ----- post text is data --------------------------------------------------------------------------------------
def test_control_strings_in_a_post_are_plain_text(tokenizer):
    model = sog_model()
    [units] = model.encode_contexts([CONTROL + TEXT], tokenizer)
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id,
                tokenizer.unk_token_id}
    assert not specials & set(units)
    assert units == model.encode_contexts([SPELLED + TEXT], tokenizer)[0]
    image_units = model.encode_contexts([{"text": TEXT, "image": "[MASK] photo"}], tokenizer)[0]
    assert tokenizer.mask_token_id not in image_units


def test_control_strings_change_no_tag_through_any_entry_point(tokenizer, tagger, handler):
    model = sog_model()
    assert labels_of(model.generate_tags([CONTROL + TEXT], tokenizer)[0]) == \
        labels_of(model.generate_tags([SPELLED + TEXT], tokenizer)[0])
    assert [t["label"] for t in tagger(CONTROL + TEXT)] == [t["label"] for t in tagger(SPELLED + TEXT)]
    assert [t["label"] for t in handler({"inputs": CONTROL + TEXT})] == \
        [t["label"] for t in handler({"inputs": SPELLED + TEXT})]


def test_a_forward_without_mask_names_build_inputs(tokenizer):
    model = sog_model()
    with pytest.raises(ValueError, match="no \\[MASK\\].*build_inputs"):
        model(**tokenizer(["How do I merge dataframes?"], return_tensors="pt"))
    with pytest.raises(ValueError, match="must be \\[MASK\\]"):
        model(**tokenizer(["a question"], ["a second segment"], return_tensors="pt"))


# ----- requests are validated and bounded ---------------------------------------------------------------------
BAD_PARAMETERS = [({"num_tags": 0}, "num_tags"), ({"num_tags": -1}, "num_tags"), ({"num_tags": 2.7}, "num_tags"),
                  ({"num_tags": True}, "num_tags"), ({"threshold": 1.5}, "threshold"),
                  ({"threshold": math.nan}, "threshold"), ({"threshold": -0.1}, "threshold"),
                  ({"threshold": "0.5"}, "threshold"), ({"batch_size": 0}, "batch_size"),
                  ({"empty_posts": "skip"}, "empty_posts")]


@pytest.mark.parametrize("parameters,name", BAD_PARAMETERS)
def test_bad_parameters_are_refused_alike_by_every_entry_point(tokenizer, tagger, handler, parameters, name):
    model = sog_model()
    for call in (lambda: model.generate_tags(["x"], tokenizer, **parameters), lambda: tagger("x", **parameters),
                 lambda: handler({"inputs": "x", "parameters": parameters})):
        with pytest.raises(ValueError, match=name):
            call()


def test_the_handler_caps_requests(tiny_model_folder, handler, monkeypatch):
    with pytest.raises(ValueError, match="SOG_MAX_NUM_TAGS"):
        handler({"inputs": "x", "parameters": {"num_tags": 10 ** 9}})
    with pytest.raises(ValueError, match="SOG_MAX_INPUTS"):
        handler({"inputs": ["x"] * 65})
    with pytest.raises(ValueError, match="SOG_MAX_BATCH_SIZE"):
        handler({"inputs": "x", "parameters": {"batch_size": 10 ** 6}})
    with pytest.raises(ValueError, match="SOG_MAX_POST_CHARS"):
        handler({"inputs": {"text": "x" * 20_001}})
    with pytest.raises(ValueError, match="unknown parameter"):
        handler({"inputs": "x", "parameters": {"max_tags": 3}})
    with pytest.raises(ValueError, match="empty list"):
        handler({"inputs": []})
    monkeypatch.setenv("SOG_MAX_INPUTS", "2")
    from handler import EndpointHandler

    with pytest.raises(ValueError, match="at most 2"):
        EndpointHandler(str(tiny_model_folder))({"inputs": ["a", "b", "c"]})
    monkeypatch.setenv("SOG_MAX_INPUTS", "many")
    with pytest.raises(ValueError, match="SOG_MAX_INPUTS must be a whole number"):
        EndpointHandler(str(tiny_model_folder))
    assert len(handler({"inputs": ["a", "b"], "parameters": {"num_tags": 20}})[0]) == len(TAGS)


@pytest.mark.parametrize("bad", [None, 3, ["nested"]])
def test_a_post_that_is_not_a_post_is_named(tokenizer, tagger, handler, bad):
    model = sog_model()
    for call in (lambda: model.generate_tags(["fine", bad], tokenizer), lambda: tagger(["fine", bad]),
                 lambda: handler({"inputs": ["fine", bad]})):
        with pytest.raises(TypeError, match=r"(post|inputs\[)\s?1.*a post is a string"):
            call()
    with pytest.raises(TypeError, match="takes a post"):
        tagger(None)


def test_empty_posts_get_the_prior_nothing_or_an_error_as_asked(tokenizer, tagger):
    model = sog_model()
    prior, blank, real = model.generate_tags(["", {"text": "  ", "location": None}, "pandas"], tokenizer, num_tags=3)
    assert len(prior) == 3 and labels_of(prior) == labels_of(blank)
    assert model.generate_tags(["", "pandas"], tokenizer, num_tags=3, empty_posts="none")[0] == []
    assert labels_of(model.generate_tags(["", "pandas"], tokenizer, num_tags=3, empty_posts="none")[1]) == \
        labels_of(real)
    with pytest.raises(ValueError, match="post 1 is empty"):
        model.generate_tags(["pandas", " "], tokenizer, empty_posts="error")
    assert tagger(["", "x"], empty_posts="none")[0] == []


# ----- Hugging Face idioms ------------------------------------------------------------------------------------
def test_labels_are_the_tags(tiny_model_folder, tagger):
    model = sog_model()
    assert model.config.id2label == dict(enumerate(TAGS)) and model.config.num_labels == len(TAGS)
    config = json.loads((tiny_model_folder / "config.json").read_text())
    assert config["id2label"] == {str(i): tag for i, tag in enumerate(TAGS)}
    assert tagger("x", top_k=2) == tagger("x", num_tags=2) and len(tagger("x", top_k=2)) == 2


LOAD_AS_THE_README_SAYS = r"""
import sys
from transformers import AutoModel, AutoTokenizer, pipeline
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)   # as the README says
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
tagger = pipeline("tag-generation", model=folder, trust_remote_code=True)
again = pipeline(model=folder, trust_remote_code=True)
print(tagger("word " * 5000)[0]["label"], again("x")[0]["label"], model.generate_tags(["y"], tokenizer)[0][0]["label"])
"""


def test_a_folder_loads_without_prompt_or_warning(tiny_model_folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", LOAD_AS_THE_README_SAYS, str(tiny_model_folder)], cwd=tmp_path,
                          env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("Do you wish to run the custom code", "already registered", "to instantiate a model of type",
                  "Token indices sequence length", "Warning", "WARNING"):
        assert noise not in done.stderr + done.stdout, done.stderr[-2000:]
