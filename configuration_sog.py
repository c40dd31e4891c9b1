"""Configuration of sequence-oblivious tag generation (SOG) models.

Ships to the Hub next to ``modeling_sog.py``: imports only transformers and the standard library.
"""

from transformers import BertConfig

SCHEMES = ("1-to-M", "1-to-1")
DEFAULT_FEATURE_MARKERS = ["[IMG]", "[LOC]", "[TIME]"]


class SOGConfig(BertConfig):
    r"""
    Configuration of [`SOGForTagGeneration`] and of the ranking baseline [`BRForTagRanking`].

    It holds every field of the BERT-family encoder it wraps (``vocab_size``, ``hidden_size``, ...) plus:

    Args:
        tag_names (`list[str]`):
            The ordered tag vocabulary. Tag ``i`` is ``tag_names[i]``; ``tag2id``/``id2tag`` derive from it.
        scheme (`str`, *optional*, defaults to `"1-to-M"`):
            How training instances are built: ``"1-to-M"`` (target = uniform over every gold tag not yet
            given) or ``"1-to-1"`` (target = the next gold tag). Recorded so a saved model says how it learned.
        num_tags_to_generate (`int`, *optional*, defaults to 5):
            How many tags ``generate_tags`` returns when the caller does not say.
        max_input_length (`int`, *optional*, defaults to 384):
            Longest input in units (word pieces, markers, tags). The context is truncated to fit; the tags
            given and ``[MASK]`` never are.
        feature_markers (`list[str]`, *optional*, defaults to `["[IMG]", "[LOC]", "[TIME]"]`):
            Markers placed before the image description, the location and the time words of a post. Each is
            one unit with its own learned embedding, so any BERT tokenizer works unchanged.
        tag_head_transform (`bool`, *optional*, defaults to `True`):
            Whether the tag head transforms the ``[MASK]`` state (dense, activation, LayerNorm, as BERT's
            masked-LM head) before scoring it against the tag embeddings.
        weight_loss_by_target_count (`bool`, *optional*, defaults to `False`):
            Training only: weight each 1-to-M instance's KL loss by its number of target tags. The paper's
            unweighted loss ranks a post's first tag for R@1; the weighted one ranks it for P@1.

    Example:

    ```python
    >>> from configuration_sog import SOGConfig
    >>> config = SOGConfig(tag_names=["python", "pandas"], hidden_size=32, num_hidden_layers=1,
    ...                    num_attention_heads=2, intermediate_size=64)
    >>> config.tag2id["pandas"], config.num_tags
    (1, 2)
    ```"""

    model_type = "sog"

    tag_names: list[str] | None = None
    scheme: str = "1-to-M"
    num_tags_to_generate: int = 5
    max_input_length: int = 384
    feature_markers: list[str] | None = None
    tag_head_transform: bool = True
    weight_loss_by_target_count: bool = False

    def __post_init__(self, **kwargs):
        if self.tag_names is None:
            self.tag_names = []
        if self.feature_markers is None:
            self.feature_markers = list(DEFAULT_FEATURE_MARKERS)
        super().__post_init__(**kwargs)
        self._check_fields()

    def _check_fields(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"SOGConfig.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if not all(isinstance(tag, str) and tag for tag in self.tag_names):
            raise ValueError("SOGConfig.tag_names must be non-empty strings")
        if len(set(self.tag_names)) != len(self.tag_names):
            seen, dupes = set(), []
            for tag in self.tag_names:
                if tag in seen:
                    dupes.append(tag)
                seen.add(tag)
            raise ValueError(f"SOGConfig.tag_names has duplicates: {dupes[:5]}")
        if len(self.feature_markers) != len(DEFAULT_FEATURE_MARKERS):
            raise ValueError(
                f"SOGConfig.feature_markers needs {len(DEFAULT_FEATURE_MARKERS)} markers (image, location, time), "
                f"got {self.feature_markers!r}"
            )
        if self.num_tags_to_generate < 1:
            raise ValueError(f"SOGConfig.num_tags_to_generate must be >= 1, got {self.num_tags_to_generate}")
        if self.max_input_length < 3:
            raise ValueError(f"SOGConfig.max_input_length must be >= 3, got {self.max_input_length}")

    @property
    def num_tags(self) -> int:
        return len(self.tag_names)

    @property
    def tag2id(self) -> dict[str, int]:
        return {tag: i for i, tag in enumerate(self.tag_names)}

    @property
    def id2tag(self) -> dict[int, str]:
        return dict(enumerate(self.tag_names))


SOGConfig.register_for_auto_class()

__all__ = ["SOGConfig"]
