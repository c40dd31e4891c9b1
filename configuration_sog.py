"""Configuration of sequence-oblivious tag generation (SOG) models.

Ships to the Hub next to ``modeling_sog.py``: imports only transformers and the standard library.
"""

from transformers import BertConfig

SCHEMES = ("1-to-M", "1-to-1")
ATTENTION_LAYOUTS = ("paper", "one-pass")
TAG_LOSSES = ("sigmoid", "softmax")
LEXICAL_MODES = ("mix", "prior", "joint")
LEXICAL_UNITS = ("pieces", "words", "both")
DEFAULT_FEATURE_MARKERS = ["[IMG]", "[LOC]", "[TIME]"]


class SOGConfig(BertConfig):
    r"""
    Configuration of [`SOGForTagGeneration`] and of the baselines that share its input (BR-EF, BR-LF, AR).

    It holds every field of the BERT-family encoder it wraps (``vocab_size``, ``hidden_size``, ...) plus:

    Args:
        tag_names (`list[str]`):
            The ordered tag vocabulary. Tag ``i`` is ``tag_names[i]``; ``id2label``/``label2id`` (and
            ``id2tag``/``tag2id``) are derived from it, so ``num_labels`` is the number of tags.
        scheme (`str`, *optional*, defaults to `"1-to-M"`):
            How training instances are built: ``"1-to-M"`` (target = uniform over every gold tag not yet
            given) or ``"1-to-1"`` (target = the next gold tag). Recorded so a saved model says how it learned.
        attention_layout (`str`, *optional*, defaults to `"paper"`):
            Who attends to whom inside the encoder. ``"paper"``: every unit sees every unit (context, tags
            given, ``[MASK]``), as in the paper. ``"one-pass"``: context units see the context only, a given
            tag sees the context and itself, a ``[MASK]`` sees the context, the tags given to it and itself.
            The context is then independent of the tags, which lets training pack all instances of a post
            into one row and generation encode the context once.
        num_tags_to_generate (`int`, *optional*, defaults to 5):
            How many tags ``generate_tags`` returns when the caller does not say.
        max_input_length (`int`, *optional*, defaults to 384):
            Longest input in units. ``"paper"`` layout: context, tags given and ``[MASK]`` together (the context
            is truncated to fit; the tags and ``[MASK]`` never are). ``"one-pass"`` layout: the context plus
            the one position the tags and ``[MASK]``s share (the context is truncated to
            ``max_input_length - 3`` units whatever the number of tags).
        feature_markers (`list[str]`, *optional*, defaults to `["[IMG]", "[LOC]", "[TIME]"]`):
            Markers placed before the image description, the location and the time words of a post. Each is
            one unit with its own learned embedding, so any BERT tokenizer works unchanged.
        mask_token_id (`int`, *optional*):
            The tokenizer's ``[MASK]`` id, recorded by ``from_encoder``; ``forward`` checks that the units it
            reads the tags from are ``[MASK]``.
        tag_head_transform (`bool`, *optional*, defaults to `True`):
            Whether the tag head transforms the ``[MASK]`` state (dense, activation, LayerNorm, as BERT's
            masked-LM head) before scoring it against the tag embeddings.
        step_loss (`str`, *optional*, defaults to `"softmax"`):
            Generators (SOG, AR): how each step's logits learn the tags not yet given. ``"softmax"`` (the paper):
            KL divergence from the uniform distribution over those tags to a softmax over all tags;
            ``"sigmoid"``: an independent sigmoid per tag, binary cross-entropy against whether the tag is one of
            them (as BR's default ``ranking_loss``; a tag already given is a negative, as it holds no target mass in
            the softmax's target; ``step_probability`` is then the tag's sigmoid).
        weight_loss_by_target_count (`bool`, *optional*, defaults to `False`):
            Training only, ``step_loss="softmax"``: weight each 1-to-M instance's KL loss by its number of target
            tags. The paper's unweighted loss ranks a post's first tag for R@1; the weighted one ranks it for P@1.
        first_step_sigmoid_weight (`float`, *optional*, defaults to `0.0`):
            Training only, SOG with ``step_loss="softmax"`` and ``scheme="1-to-M"``: each first-step instance (no tag
            given) adds this weight times BR's objective to its softmax loss: the binary cross-entropy of every tag's
            sigmoid against whether it is gold, summed over the tags. It trains the first step, the one that chooses
            the top tag, on the ranking objective that ranks it best in BR-EF, and leaves the later steps as they are.
        first_tag_head (`bool`, *optional*, defaults to `False`):
            SOG under ``scheme="1-to-M"``: a second head on the ``[MASK]`` given no tag, BR-EF's (an independent
            sigmoid per tag from a linear map of the state, trained with binary cross-entropy against the gold set,
            summed over the tags), chooses a post's first tag; the step loss and the tag head still train every
            ``[MASK]``, and choose every later tag. The first tag's ``step_probability`` is then its sigmoid.
        ranking_loss (`str`, *optional*, defaults to `"sigmoid"`):
            Ranking models (BR) only: ``"sigmoid"`` (independent binary cross-entropy per tag) or
            ``"softmax"`` (the paper's BR: cross-entropy of a softmax over tags against the uniform
            distribution over the gold set).
        lexical_mode (`str`, *optional*):
            The lexical expert ("wide and deep"): a linear map from the TF-IDF bag of word pieces, words or both
            (``lexical_units``) of the *whole* post (every field, never truncated) to the tags, kept in the model
            (``lexical.weight``, ``lexical.bias``, the ``lexical.idf`` buffer) and computed once per post. How it
            meets the encoder's logits: ``"mix"``: fitted alone first (a regularised logistic regression per tag), frozen, and added at
            decoding as ``lexical_weight * log sigmoid(z)`` (a product of experts: the encoder's step probability
            times the expert's probability that the tag is in the set, to the power of the weight);
            ``"prior"``: the same frozen expert, its offset also added during training (from experts cross-fitted
            on the train split), so the encoder learns the residual; ``"joint"``: ``z`` itself added to the logits,
            the expert trained together with the encoder. ``None`` (default): no expert.
        lexical_weight (`float`, *optional*, defaults to 1.0):
            The expert's weight in ``"mix"`` and ``"prior"`` (``train.py`` fits it on the validation split): for
            ranking models, and for generators at the first step.
        lexical_later_weight (`float`, *optional*):
            Generators (SOG, AR): the expert's weight from the second step on (``train.py`` fits it on the
            validation split's R@5 once the first step's weight is fixed: the first tag is a P@1 question, the rest
            of the set a recall one). ``None`` (default): ``lexical_weight`` at every step.
        lexical_units (`str`, *optional*):
            What the expert's bag counts: ``"pieces"``, the tokenizer's word pieces (one row of ``lexical.weight``
            per piece of the vocabulary); ``"words"``, the words of ``lexical_words`` (one row per word);
            ``"both"``, word pieces and words in one bag (the piece rows, then the word rows). ``None`` (default):
            ``"words"`` where ``lexical_words`` is given, else ``"pieces"`` (how models saved before this field
            read).
        lexical_words (`list[str]`, *optional*):
            The expert's vocabulary when it reads words (``lexical_units`` ``"words"`` or ``"both"``): the post's
            words of two characters or more, lower-cased (scikit-learn's default token pattern), those of the
            image, location and time fields prefixed ``img_``, ``loc_``, ``time_`` as the classical baselines fuse
            them. ``train.py`` fits it on the train split (``--lexical_units words`` or ``both``).
        lexical_max_pieces (`int`, *optional*, defaults to 8192):
            Word pieces read per field for a piece expert's bag (the encoder reads ``max_input_length`` units).
        score_calibration (`dict`, *optional*):
            How ``generate_tags`` turns a tag's step probability into its ``score``, the estimated probability
            that the tag belongs to the post's set: ``sigmoid(slope * logit(p) + step_slope * log(step) +
            intercept)`` with ``step`` counted from 1. Fitted by ``train.py`` on the validation split. ``None``
            (a model never calibrated) makes ``score`` the step probability itself.

    Example:

    ```python
    >>> from configuration_sog import SOGConfig
    >>> config = SOGConfig(tag_names=["python", "pandas"], hidden_size=32, num_hidden_layers=1,
    ...                    num_attention_heads=2, intermediate_size=64)
    >>> config.label2id["pandas"], config.num_labels
    (1, 2)
    ```"""

    model_type = "sog"

    tag_names: list[str] | None = None
    scheme: str = "1-to-M"
    attention_layout: str = "paper"
    num_tags_to_generate: int = 5
    max_input_length: int = 384
    feature_markers: list[str] | None = None
    mask_token_id: int | None = None
    tag_head_transform: bool = True
    step_loss: str = "softmax"
    weight_loss_by_target_count: bool = False
    first_step_sigmoid_weight: float = 0.0
    first_tag_head: bool = False
    ranking_loss: str = "sigmoid"
    lexical_mode: str | None = None
    lexical_weight: float = 1.0
    lexical_later_weight: float | None = None
    lexical_units: str | None = None
    lexical_words: list[str] | None = None
    lexical_max_pieces: int = 8192
    score_calibration: dict | None = None

    def __post_init__(self, **kwargs):
        if self.tag_names is None:
            self.tag_names = []
        if self.feature_markers is None:
            self.feature_markers = list(DEFAULT_FEATURE_MARKERS)
        if self.lexical_units is None:   # what a config saved before the field said by lexical_words alone
            self.lexical_units = "pieces" if self.lexical_words is None else "words"
        super().__post_init__(**kwargs)
        self._check_fields()
        # The labels are the tags: pipelines, model cards and users read id2label, not tag_names.
        if self.tag_names:
            self.id2label = dict(enumerate(self.tag_names))
            self.label2id = {tag: i for i, tag in enumerate(self.tag_names)}

    def _check_fields(self):
        for field, allowed in (("scheme", SCHEMES), ("attention_layout", ATTENTION_LAYOUTS),
                               ("ranking_loss", TAG_LOSSES), ("step_loss", TAG_LOSSES)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"SOGConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}")
        if self.weight_loss_by_target_count and self.step_loss != "softmax":
            raise ValueError("SOGConfig.weight_loss_by_target_count weights the softmax step loss; with "
                             f"step_loss={self.step_loss!r} every target tag is already a positive of its own")
        if self.first_step_sigmoid_weight < 0:
            raise ValueError(f"SOGConfig.first_step_sigmoid_weight must be >= 0, got {self.first_step_sigmoid_weight}")
        if self.first_step_sigmoid_weight and (self.step_loss != "softmax" or self.scheme != "1-to-M"):
            raise ValueError("SOGConfig.first_step_sigmoid_weight adds BR's objective to the first step of the softmax "
                             "step loss under scheme='1-to-M' (the first instance's labels are then the gold set); got "
                             f"step_loss={self.step_loss!r}, scheme={self.scheme!r}")
        if self.first_tag_head and self.scheme != "1-to-M":
            raise ValueError("SOGConfig.first_tag_head learns the gold set from the first instance's labels, which "
                             f"only scheme='1-to-M' gives (1-to-1 labels the next tag alone); got scheme={self.scheme!r}")
        if self.lexical_mode is not None and self.lexical_mode not in LEXICAL_MODES:
            raise ValueError(f"SOGConfig.lexical_mode must be None or one of {LEXICAL_MODES}, got {self.lexical_mode!r}")
        words = self.lexical_words
        if self.lexical_units not in LEXICAL_UNITS:
            raise ValueError(f"SOGConfig.lexical_units must be one of {LEXICAL_UNITS}, got {self.lexical_units!r}")
        if (words is None) != (self.lexical_units == "pieces"):
            raise ValueError(f"SOGConfig.lexical_units={self.lexical_units!r} " + (
                "reads no words: leave lexical_words unset" if words is not None else
                "needs lexical_words, the vocabulary (lexical.fit_word_vocabulary makes it from a train split)"))
        if words is not None and (not all(isinstance(word, str) and word for word in words)
                                  or len(set(words)) != len(words)):
            raise ValueError("SOGConfig.lexical_words must be distinct non-empty strings (lexical.fit_word_vocabulary "
                             "makes them from a train split)")
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
        if self.max_input_length < 4:
            raise ValueError(f"SOGConfig.max_input_length must be >= 4, got {self.max_input_length}")
        calibration = self.score_calibration
        if calibration is not None and not {"slope", "step_slope", "intercept"} <= set(calibration):
            raise ValueError("SOGConfig.score_calibration needs 'slope', 'step_slope' and 'intercept', got "
                             f"{sorted(calibration)}")

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
