"""Sequence-oblivious tag generation (SOG): a BERT encoder that generates a SET of tags.

Ships to the Hub: imports only torch, transformers, the standard library and its sibling files.

Input layout, in units (word pieces, feature markers, tags)::

    [CLS] [IMG] caption [LOC] location [TIME] time words  post text [SEP] tag_1 ... tag_k [MASK]
    '---------------------- context: segment 0 -----------------------'  '--- segment 1 -------'

Every tag is one unit with its own embedding. Tags and ``[MASK]`` all sit at the same position (right
after ``[SEP]``), so nothing tells them apart but their embeddings: the ``[MASK]`` logits are the same
for any order of the tags given. Unit ids: word pieces ``[0, vocab_size)``, then the feature markers,
then the tags.

One class per concept, in the order a post flows through them:

- ``PostUnits``: a post's fields -> the unit ids of its context (post-to-units encoding);
- ``PieceBags`` / ``WordBags`` / ``PiecesAndWords`` (``LexicalInput``, ``config.lexical_units``) and
  ``LexicalExpert``: the wide half, a linear map from the TF-IDF bag of the whole post's word pieces, words, or
  both, to the tags;
- ``PaperLayout`` / ``OnePassLayout`` (``config.attention_layout``): how rows are assembled, positioned and
  packed, and who attends to whom. The paper's: everyone sees everyone. One-pass: the context never sees
  the tags, which packs a post's N training instances into one row and lets generation encode the context once;
- ``SOGPreTrainedModel``: the thin ``PreTrainedModel`` base (config class, weight init);
- ``SOGTagModel``: what every tag model here shares (the encoder over the fused post and its markers);
- ``TagGenerationMixin`` and ``SetDecoder``: ``generate_tags``, and turning scores into a tag set;
- ``SOGTagHead`` and ``SOGForTagGeneration``: the ``[MASK]`` head and the SOG model itself.
"""

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoTokenizer, BertModel, DynamicCache, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .configuration_sog import SOGConfig
    from .inputs_sog import POST_DESCRIPTION, EmptyPostError, generation_options, is_empty_post, post_fields
    from .pipeline_sog import TagGenerationPipeline  # imported so the pipeline file travels with the model
except ImportError:  # imported as a top-level module (development checkout)
    from configuration_sog import SOGConfig
    from inputs_sog import POST_DESCRIPTION, EmptyPostError, generation_options, is_empty_post, post_fields
    from pipeline_sog import TagGenerationPipeline

SUPPORTED_ENCODER_TYPES = ("bert",)
# Config fields of the encoder's checkpoint that must not be copied into a SOGConfig.
_ENCODER_FIELDS_TO_DROP = ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype",
                           "auto_map", "_name_or_path", "id2label", "label2id")
# What each unit of an input row is; derived from input_ids, token_type_ids and attention_mask.
UNIT_PAD, UNIT_CONTEXT, UNIT_TAG, UNIT_MASK = 0, 1, 2, 3


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


def label_weights(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``labels`` as a ``[instances, tags]`` float weight per tag, checked against the logits: a tag id per instance
    (1-to-1) becomes its one-hot row; a weight per tag (1-to-M) is kept."""
    if labels.dim() == 1:
        target = F.one_hot(labels.long(), logits.size(-1)).float()
    else:
        target = labels.float()
    if target.shape != logits.shape:
        raise ValueError(f"labels of shape {tuple(target.shape)} do not match the logits {tuple(logits.shape)}: "
                         "one row of labels per [MASK] (per instance)")
    return target


def kl_to_target_loss(logits: torch.Tensor, labels: torch.Tensor, weight_by_target_count: bool = False) -> torch.Tensor:
    """KL(target || softmax(logits)), averaged over instances.

    ``labels`` is either a tag id per instance (1-to-1) or a non-negative weight per tag (1-to-M: 1 for
    every gold tag not yet given), normalised here into the target distribution.

    ``weight_by_target_count`` weights each instance by its label mass (the number of target tags), relative
    to the batch mean. Unweighted, the first step (nothing given) learns to rank a tag by E[1(tag in gold) /
    |gold|], the ranking that maximises R@1; weighted, by P(tag in gold), the one that maximises P@1.
    """
    target = label_weights(logits, labels)
    totals = target.sum(-1, keepdim=True)
    if bool((totals <= 0).any()):
        raise ValueError("every training instance needs at least one target tag (a row of labels sums to 0)")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if not weight_by_target_count:
        return F.kl_div(log_probs, target / totals, reduction="batchmean")
    per_instance = F.kl_div(log_probs, target / totals, reduction="none").sum(-1)
    weights = totals.squeeze(-1) / totals.mean()
    return (per_instance * weights).mean()


def sigmoid_set_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of every tag's sigmoid against whether it is a target tag, averaged over instances and
    tags. ``labels`` as for ``kl_to_target_loss``: a tag id per instance, or a weight per tag (a target: > 0)."""
    target = (label_weights(logits, labels) > 0).float()
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def first_step_sigmoid_loss(logits: torch.Tensor, labels: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """BR's objective on the ``first`` instances (``[masks]`` bool: those given no tag): the binary cross-entropy of
    every tag's sigmoid against whether it is a target, summed over the tags and over those instances, divided by
    the number of all instances, so that each first-step instance adds it to its own share of a batch-mean loss."""
    target = (label_weights(logits, labels) > 0).float()
    summed = F.binary_cross_entropy_with_logits(logits.float()[first], target[first], reduction="sum")
    return summed / logits.size(0)


def tag_loss(logits: torch.Tensor, labels: torch.Tensor, scoring: str, weight_by_target_count: bool = False):
    """The loss of a model whose tag probabilities are ``scoring`` (``"softmax"``: ``kl_to_target_loss``;
    ``"sigmoid"``: ``sigmoid_set_loss``, where every target tag is a positive whatever their number)."""
    if scoring == "softmax":
        return kl_to_target_loss(logits, labels, weight_by_target_count)
    return sigmoid_set_loss(logits, labels)


def tag_probabilities(logits: torch.Tensor, scoring: str) -> torch.Tensor:
    """``[..., tags]`` logits -> probabilities: a softmax over the tags, or each tag's own sigmoid."""
    return logits.float().softmax(-1) if scoring == "softmax" else torch.sigmoid(logits.float())


def posts_per_tag(post_tag_ids, num_tags: int) -> torch.Tensor:
    """``[tags]``: how many posts carry each tag (a tag listed twice in a post counts once)."""
    counts = torch.zeros(num_tags, dtype=torch.float64)
    for tags in post_tag_ids:
        counts[list(set(tags))] += 1
    return counts


def log_tag_shares(post_tag_ids, num_tags: int) -> torch.Tensor:
    """Centred log of each tag's add-one share of the posts' tag occurrences (counted once per post)."""
    counts = posts_per_tag(post_tag_ids, num_tags)
    share = (counts + 1) / (counts.sum() + num_tags)   # add-one: no tag starts at -inf
    return torch.log(share) - torch.log(share).mean()


def prior_output_bias(post_tag_ids, num_tags: int, scoring: str) -> torch.Tensor:
    """The output bias that starts a model at the training tag frequencies. Softmax: ``log_tag_shares``. Sigmoid:
    ``log(p / (1 - p))`` with ``p`` the share of posts carrying the tag.

    With a zero bias, hundreds of independent sigmoids first spend many steps learning that almost every tag is
    absent; a short budget then ends with rankings worse than the frequency baseline."""
    if scoring == "softmax":
        return log_tag_shares(post_tag_ids, num_tags)
    prior = (posts_per_tag(post_tag_ids, num_tags) / max(1, len(post_tag_ids))).clamp(1e-4, 1 - 1e-4)
    return torch.log(prior / (1 - prior))


# ----- post-to-units encoding ------------------------------------------------------------------------------
class PostUnits:
    """A post's fields -> the unit ids of its context: markers before non-empty fields, the text last.

    Unit ids: word pieces ``[0, vocab_size)``, then the feature markers (``marker_offset``), then the tags
    (``tag_offset``). Reads the config it is given live, so a changed ``max_input_length`` takes effect."""

    def __init__(self, config):
        self.config = config

    @property
    def marker_offset(self) -> int:
        return self.config.vocab_size

    @property
    def tag_offset(self) -> int:
        return self.config.vocab_size + len(self.config.feature_markers)

    def check_tokenizer(self, tokenizer):
        for name in ("cls_token_id", "sep_token_id", "mask_token_id", "pad_token_id"):
            if getattr(tokenizer, name, None) is None:
                raise ValueError(f"tokenizer has no {name.replace('_id', '')}; SOG needs a BERT-style tokenizer")
        if len(tokenizer) > self.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {self.config.vocab_size}: "
                "use the tokenizer saved with the model (or the encoder's)"
            )
        expected = self.config.mask_token_id
        if expected is not None and tokenizer.mask_token_id != expected:
            raise ValueError(f"tokenizer's [MASK] id is {tokenizer.mask_token_id}, the model's is {expected}: "
                             "use the tokenizer saved with the model (or the encoder's)")

    @staticmethod
    def field_texts(posts) -> list[tuple[str, str, str, str]]:
        """``post_fields`` of every post; a bad post is an error that says which one it is."""
        if isinstance(posts, (str, dict)) or not isinstance(posts, (list, tuple)):
            raise TypeError(f"expected a list of posts ({POST_DESCRIPTION}), got {type(posts).__name__}; "
                            "wrap a single post in a list")
        fields = []
        for index, post in enumerate(posts):
            try:
                fields.append(post_fields(post))
            except (TypeError, ValueError) as error:
                raise type(error)(f"post {index}: {error}") from None
        return fields

    def field_pieces(self, posts, tokenizer, limit: int) -> list[list[list[int]]]:
        """Per post, the word pieces of each field (image, location, time words, text), at most ``limit`` a field.

        Post text is data: a literal ``[CLS]``/``[SEP]``/``[MASK]``/``[PAD]`` in it is tokenized as the
        ordinary characters it is (``split_special_tokens``), never as the control unit."""
        self.check_tokenizer(tokenizer)
        fields = self.field_texts(posts)
        flat = [value for row in fields for value in row]
        pieces = tokenizer(flat, add_special_tokens=False, split_special_tokens=True, truncation=True,
                           max_length=limit)["input_ids"] if flat else []
        width = len(fields[0]) if fields else 0
        return [pieces[i * width:(i + 1) * width] for i in range(len(fields))]

    def field_units(self, posts, tokenizer, pieces=None) -> list[list[list[int]]]:
        """Per post, the unit ids of each non-empty field, its marker first: image, location, time, then the
        text (always present, possibly empty). Each field is cut at ``max_input_length`` units, which the context
        never exceeds anyway; ``pieces`` (``field_pieces`` with a larger limit) saves tokenizing twice."""
        limit = self.config.max_input_length
        pieces = self.field_pieces(posts, tokenizer, limit) if pieces is None else pieces
        markers = len(self.config.feature_markers)
        per_post = []
        for row in pieces:
            units = [[self.marker_offset + f] + list(ids[:limit]) for f, ids in enumerate(row[:markers]) if ids]
            per_post.append(units + [list(row[markers][:limit])])
        return per_post

    def contexts(self, posts, tokenizer, pieces=None) -> list[list[int]]:
        """Unit ids of each post's context (no [CLS]/[SEP])."""
        return [[unit for field in fields for unit in field] for fields in self.field_units(posts, tokenizer, pieces)]

    def encode(self, posts, tokenizer, context_layout: str = "joined", pieces=None):
        """What a model's encoder reads of each post: its context (``"joined"``) or its fields apart
        (``"per_field"``, late fusion)."""
        if context_layout == "joined":
            return self.contexts(posts, tokenizer, pieces)
        return self.field_units(posts, tokenizer, pieces)

    def kinds(self, input_ids, token_type_ids, attention_mask) -> torch.Tensor:
        """``[batch, units]``: UNIT_CONTEXT for ``[CLS] context [SEP]``, UNIT_TAG / UNIT_MASK for segment-1 units,
        UNIT_PAD for padding."""
        tail = token_type_ids == 1
        kinds = torch.full_like(input_ids, UNIT_CONTEXT)
        kinds = torch.where(tail & (input_ids >= self.tag_offset), UNIT_TAG, kinds)
        kinds = torch.where(tail & (input_ids < self.tag_offset), UNIT_MASK, kinds)
        return torch.where(attention_mask == 0, UNIT_PAD, kinds)


# ----- the lexical expert ----------------------------------------------------------------------------------
WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")   # scikit-learn's default token pattern: words of 2+ characters
FIELD_WORD_PREFIXES = ("img_", "loc_", "time_", "")   # image, location, time words, text (``post_fields``' order)


def post_words(fields) -> list[tuple[str, str]]:
    """A post's fields (``post_fields``) -> (feature, the word as written) for each of its words: lower-cased, those
    of the image, location and time fields prefixed as ``classical_baselines.fused_document`` fuses them."""
    return [(prefix + match.group().lower(), match.group()) for prefix, text in zip(FIELD_WORD_PREFIXES, fields)
            for match in WORD_PATTERN.finditer(text)]


def bag_of(features) -> tuple[list[int], list[int]]:
    """Feature ids -> (the distinct ids in order of first occurrence, how often each occurs)."""
    counts = {}
    for feature in features:
        counts[feature] = counts.get(feature, 0) + 1
    return list(counts), list(counts.values())


class LexicalInput:
    """What the lexical expert reads of a post: its bag of features (distinct ids, how often each occurs) over the
    whole post, never the encoder's truncated context. A kind states how many features it has (``rows``, the
    rows of ``LexicalExpert.weight``), the word pieces it tokenizes that the encoder's context can reuse
    (``pieces``), its bags, and which of its features each word of the post is made of (``word_features``: what
    explanations are told in)."""

    def __init__(self, units: PostUnits):
        self.units, self.config = units, units.config

    @property
    def rows(self) -> int:
        raise NotImplementedError

    @property
    def description(self) -> str:
        """What the bag counts, in words (model cards)."""
        raise NotImplementedError

    def pieces(self, posts, tokenizer):
        """``field_pieces`` the encoder can reuse, or None where this kind does not tokenize."""
        return None

    def bags(self, posts, tokenizer, pieces=None) -> list[tuple[list[int], list[int]]]:
        raise NotImplementedError

    def word_features(self, fields, tokenizer) -> list[tuple[str, list[int]]]:
        """Per word of a post (``post_fields``), the word as written and the ids of its features."""
        raise NotImplementedError

    @staticmethod
    def tensors(bags) -> dict:
        """Bags -> ``lexical_ids`` ``[posts, longest bag]`` (distinct feature ids, 0 pads) and ``lexical_counts``
        (how often each occurs; 0 on padding)."""
        width = max([len(ids) for ids, _ in bags] + [1])
        lexical_ids = torch.zeros((len(bags), width), dtype=torch.long)
        lexical_counts = torch.zeros((len(bags), width), dtype=torch.float32)
        for row, (ids, counts) in enumerate(bags):
            if len(ids):
                lexical_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                lexical_counts[row, :len(ids)] = torch.tensor(counts, dtype=torch.float32)
        return {"lexical_ids": lexical_ids, "lexical_counts": lexical_counts}


class WordBags(LexicalInput):
    """Features are the words of ``config.lexical_words`` (``post_words``; other words are not read): whole words,
    as TF-IDF + LR reads them. Alone, fitted the same way on the same validation posts, it leads word pieces on
    debtags (package and program names, which pieces cut into parts other words share) and trails them on cooking
    (``benchmarks.expert_features``; the README): ``train.py``'s default stays word pieces."""

    def __init__(self, units: PostUnits):
        super().__init__(units)
        self.index = {word: row for row, word in enumerate(self.config.lexical_words)}

    @property
    def rows(self) -> int:
        return len(self.index)

    @property
    def description(self) -> str:
        return f"{self.rows:,} words"

    def bags(self, posts, tokenizer, pieces=None):
        return [bag_of(self.index[feature] for feature, _ in post_words(fields) if feature in self.index)
                for fields in self.units.field_texts(posts)]

    def word_features(self, fields, tokenizer):
        return [(surface, [self.index[feature]]) for feature, surface in post_words(fields) if feature in self.index]


class PieceBags(LexicalInput):
    """Features are the tokenizer's word pieces (``lexical_max_pieces`` a field), one row per piece of the
    vocabulary (a config without ``lexical_words``). Tokenizing the post once serves both: the encoder's context is
    the first pieces of each field."""

    @property
    def rows(self) -> int:
        return self.config.vocab_size

    @property
    def description(self) -> str:
        return "word pieces"

    def pieces(self, posts, tokenizer):
        return self.units.field_pieces(posts, tokenizer, self.config.lexical_max_pieces)

    def bags(self, posts, tokenizer, pieces=None):
        pieces = self.pieces(posts, tokenizer) if pieces is None else pieces
        return [bag_of(piece for ids in row for piece in ids) for row in pieces]

    def word_features(self, fields, tokenizer):
        words = []
        for text in fields:
            if not text:
                continue
            encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=True, truncation=True,
                                max_length=self.config.lexical_max_pieces, return_offsets_mapping=True)
            spans = {}
            for position, word in enumerate(encoded.word_ids()):
                if word is not None:
                    spans.setdefault(word, []).append(position)
            for positions in spans.values():
                start, end = encoded["offset_mapping"][positions[0]][0], encoded["offset_mapping"][positions[-1]][1]
                words.append((text[start:end], [encoded["input_ids"][p] for p in positions]))
        return words


class PiecesAndWords(LexicalInput):
    """Word pieces and words in one bag (``lexical_units="both"``): the rows of ``PieceBags``, then those of
    ``WordBags`` after them. Pieces keep what words lose (parts shared by related words, words of one post only);
    words keep what pieces cut apart (package and program names). Alone, fitted the same way on the same
    validation posts, it led both single kinds on debtags (``benchmarks.expert_features``; the README)."""

    def __init__(self, units: PostUnits):
        super().__init__(units)
        self.word_pieces, self.words = PieceBags(units), WordBags(units)

    @property
    def rows(self) -> int:
        return self.word_pieces.rows + self.words.rows

    @property
    def description(self) -> str:
        return f"word pieces and {self.words.description}"

    def pieces(self, posts, tokenizer):
        return self.word_pieces.pieces(posts, tokenizer)

    def bags(self, posts, tokenizer, pieces=None):
        offset = self.word_pieces.rows
        return [(piece_ids + [offset + i for i in word_ids], piece_counts + word_counts)
                for (piece_ids, piece_counts), (word_ids, word_counts)
                in zip(self.word_pieces.bags(posts, tokenizer, pieces), self.words.bags(posts, tokenizer))]

    def word_features(self, fields, tokenizer):
        offset = self.word_pieces.rows
        return self.word_pieces.word_features(fields, tokenizer) + [
            (surface, [offset + i for i in ids]) for surface, ids in self.words.word_features(fields, tokenizer)]


LEXICAL_INPUTS = {"pieces": PieceBags, "words": WordBags, "both": PiecesAndWords}   # config.lexical_units -> kind


def lexical_input(units: PostUnits) -> LexicalInput:
    """The kind of bag a config's expert reads (``config.lexical_units``)."""
    return LEXICAL_INPUTS[units.config.lexical_units](units)


class LexicalExpert(nn.Module):
    """The wide half of a wide-and-deep tagger: ``z = tfidf(post) V + b``, a linear map from the TF-IDF bag of a
    post's features (``LexicalInput``: words or word pieces) to the tags (``V``: ``weight``, features x tags).
    ``idf`` is a buffer fitted on the train split (0 for features the expert ignores); tf is sublinear
    (``1 + log count``) and each post's vector has unit length, as scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True)`` makes them."""

    def __init__(self, rows: int, num_tags: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, num_tags))
        self.bias = nn.Parameter(torch.zeros(num_tags))
        self.register_buffer("idf", torch.zeros(rows))

    def features(self, lexical_ids: torch.Tensor, lexical_counts: torch.Tensor) -> torch.Tensor:
        """``[posts, features]`` ids and counts -> the TF-IDF weight of each ``[posts, features]``."""
        tf = torch.where(lexical_counts > 0, 1 + torch.log(lexical_counts.clamp(min=1)), torch.zeros_like(lexical_counts))
        weights = tf * self.idf[lexical_ids]
        return weights / weights.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def forward(self, lexical_ids: torch.Tensor, lexical_counts: torch.Tensor) -> torch.Tensor:
        """-> ``z`` ``[posts, tags]``: the expert's logit that each tag belongs to the post's set."""
        weights = self.features(lexical_ids, lexical_counts)
        return F.embedding_bag(lexical_ids, self.weight, per_sample_weights=weights.to(self.weight.dtype),
                               mode="sum") + self.bias


# ----- input layouts: rows, positions, packing, who attends to whom ---------------------------------------
def additive_mask(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[batch, query, key]`` booleans -> the ``[batch, 1, query, key]`` float mask BERT's attention adds.

    Float, not boolean: transformers' eager attention misreads a boolean 4-D mask (hf-conventions 1.6)."""
    blocked = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return blocked.masked_fill(~visible, torch.finfo(dtype).min).unsqueeze(1)


def order_free_positions(token_type_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, units]``: context units count up from 0; every segment-1 unit (tags, [MASK]) sits right after
    [SEP], so the order of the tags given is invisible to the encoder."""
    context_length = ((token_type_ids == 0) & (attention_mask == 1)).sum(-1, keepdim=True)   # [batch, 1]
    positions = torch.arange(token_type_ids.size(1), device=token_type_ids.device).expand_as(token_type_ids)
    positions = torch.where(token_type_ids == 1, context_length, positions)
    return positions.masked_fill(attention_mask == 0, 0)


class InputLayout:
    """What the two layouts share: assembling ``[CLS] context [SEP] tail`` rows into padded tensors, where the
    context is what gets truncated. Each layout says how much context fits and who attends to whom, and
    states what it allows through its own properties:

    - ``packs_instances``: a row may hold every training instance of a post (``build_packed_inputs``);
    - ``caches_context``: the context's states do not depend on the tags, so generation encodes it once;
    - ``needs_4d_mask``: the encoder needs a ``[batch, 1, query, key]`` mask (an attention implementation
      that only takes padding masks, such as flash attention, cannot run it)."""

    name: str

    def __init__(self, config):
        self.config = config

    def context_budget(self, tail_length: int) -> int:
        raise NotImplementedError

    def encoder_attention_mask(self, kinds, unit_steps, dtype) -> torch.Tensor:
        raise NotImplementedError

    def tags_given(self, kinds, unit_steps=None) -> torch.Tensor:
        """``[masks]``, in row order as the logits: how many tags each ``[MASK]`` reads."""
        raise NotImplementedError

    def assemble_rows(self, contexts, tails, tokenizer, tail_steps=None) -> dict:
        """Pad ``[CLS] context [SEP] tail`` rows into tensors of shape ``[rows, width]`` (``width``: the longest
        row): ``input_ids``, ``attention_mask``, ``token_type_ids`` (1 on the tail) and, with ``tail_steps``,
        ``unit_steps`` (0 on the context, the tail's steps after it)."""
        rows, types, steps = [], [], []
        for i, (context, tail) in enumerate(zip(contexts, tails, strict=True)):
            budget = self.context_budget(len(tail))
            head = [tokenizer.cls_token_id] + list(context[:budget]) + [tokenizer.sep_token_id]
            rows.append(head + list(tail))
            types.append([0] * len(head) + [1] * len(tail))
            if tail_steps is not None:
                steps.append([0] * len(head) + list(tail_steps[i]))
        width = max(len(r) for r in rows)
        batch = {"input_ids": torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long),
                 "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
                 "token_type_ids": torch.zeros((len(rows), width), dtype=torch.long)}
        if tail_steps is not None:
            batch["unit_steps"] = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, row_types) in enumerate(zip(rows, types)):
            batch["input_ids"][i, :len(row)] = torch.tensor(row)
            batch["token_type_ids"][i, :len(row)] = torch.tensor(row_types)
            batch["attention_mask"][i, :len(row)] = 1
            if tail_steps is not None:
                batch["unit_steps"][i, :len(row)] = torch.tensor(steps[i])
        return batch


class PaperLayout(InputLayout):
    """The paper's layout: every unit (context, tags given, ``[MASK]``) sees every other, padding aside.

    One ``[MASK]`` per row, at the end; context states depend on the tags, so nothing can be cached and the
    context is truncated to leave room for the tags and ``[MASK]``."""

    name = "paper"
    packs_instances = False
    caches_context = False
    needs_4d_mask = False

    def context_budget(self, tail_length: int) -> int:
        return max(0, self.config.max_input_length - 2 - tail_length)

    def encoder_attention_mask(self, kinds, unit_steps, dtype):
        return (kinds != UNIT_PAD).long()  # 2-D: BERT builds its usual padding mask

    def tags_given(self, kinds, unit_steps=None):
        return (kinds == UNIT_TAG).sum(-1, keepdim=True).expand_as(kinds)[kinds == UNIT_MASK]   # every tag of its row


class OnePassLayout(InputLayout):
    """Context units see the context only; a given tag sees the context and itself; a ``[MASK]`` sees the
    context, the tags given to its own instance and itself.

    ``unit_steps`` says which tags a ``[MASK]`` is given: a tag carries the step it was given at, a ``[MASK]``
    the step it predicts, and a ``[MASK]`` sees the tags of earlier steps. One row can then hold every instance
    of a post (``[SEP] g_1 .. g_(N-1) [MASK]_1 .. [MASK]_N``). Without ``unit_steps`` every ``[MASK]`` sees every
    tag of its row. Since no context unit sees a tag, the context is truncated to the same length whatever
    the number of tags (all tags share one position)."""

    name = "one-pass"
    packs_instances = True
    caches_context = True
    needs_4d_mask = True

    def context_budget(self, tail_length: int) -> int:
        return self.config.max_input_length - 3

    @staticmethod
    def visibility(key_kinds, key_steps, query_slots) -> torch.Tensor:
        """``[batch, query, key]``: may the unit at ``query_slots`` (``[batch, query]`` indices into the keys)
        see each key? ``key_kinds``, ``key_steps``: ``[batch, key]``."""
        query_kinds, query_steps = key_kinds.gather(1, query_slots), key_steps.gather(1, query_slots)  # [b, q]
        slots = torch.arange(key_kinds.size(1), device=key_kinds.device)
        itself = query_slots.unsqueeze(-1) == slots                                                 # [b, q, k]
        context = (key_kinds == UNIT_CONTEXT).unsqueeze(1)                                          # [b, 1, k]
        given = ((query_kinds == UNIT_MASK).unsqueeze(-1) & (key_kinds == UNIT_TAG).unsqueeze(1)
                 & (key_steps.unsqueeze(1) < query_steps.unsqueeze(-1)))                            # [b, q, k]
        return context | itself | given

    def sees(self, kinds, unit_steps) -> torch.Tensor:
        """``[batch, unit, unit]``: ``visibility`` with every unit as a query."""
        if unit_steps is None:  # one instance per row: its [MASK] sees every tag
            unit_steps = (kinds == UNIT_MASK).long()
        every_unit = torch.arange(kinds.size(1), device=kinds.device).expand_as(kinds)
        return self.visibility(kinds, unit_steps, every_unit)

    def encoder_attention_mask(self, kinds, unit_steps, dtype):
        return additive_mask(self.sees(kinds, unit_steps), dtype)

    def tags_given(self, kinds, unit_steps=None):
        # the tags a [MASK] attends to: the count follows the attention rule itself
        return (self.sees(kinds, unit_steps) & (kinds == UNIT_TAG).unsqueeze(1)).sum(-1)[kinds == UNIT_MASK]


LAYOUTS = {layout.name: layout for layout in (PaperLayout, OnePassLayout)}


# ----- set decoding ------------------------------------------------------------------------------------------
def calibrated_scores(step_probabilities: torch.Tensor, step: int, calibration: dict | None) -> torch.Tensor:
    """The ``score`` of tags chosen at ``step`` (from 1): the estimated probability that each is in the set.

    ``calibration`` (``config.score_calibration``) maps the step probability and the step to that estimate,
    ``sigmoid(slope * logit(p) + step_slope * log(step) + intercept)``; without one the score is ``p``."""
    if calibration is None:
        return step_probabilities
    p = step_probabilities.double().clamp(1e-12, 1 - 1e-12)
    z = calibration["slope"] * torch.logit(p) + calibration["step_slope"] * math.log(step) + calibration["intercept"]
    return torch.sigmoid(z).to(step_probabilities.dtype)


@dataclass
class ExpertOffsets:
    """What the lexical expert adds to a generator's logits, ``[posts, tags]`` each: at the first step and at every
    later one (``config.lexical_later_weight``); ranking models, having one pass, read ``first``."""
    first: torch.Tensor
    later: torch.Tensor

    def at(self, step: int) -> torch.Tensor:
        return self.first if step == 1 else self.later


class SetDecoder:
    """Turns a model's scores into each post's tag set: at most ``num_tags`` tags, never one twice, each with its
    ``score`` (calibrated) and ``step_probability``; with ``threshold``, a post's tags end before the first whose
    score is under it. Generators decode step by step (``greedy``), ranking models from one pass (``ranked``).
    Both return, per post, ``(tag id, score, step probability)`` in the order the tags were chosen."""

    def __init__(self, num_tags: int, threshold: float | None = None, calibration: dict | None = None):
        self.num_tags, self.threshold, self.calibration = num_tags, threshold, calibration

    def greedy(self, step_logits, num_posts: int, offsets: ExpertOffsets | None = None,
               probabilities=None) -> list[list[tuple]]:
        """All posts advance together; ``step_logits(active, chosen_tags)`` gives the ``[active, tags]`` logits of
        the active posts given their tags so far; ``offsets`` (the lexical expert's, computed once per post) are
        added at every step, the step's own. A chosen tag is masked out of later steps. ``probabilities`` maps
        the masked logits of a step to its probabilities, ``probabilities(logits, step)`` (the model's
        ``step_probabilities``; default: a softmax)."""
        chosen = [[] for _ in range(num_posts)]
        active = list(range(num_posts))
        for step in range(1, self.num_tags + 1):
            if not active:
                break
            logits = step_logits(active, [[t for t, _, _ in chosen[i]] for i in active]).float().clone()
            if offsets is not None:
                added = offsets.at(step)
                logits += added[torch.tensor(active, device=added.device)].to(logits.device).float()
            for row, i in enumerate(active):
                logits[row, [t for t, _, _ in chosen[i]]] = float("-inf")
            step_probs = tag_probabilities(logits, "softmax") if probabilities is None else probabilities(logits, step)
            best_prob, best_tag = step_probs.max(-1)
            scores = calibrated_scores(best_prob, step, self.calibration)
            still_active = []
            for row, i in enumerate(active):
                if self.threshold is not None and scores[row].item() < self.threshold:
                    continue
                chosen[i].append((best_tag[row].item(), scores[row].item(), best_prob[row].item()))
                still_active.append(i)
            active = still_active
        return chosen

    def ranked(self, probabilities: torch.Tensor) -> list[list[tuple]]:
        """``probabilities`` ``[posts, tags]`` from one pass: the most probable tags; a tag's step is its rank."""
        top_probs, top_tags = probabilities.topk(self.num_tags, dim=-1)                     # [posts, num_tags]
        scores = torch.stack([calibrated_scores(top_probs[:, rank], rank + 1, self.calibration)
                              for rank in range(self.num_tags)], dim=1)
        chosen = []
        for row_tags, row_scores, row_probs in zip(top_tags.tolist(), scores.tolist(), top_probs.tolist()):
            kept = []
            for tag, score, prob in zip(row_tags, row_scores, row_probs):
                if self.threshold is not None and score < self.threshold:
                    break
                kept.append((tag, score, prob))
            chosen.append(kept)
        return chosen


class TagGenerationMixin:
    """``generate_tags`` for every tag model, as transformers' ``GenerationMixin`` gives ``generate``. A model
    says how it picks tags in ``choose_tags(contexts, tokenizer, decoder, use_cache, offsets)``; the decoder it is
    handed is a ``tag_set_decoder`` (a ``SetDecoder``; a benchmark may hand another that decodes otherwise)."""

    tag_set_decoder = SetDecoder

    @torch.no_grad()
    def generate_tags(self, posts, tokenizer, num_tags: int | None = None, threshold: float | None = None,
                      batch_size: int = 32, empty_posts: str = "prior", use_cache: bool = True,
                      explain: bool = False) -> list[list[dict]]:
        """Tags for each post, as ``[{"label", "score", "step_probability"}, ...]`` in the order they were chosen.

        ``posts``: a list of strings or dicts with any of ``text``, ``image``, ``location``, ``time``.

        - ``step_probability``: the model's probability for the tag at the step it was chosen (``tag_scoring``: a
          softmax over the tags not yet chosen, or the tag's own sigmoid: generators with ``step_loss="sigmoid"``,
          BR with ``ranking_loss="sigmoid"``). Step probabilities of one post need not decrease.
        - ``score``: the estimated probability that the tag belongs to the post's tag set, from the step
          probability and the step through ``config.score_calibration`` (fitted on a validation split by
          ``train.py``, so it means the same for every model class); a model never calibrated reports its
          step probability.
        - At most ``num_tags`` tags (default ``config.num_tags_to_generate``; more than the vocabulary gives the
          whole vocabulary), never one twice. With ``threshold``, a post's tags end before the first whose
          ``score`` is under it.
        - ``empty_posts``: a post with no text and no other field gets the tags the model gives to nothing,
          its prior (``"prior"``, the default), no tags (``"none"``), or raises ``EmptyPostError`` (``"error"``).
        - ``use_cache=False`` re-encodes each post at every step (the one-pass layout and AR otherwise encode
          the context once); the result is the same.
        - ``explain=True`` (models with a lexical expert) adds ``"words"`` to every tag: the words of the post
          that pushed the tag most in the expert's score, strongest first.
        """
        options = generation_options(num_tags, threshold, batch_size, empty_posts, explain=explain)
        if explain and self.lexical is None:
            raise ValueError("explain=True needs a model with a lexical expert (config.lexical_mode); this one has none")
        num_tags = min(options["num_tags"] or self.config.num_tags_to_generate, self.config.num_tags)
        fields = self.units.field_texts(posts)
        empty = [i for i, row in enumerate(fields) if is_empty_post(row)]
        if empty and empty_posts == "error":
            raise EmptyPostError(f"post {empty[0]} is empty (no text, image, location or time); "
                                 f"{len(empty)} empty post(s) in all")
        skipped = set(empty) if empty_posts == "none" else set()
        todo = [i for i in range(len(fields)) if i not in skipped]
        decoder = self.tag_set_decoder(num_tags, threshold, self.config.score_calibration)
        was_training = self.training
        self.eval()  # dropout would make generation random
        try:
            results = [[] for _ in fields]
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                chunk_posts = [posts[i] for i in chunk]
                reads = self.lexical_input
                pieces = None if reads is None else reads.pieces(chunk_posts, tokenizer)
                contexts = self.units.encode(chunk_posts, tokenizer, self.context_layout, pieces)
                bags = None if reads is None else reads.bags(chunk_posts, tokenizer, pieces)
                offsets = None if bags is None else self.expert_offsets(
                    **{k: v.to(self.device) for k, v in reads.tensors(bags).items()})
                chosen_tags = self.choose_tags(contexts, tokenizer, decoder, use_cache, offsets)
                for row, (i, chosen) in enumerate(zip(chunk, chosen_tags)):
                    results[i] = [{"label": self.config.tag_names[t], "score": s, "step_probability": p}
                                  for t, s, p in chosen]
                    if explain:
                        for tag, words in zip(results[i], self.explaining_words(fields[i], bags[row],
                                                                                [t for t, _, _ in chosen], tokenizer)):
                            tag["words"] = words
            return results
        finally:
            self.train(was_training)

    def explaining_words(self, fields, bag, tag_ids, tokenizer, top: int = 3) -> list[list[str]]:
        """Per tag, the ``top`` words of the post whose features add most to the lexical expert's score for it
        (a word's share: the TF-IDF weight times ``V[feature, tag]``, summed over its distinct features)."""
        ids = torch.tensor(list(bag[0]) or [0], device=self.device)
        counts = torch.tensor(list(bag[1]) or [0], dtype=torch.float32, device=self.device)
        weights = self.lexical.features(ids.unsqueeze(0), counts.unsqueeze(0))[0]               # [features]
        shares = weights.unsqueeze(-1) * self.lexical.weight[ids][:, tag_ids]                   # [features, tags]
        share_of = {feature: shares[row] for row, feature in enumerate(ids.tolist())}
        words = {}                # lower-cased word -> (its text as first written, the distinct features it is made of)
        for surface, features in self.lexical_input.word_features(fields, tokenizer):
            known = dict.fromkeys(f for f in features if f in share_of)
            words.setdefault(surface.lower(), (surface, {}))[1].update(known)
        shares_of = {surface: sum(share_of[f] for f in features) for surface, features in words.values() if features}
        explained = []
        for column in range(len(tag_ids)):
            ranked = sorted(((float(share[column]), surface) for surface, share in shares_of.items()), reverse=True)
            explained.append([surface for share, surface in ranked[:top] if share > 0])
        return explained


# ----- the models -------------------------------------------------------------------------------------------
class SOGPreTrainedModel(PreTrainedModel):
    """The base of every model here, as ``BertPreTrainedModel`` is BERT's: config class, BERT's weight names,
    the attention implementations the encoder may use, and weight init."""

    config_class = SOGConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _keys_to_ignore_on_load_unexpected = [r"pooler\.", r"^cls\."]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SOGTagHead):
            init.zeros_(module.bias)
        if isinstance(module, LexicalExpert):   # fitted by train.py; until then it says nothing
            init.zeros_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.idf)


class SOGTagModel(SOGPreTrainedModel, TagGenerationMixin):
    """What every tag model here shares: a BERT encoder over the fused post (word pieces plus learned feature
    markers), the post's units (``self.units``), the input layout (``self.layout``) and ``generate_tags``.

    A subclass states what it reads after the context (``input_tail``; ``reads_tags_in_encoder``), whether it
    may pack a post's instances in one row (``packs_instances``), how it learns (``learns_from_gold_set``), how
    its logits become probabilities (``tag_scoring``) and which bias starts them (``output_bias``; both default to
    the generators'), how it chooses tags (``choose_tags``) and its name on a model card (``display_name``)."""

    def __init__(self, config):
        super().__init__(config)
        if config.num_tags < 1:
            raise ValueError("SOGConfig.tag_names is empty: a tag model needs at least one tag")
        if config.max_input_length > config.max_position_embeddings:
            raise ValueError(
                f"max_input_length={config.max_input_length} exceeds the encoder's "
                f"max_position_embeddings={config.max_position_embeddings}"
            )
        self.units = PostUnits(config)
        self.layout = LAYOUTS[self.attention_layout_name(config)](config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.marker_embeddings = nn.Embedding(len(config.feature_markers), config.hidden_size)
        self.new_lexical_expert()

    def new_lexical_expert(self):
        """A fresh, unfitted expert (``lexical_input``, ``lexical``) that reads what the config says it reads
        (``lexical_units``); none without ``lexical_mode``."""
        reads = lexical_input(self.units) if self.config.lexical_mode else None
        self.lexical_input = reads
        self.lexical = LexicalExpert(reads.rows, self.config.num_tags) if reads is not None else None

    @staticmethod
    def attention_layout_name(config) -> str:
        """The layout this model's encoder runs: ``config.attention_layout`` for models that read tags; the
        baselines, whose encoders read the context only, override it."""
        return config.attention_layout

    # ----- building models ---------------------------------------------------------------------------
    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, tags=(), init_units_from_names: bool = True, **config_overrides):
        """Build a model around a pretrained BERT-family encoder (local folder or Hub id).

        The encoder's weights are loaded; the feature markers (and, for SOG, the tags) start from the mean
        of the encoder's word-piece embeddings of their names, which gives them a meaning from step one
        (``init_units_from_names=False`` keeps their random start, for ablations).
        The tokenizer to use with the model is the encoder's: ``AutoTokenizer.from_pretrained(encoder)``.
        """
        tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path)
        config_overrides.setdefault("mask_token_id", tokenizer.mask_token_id)
        config = encoder_config_for_sog(encoder_name_or_path, tags, **config_overrides)
        model = cls.from_pretrained(encoder_name_or_path, config=config)
        if init_units_from_names:
            model.init_unit_embeddings_from_names(tokenizer)
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also records the ``tag-generation`` pipeline, so ``pipeline(model=folder, trust_remote_code=True)``
        works on the folder (save the tokenizer next to it)."""
        self.config.custom_pipelines = {"tag-generation": {
            "impl": f"pipeline_sog.{TagGenerationPipeline.__name__}", "pt": ["AutoModel"], "type": "text"}}
        return super().save_pretrained(save_directory, *args, **kwargs)

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

    def new_parameters(self) -> list[str]:
        """Names of the parameters the encoder's checkpoint does not hold (they start from scratch or from
        names, and may learn at their own rate)."""
        return [name for name, _ in self.named_parameters() if not name.startswith(f"{self.base_model_prefix}.")]

    # ----- scoring tags ------------------------------------------------------------------------------
    @property
    def tag_scoring(self) -> str:
        """``"softmax"`` (one distribution over the tags) or ``"sigmoid"`` (each tag's own probability): what the
        loss trains and what ``step_probability`` reports. Generators: ``config.step_loss``; ranking models
        override it."""
        return self.config.step_loss

    @property
    def output_bias(self) -> nn.Parameter:
        """The ``[tags]`` bias of the logits, which ``init_from_training_tags`` starts at the tag frequencies: the
        generators' ``tag_head``'s; ranking models override it."""
        return self.tag_head.bias

    def step_scoring(self, step: int) -> str:
        """How the logits of generation step ``step`` (from 1) become probabilities: ``tag_scoring`` at every step,
        unless a model chooses its first tag otherwise."""
        return self.tag_scoring

    def step_probabilities(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        return tag_probabilities(logits, self.step_scoring(step))

    @torch.no_grad()
    def init_from_training_tags(self, post_tag_ids):
        """Start the logits at the training tag frequencies (``prior_output_bias``): the first tag then starts as
        the frequency baseline's, instead of uniform over all tags."""
        bias = prior_output_bias(post_tag_ids, self.config.num_tags, self.tag_scoring)
        self.output_bias.copy_(bias.to(self.output_bias.dtype))

    # ----- inputs ------------------------------------------------------------------------------------
    @property
    def tag_offset(self) -> int:
        return self.units.tag_offset

    @property
    def marker_offset(self) -> int:
        return self.units.marker_offset

    # What the encoder reads of a post: its context ("joined") or each field apart ("per_field", late fusion).
    context_layout = "joined"

    def encode_contexts(self, posts, tokenizer):
        """Unit ids of each post's context (no [CLS]/[SEP]): markers before non-empty fields, text last (per field,
        for a model that reads them apart)."""
        return self.units.encode(posts, tokenizer, self.context_layout)

    def input_tail(self, given_tags, mask_token_id) -> list[int]:
        """What follows the context's ``[SEP]`` in an instance's row."""
        raise NotImplementedError

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        """One instance per row: ``[CLS] context [SEP] tail``, the tail being ``input_tail(tags given)``."""
        tails = [self.input_tail(tags, tokenizer.mask_token_id) for tags in given_tags]
        return self.layout.assemble_rows(contexts, tails, tokenizer)

    def embed_units(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, units]`` ids -> ``[batch, units, hidden]``: word pieces from BERT's table, markers from
        their own (subclasses add the tags)."""
        words = self.bert.embeddings.word_embeddings(input_ids.clamp(max=self.config.vocab_size - 1))
        is_marker = (input_ids >= self.marker_offset) & (input_ids < self.tag_offset)
        markers = self.marker_embeddings((input_ids - self.marker_offset).clamp(0, len(self.config.feature_markers) - 1))
        return torch.where(is_marker.unsqueeze(-1), markers, words)

    def check_attention_implementation(self):
        if self.layout.needs_4d_mask and self.config._attn_implementation not in ("eager", "sdpa"):
            raise ValueError(f"the {self.layout.name} attention layout needs a 4-D attention mask, which "
                             f"attn_implementation={self.config._attn_implementation!r} does not take; load the model "
                             "with attn_implementation='sdpa' or 'eager'")

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, unit_steps=None, **kwargs):
        """BERT over the rows with this layout's mask and order-free positions: ``last_hidden_state`` is
        ``[batch, units, hidden]``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        self.check_attention_implementation()
        units = self.embed_units(input_ids)
        kinds = self.units.kinds(input_ids, token_type_ids, attention_mask)
        return self.bert(
            inputs_embeds=units,
            attention_mask=self.layout.encoder_attention_mask(kinds, unit_steps, units.dtype),
            token_type_ids=token_type_ids,
            position_ids=order_free_positions(token_type_ids, attention_mask),
            **kwargs,
        )

    def choose_tags(self, contexts, tokenizer, decoder: SetDecoder, use_cache: bool,
                    offsets: ExpertOffsets | None = None) -> list[list[tuple]]:
        raise NotImplementedError

    # ----- the lexical expert -----------------------------------------------------------------------
    def expert_offsets(self, lexical_ids, lexical_counts) -> ExpertOffsets:
        """What the expert adds to the logits, ``[posts, tags]``: ``z`` itself when trained jointly, else its
        weighted log-probability that the tag is in the set, ``lexical_weight * log sigmoid(z)`` at the first
        step and ``lexical_later_weight * log sigmoid(z)`` at later ones."""
        z = self.lexical(lexical_ids, lexical_counts)
        if self.config.lexical_mode == "joint":
            return ExpertOffsets(z, z)
        first, later = self.config.lexical_weight, self.config.lexical_later_weight
        log_p = F.logsigmoid(z)
        return ExpertOffsets(first * log_p, log_p * (first if later is None else later))

    def lexical_offsets(self, lexical_ids, lexical_counts) -> torch.Tensor:
        """The expert's offsets of a single pass (training, ranking models): the first step's."""
        return self.expert_offsets(lexical_ids, lexical_counts).first

    def given_lexical_offsets(self, lexical_offsets=None, lexical_ids=None, lexical_counts=None):
        """What a forward pass adds to its logits: the expert's offsets given (training with cross-fitted priors), or
        computed from the bags given (a jointly trained expert), or ``None`` (no expert, or one mixed in at decoding
        only)."""
        if lexical_offsets is None and lexical_ids is not None and self.lexical is not None:
            lexical_offsets = self.lexical_offsets(lexical_ids, lexical_counts)
        return lexical_offsets

    @staticmethod
    def with_offsets(logits, offsets):
        return logits if offsets is None else logits + offsets.to(logits.dtype)

    def with_lexical_offsets(self, logits, lexical_offsets=None, lexical_ids=None, lexical_counts=None):
        """``logits`` plus the offsets of ``given_lexical_offsets``."""
        return self.with_offsets(logits, self.given_lexical_offsets(lexical_offsets, lexical_ids, lexical_counts))

    def uncached_step_logits(self, contexts, tokenizer):
        """A generator's step function that re-encodes every active post with its tags so far."""
        def step_logits(active, chosen):
            batch = self.build_inputs([contexts[i] for i in active], chosen, tokenizer)
            return self(**{k: v.to(self.device) for k, v in batch.items()}).logits

        return step_logits


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
        """``hidden`` ``[..., hidden]``, ``tag_embeddings`` ``[tags, hidden]`` -> logits ``[..., tags]``."""
        if self.transform:
            hidden = self.LayerNorm(self.activation(self.dense(hidden)))
        return hidden @ tag_embeddings.t() + self.bias


class RankingHead(nn.Linear):
    """BR's head: ``z = dropout(h) W^T + b``, a score per tag from one state, each tag's own row of ``W`` (not tied to
    any embedding). BR reads it from ``[CLS]``; SOG's ``first_tag_head`` from the ``[MASK]`` given no tag."""

    def __init__(self, config):
        super().__init__(config.hidden_size, config.num_tags)
        rate = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(rate)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` -> ``[..., tags]``."""
        return super().forward(self.dropout(hidden))


class SOGForTagGeneration(SOGTagModel):
    """Predicts tag *i* from the ``[MASK]`` after ``tag_1 ... tag_{i-1}``; see the module docstring."""

    display_name = "SOG"
    reads_tags_in_encoder = True
    learns_from_gold_set = False   # one training instance per gold tag (1-to-M / 1-to-1)
    decodes_in_steps = True        # greedy: the first tag, then each next one given those so far

    def __init__(self, config):
        super().__init__(config)
        self.tag_embeddings = nn.Embedding(config.num_tags, config.hidden_size)
        self.tag_head = SOGTagHead(config)
        self.first_tag_head = RankingHead(config) if config.first_tag_head else None
        self.post_init()

    @property
    def packs_instances(self) -> bool:
        """Whether training may put all instances of a post in one row (``build_packed_inputs``)."""
        return self.layout.packs_instances

    def unit_embeddings_with_names(self):
        return super().unit_embeddings_with_names() + [(self.tag_embeddings, self.config.tag_names)]

    @torch.no_grad()
    def init_from_training_tags(self, post_tag_ids):
        """Also starts the first-tag head's sigmoids at the share of posts that carry each tag, as BR's."""
        super().init_from_training_tags(post_tag_ids)
        if self.first_tag_head is not None:
            bias = self.first_tag_head.bias
            bias.copy_(prior_output_bias(post_tag_ids, self.config.num_tags, "sigmoid").to(bias.dtype))

    def step_scoring(self, step: int) -> str:
        return "sigmoid" if step == 1 and self.first_tag_head is not None else self.tag_scoring

    def tag_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[masks, hidden]`` -> ``[masks, tags]``: the tag head's logits, read against the tag embeddings (tied)."""
        return self.tag_head(hidden, self.tag_embeddings.weight)

    def mask_logits(self, hidden: torch.Tensor, step_logits: torch.Tensor, first: torch.Tensor | None,
                    offsets: torch.Tensor | None = None) -> torch.Tensor:
        """The logits generation reads, ``[masks, tags]``: the tag head's ``step_logits``, and for the ``[MASK]``s
        given no tag (``first``, ``[masks]`` bool) the first-tag head's of ``hidden`` (``[masks, hidden]``) plus
        ``offsets``, when the model has one."""
        if self.first_tag_head is None:
            return step_logits
        first_logits = self.with_offsets(self.first_tag_head(hidden), offsets)
        return torch.where(first.unsqueeze(-1), first_logits, step_logits)

    def input_tail(self, given_tags, mask_token_id) -> list[int]:
        return [self.tag_offset + t for t in given_tags] + [mask_token_id]

    def build_packed_inputs(self, contexts, tag_orders, given_counts, tokenizer) -> dict:
        """Every instance of a post in one row (layouts that allow it): the tags of ``tag_orders[i]`` that
        some instance is given, then one ``[MASK]`` per entry of ``given_counts[i]``, which sees that many of
        the first tags. The ``[MASK]`` outputs come out in row order, then in the order of ``given_counts``."""
        if not self.layout.packs_instances:
            raise ValueError(f"the {self.layout.name!r} attention layout cannot pack instances: the context would "
                             "see every instance's tags; use build_inputs (one instance per row)")
        tails, tail_steps = [], []
        for order, counts in zip(tag_orders, given_counts, strict=True):
            tags = list(order[:max(counts)])
            tails.append([self.tag_offset + t for t in tags] + [tokenizer.mask_token_id] * len(counts))
            tail_steps.append(list(range(1, len(tags) + 1)) + [given + 1 for given in counts])
        return self.layout.assemble_rows(contexts, tails, tokenizer, tail_steps)

    def embed_units(self, input_ids: torch.Tensor) -> torch.Tensor:
        units = super().embed_units(input_ids)
        is_tag = input_ids >= self.tag_offset
        tags = self.tag_embeddings((input_ids - self.tag_offset).clamp(0, self.config.num_tags - 1))
        return torch.where(is_tag.unsqueeze(-1), tags, units)

    def _check_masks(self, input_ids, kinds):
        """Every row must hold the ``[MASK]``(s) ``build_inputs`` puts there: reading logits elsewhere would
        silently answer for the wrong unit."""
        per_row = (kinds == UNIT_MASK).sum(-1)
        if bool((per_row == 0).any()):
            row = int((per_row == 0).nonzero()[0, 0])
            raise ValueError(f"input row {row} has no [MASK] in segment 1 (token_type_ids == 1) to read the next tag "
                             "from; build inputs with model.build_inputs(model.encode_contexts(posts, tokenizer), "
                             "given_tags, tokenizer), or call model.generate_tags(posts, tokenizer)")
        expected = self.config.mask_token_id
        if expected is not None and bool((input_ids[kinds == UNIT_MASK] != expected).any()):
            raise ValueError(f"segment-1 units that are not tags must be [MASK] (id {expected}); use build_inputs")
        if not self.layout.packs_instances and bool((per_row > 1).any()):
            raise ValueError(f"the {self.layout.name!r} attention layout reads one [MASK] per row, found "
                             f"{int(per_row.max())}; use build_inputs")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, unit_steps=None, labels=None,
                lexical_offsets=None, lexical_ids=None, lexical_counts=None, output_attentions=None,
                output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        r"""
        input_ids: rows built by ``build_inputs`` (one instance per row) or ``build_packed_inputs``.
        token_type_ids: 0 for ``[CLS] context [SEP]``, 1 for the tags given and the ``[MASK]``(s).
        unit_steps: packed rows only (one-pass layout): which tags each ``[MASK]`` is given.
        labels: a tag id per ``[MASK]`` (1-to-1) or a ``(masks, num_tags)`` weight per tag (1-to-M); the loss
            (``config.step_loss``) is the KL divergence from the normalised target to the softmax over tags, or the
            binary cross-entropy of each tag's sigmoid against whether it is a target, averaged over ``[MASK]``s
            (``training_loss``).
        lexical_offsets / lexical_ids, lexical_counts: one row per ``[MASK]``: what the lexical expert adds to its
            logits, or the bags to compute it from (``with_lexical_offsets``).

        Returns logits of shape ``(masks, num_tags)``: one row per ``[MASK]``, in row order, those generation reads
        (``mask_logits``: the first-tag head's for a ``[MASK]`` given no tag, with ``config.first_tag_head``).
        """
        if token_type_ids is None:
            raise ValueError("SOGForTagGeneration needs token_type_ids (1 marks the tags and [MASK]); use "
                             "model.build_inputs")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kinds = self.units.kinds(input_ids, token_type_ids, attention_mask)
        self._check_masks(input_ids, kinds)
        outputs = self.encode(input_ids, attention_mask, token_type_ids, unit_steps,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        hidden = outputs.last_hidden_state[kinds == UNIT_MASK]                          # [masks, hidden]
        reads_first = self.first_tag_head is not None or (labels is not None and self.config.first_step_sigmoid_weight)
        first = self.layout.tags_given(kinds, unit_steps) == 0 if reads_first else None   # [masks]
        offsets = self.given_lexical_offsets(lexical_offsets, lexical_ids, lexical_counts)
        step_logits = self.with_offsets(self.tag_logits(hidden), offsets)   # [masks, tags]
        logits = self.mask_logits(hidden, step_logits, first, offsets)
        loss = None if labels is None else self.training_loss(step_logits, labels, first, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)

    def training_loss(self, step_logits, labels, first=None, logits=None) -> torch.Tensor:
        """The step loss of every ``[MASK]``'s ``step_logits`` (the tag head's), plus BR's objective on those given no
        tag (``first``; ``first_step_sigmoid_loss``): on the first-tag head's ``logits`` with ``config.first_tag_head``,
        and ``config.first_step_sigmoid_weight`` times it on the tag head's own."""
        loss = tag_loss(step_logits, labels, self.tag_scoring, self.config.weight_loss_by_target_count)
        if self.first_tag_head is not None:
            loss = loss + first_step_sigmoid_loss(logits, labels, first)
        weight = self.config.first_step_sigmoid_weight
        if weight:
            loss = loss + weight * first_step_sigmoid_loss(step_logits, labels, first)
        return loss

    # ----- generation -------------------------------------------------------------------------------
    def choose_tags(self, contexts, tokenizer, decoder: SetDecoder, use_cache: bool,
                    offsets: ExpertOffsets | None = None) -> list[list[tuple]]:
        """Greedy set decoding; with a layout that caches the context (and ``use_cache``), the context is
        encoded once and each step runs only the newest tag and one ``[MASK]``."""
        cached = use_cache and self.layout.caches_context
        step_logits = (self.cached_step_logits if cached else self.uncached_step_logits)(contexts, tokenizer)
        return decoder.greedy(step_logits, len(contexts), offsets, self.step_probabilities)

    def cached_step_logits(self, contexts, tokenizer):
        """Layouts whose context never sees the tags: encode the contexts once, keeping every layer's keys and
        values; each step then runs only the tag chosen last (it sees the context and itself) and one ``[MASK]``
        (context, chosen tags, itself) against that cache. The tag's keys and values stay in the cache, the
        ``[MASK]``'s are dropped.

        transformers 5 offers the pieces (``DynamicCache`` filled by BERT's own attention modules, a 4-D mask
        passed as is) but no encoder-side incremental decoding, so the steps are driven from here through
        ``self.bert`` itself, with explicit positions, token types and masks."""
        self.check_attention_implementation()
        device = self.device
        batch = {k: v.to(device) for k, v in self.layout.assemble_rows(contexts, [[] for _ in contexts],
                                                                       tokenizer).items()}   # each [rows, width]
        cache = DynamicCache(config=self.config)
        units = self.embed_units(batch["input_ids"])                                          # [rows, width, hidden]
        self.bert(inputs_embeds=units, token_type_ids=batch["token_type_ids"], cache=cache,
                  attention_mask=self.layout.encoder_attention_mask(
                      self.units.kinds(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]),
                      None, units.dtype),
                  position_ids=order_free_positions(batch["token_type_ids"], batch["attention_mask"]))
        # What the cache holds, per row and key slot: [rows, keys]; grows by one tag per step after the first.
        key_kinds = torch.where(batch["attention_mask"] == 1, UNIT_CONTEXT, UNIT_PAD)
        key_steps = torch.zeros_like(key_kinds)
        tail_position = batch["attention_mask"].sum(-1, keepdim=True)   # [rows, 1]: every tag and [MASK] sits here
        rows = len(contexts)
        last_chosen = [None] * rows
        state = {"kinds": key_kinds, "steps": key_steps, "step": 0}

        def step_logits(active, chosen):
            state["step"] += 1
            step = state["step"]
            for i, tags in zip(active, chosen):
                last_chosen[i] = tags[-1] if tags else None
            # Every post runs (its cache rows must stay aligned); a post that stopped repeats its last tag,
            # whose output nobody reads.
            new_ids, new_kinds, new_steps = [], [UNIT_MASK], [step]
            if step > 1:
                new_ids.append([self.tag_offset + (t if t is not None else 0) for t in last_chosen])
                new_kinds, new_steps = [UNIT_TAG, UNIT_MASK], [step - 1, step]
            new_ids.append([tokenizer.mask_token_id] * rows)
            ids = torch.tensor(new_ids, device=device).t()                                   # [rows, new]: new = 1 or 2
            kinds = torch.cat([state["kinds"], torch.tensor([new_kinds], device=device).expand(rows, -1)], 1)
            steps = torch.cat([state["steps"], torch.tensor([new_steps], device=device).expand(rows, -1)], 1)
            queries = torch.arange(kinds.size(1) - ids.size(1), kinds.size(1), device=device).expand(rows, -1)
            units = self.embed_units(ids)                                                    # [rows, new, hidden]
            hidden = self.bert(inputs_embeds=units, token_type_ids=torch.ones_like(ids), cache=cache,
                               attention_mask=additive_mask(self.layout.visibility(kinds, steps, queries), units.dtype),
                               position_ids=tail_position.expand_as(ids)).last_hidden_state   # [rows, new, hidden]
            cache.crop(-1)                                               # forget the [MASK]
            state["kinds"], state["steps"] = kinds[:, :-1], steps[:, :-1]
            mask = hidden[:, -1]                                                             # [rows, hidden]
            logits = self.mask_logits(mask, self.tag_logits(mask),
                                      torch.full((rows,), step == 1, device=device))         # [rows, tags]
            return logits[torch.tensor(active, device=device)]

        return step_logits


SOGForTagGeneration.register_for_auto_class("AutoModel")

__all__ = ["PostUnits", "LexicalExpert", "PaperLayout", "OnePassLayout", "SetDecoder", "TagGenerationMixin", "SOGPreTrainedModel",
           "SOGTagModel", "SOGTagHead", "RankingHead", "SOGForTagGeneration"]
