import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from configuration_sog import SOGConfig
from modeling_sog import SOGForTagGeneration, default_encoder_path

TAGS = ["python", "pandas", "javascript", "css", "html", "java", "sql", "regex"]


def tiny_config(tags=TAGS, **overrides) -> SOGConfig:
    """A 2-layer, 32-wide random encoder with the real MiniLM vocabulary size (so its tokenizer fits)."""
    fields = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, max_input_length=64, tag_names=list(tags),
                  mask_token_id=103)
    fields.update(overrides)
    return SOGConfig(**fields)


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


EXAMPLE_POSTS = ["How do I select rows of a pandas dataframe by a condition?", "a second example"]


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory, tokenizer):
    """A tiny random SOG model saved the way train.py saves one (tokenizer, handler, card, Space). Its tag
    embeddings are unit-scale, so different posts get different tags."""
    from hub_folder import write_hub_folder

    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    model = SOGForTagGeneration(tiny_config()).eval()
    with torch.no_grad():
        model.tag_embeddings.weight.normal_(0.0, 1.0)
    scores = {split: {f"{m}@{k}": 0.0 for m in ("precision", "recall") for k in (1, 3, 5)}
              for split in ("validation", "test")}
    write_hub_folder(model, tokenizer, folder, scores=scores, example_posts=EXAMPLE_POSTS)
    return folder


@pytest.fixture
def seeded():
    torch.manual_seed(0)


def labels_of(generated) -> list[str]:
    """The tag names of one post's generate_tags output."""
    return [tag["label"] for tag in generated]
