"""Fixtures (the shared helpers are in ``tests/helpers.py``)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from recipe import default_encoder_path
from tests.helpers import EXAMPLE_POSTS, tiny_sog


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_encoder_path())


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A saved 2-layer random BERT with the MiniLM tokenizer: train.py runs on it in seconds."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_encoder_path()).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory, tokenizer):
    """A tiny random SOG model saved the way train.py saves one (tokenizer, handler, card, Space). Its tag
    embeddings are unit-scale, so different posts get different tags."""
    from hub_folder import write_hub_folder

    folder = tmp_path_factory.mktemp("tiny-model")
    model = tiny_sog(unit_scale_tags=True)
    scores = {split: {f"{m}@{k}": 0.0 for m in ("precision", "recall") for k in (1, 3, 5)}
              for split in ("validation", "test")}
    write_hub_folder(model, tokenizer, folder, scores=scores, example_posts=EXAMPLE_POSTS)
    return folder
