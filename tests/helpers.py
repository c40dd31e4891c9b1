"""What the tests share besides fixtures: the tiny random configs and models, the tag vocabulary, small readers."""

import torch

from configuration_sog import SOGConfig
from modeling_sog import SOGForTagGeneration

TAGS = ["python", "pandas", "javascript", "css", "html", "java", "sql", "regex"]
EXAMPLE_POSTS = ["How do I select rows of a pandas dataframe by a condition?", "a second example"]


def tiny_config(tags=TAGS, **overrides) -> SOGConfig:
    """A 2-layer, 32-wide random encoder with the real MiniLM vocabulary size (so its tokenizer fits)."""
    fields = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, max_input_length=64, tag_names=list(tags),
                  mask_token_id=103)
    fields.update(overrides)
    return SOGConfig(**fields)


def tiny_sog(unit_scale_tags: bool = False, **overrides) -> SOGForTagGeneration:
    """A seeded tiny SOG model in eval mode; ``unit_scale_tags``: tag embeddings drawn at unit scale, so that which
    tags are given changes the outputs a lot (at BERT's init scale they barely move them)."""
    torch.manual_seed(0)
    model = SOGForTagGeneration(tiny_config(**overrides)).eval()
    if unit_scale_tags:
        with torch.no_grad():
            model.tag_embeddings.weight.normal_(0.0, 1.0)
    return model


def labels_of(generated) -> list[str]:
    """The tag names of one post's generate_tags output."""
    return [tag["label"] for tag in generated]
