"""The paper's ranking baselines, binary relevance over every tag, read from ``[CLS]`` in one pass:

- ``BRForTagRanking`` (BR-EF, early fusion): the same input as SOG minus the tags
  (``[CLS] [IMG] .. [LOC] .. [TIME] .. text [SEP]``);
- ``BRLateFusionForTagRanking`` (BR-LF, late fusion): each context field is encoded on its own
  (``[CLS] [LOC] location [SEP]``, ...), the ``[CLS]`` vectors are averaged, and the tag scores are read from
  the average.

``config.ranking_loss`` picks how the scores learn from the gold set:

- ``"sigmoid"`` (default): an independent sigmoid per tag, binary cross-entropy (a stronger baseline);
- ``"softmax"``: the paper's BR, a softmax over tags trained with cross-entropy against the uniform
  distribution over the gold set.

They ignore how tags depend on each other, which is what SOG is compared against. Ship to the Hub like
``modeling_sog.py``.
"""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .modeling_sog import ExpertOffsets, RankingHead, SetDecoder, SOGTagModel, tag_loss
except ImportError:  # imported as a top-level module (development checkout)
    from modeling_sog import ExpertOffsets, RankingHead, SetDecoder, SOGTagModel, tag_loss


class BRForTagRanking(SOGTagModel):
    display_name = "BR-EF (ranking baseline)"
    reads_tags_in_encoder = False
    learns_from_gold_set = True    # one training instance per post: its whole gold set
    decodes_in_steps = False       # one pass ranks every tag: no later steps for lexical_later_weight
    packs_instances = False

    def __init__(self, config):
        super().__init__(config)
        self.classifier = RankingHead(config)
        self.post_init()

    @staticmethod
    def attention_layout_name(config) -> str:
        return "paper"   # the encoder reads the context only: every unit may see every other

    def input_tail(self, given_tags, mask_token_id) -> list[int]:
        return []        # nothing after the context's [SEP]: the scores come from [CLS]

    @property
    def tag_scoring(self) -> str:
        return self.config.ranking_loss

    @property
    def output_bias(self) -> nn.Parameter:
        return self.classifier.bias

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, lexical_offsets=None,
                lexical_ids=None, lexical_counts=None, output_attentions=None, output_hidden_states=None,
                **kwargs) -> SequenceClassifierOutput:
        r"""
        labels: ``(batch, num_tags)``, 1 for every gold tag of the post (see ``ranking_loss``).
        lexical_offsets / lexical_ids, lexical_counts: the lexical expert's, one row per post
        (``with_lexical_offsets``).
        """
        outputs = self.encode(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        logits = self.with_lexical_offsets(logits, lexical_offsets, lexical_ids, lexical_counts)
        loss = self.ranking_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)

    def ranking_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of every tag's sigmoid, or KL from the uniform distribution over the gold set
        to the softmax (``config.ranking_loss``)."""
        if labels.dim() != 2:
            raise ValueError("BRForTagRanking labels must be a (batch, num_tags) multi-hot tensor")
        return tag_loss(logits, labels, self.tag_scoring)

    def choose_tags(self, contexts, tokenizer, decoder: SetDecoder, use_cache: bool,
                    offsets: ExpertOffsets | None = None) -> list[list[tuple]]:
        """One pass, a ranking model's only step (step 1): the most probable tags (``use_cache`` changes nothing)."""
        batch = {k: v.to(self.device) for k, v in self.build_inputs(contexts, [[] for _ in contexts], tokenizer).items()}
        first = None if offsets is None else offsets.first
        return decoder.ranked(self.step_probabilities(self(**batch, lexical_offsets=first).logits, 1))


class BRLateFusionForTagRanking(BRForTagRanking):
    display_name = "BR-LF (ranking baseline)"
    context_layout = "per_field"

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        """One ``[CLS] field [SEP]`` row per field; ``field_owner`` says which post each row belongs to."""
        rows, owners = [], []
        for post, fields in enumerate(contexts):
            rows.extend(fields)
            owners.extend([post] * len(fields))
        batch = super().build_inputs(rows, [()] * len(rows), tokenizer)
        batch["field_owner"] = torch.tensor(owners)
        return batch

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, field_owner=None, labels=None,
                lexical_offsets=None, lexical_ids=None, lexical_counts=None, **kwargs):
        if field_owner is None:
            raise ValueError("BRLateFusionForTagRanking needs field_owner; use build_inputs")
        outputs = self.encode(input_ids, attention_mask, token_type_ids)
        cls = outputs.last_hidden_state[:, 0]                                        # [fields, hidden]
        posts = int(field_owner.max().item()) + 1
        summed = torch.zeros(posts, cls.size(-1), device=cls.device, dtype=cls.dtype).index_add_(0, field_owner, cls)
        counts = torch.bincount(field_owner, minlength=posts).clamp(min=1).unsqueeze(-1).to(cls.dtype)
        logits = self.classifier(summed / counts)                                    # [posts, tags]
        logits = self.with_lexical_offsets(logits, lexical_offsets, lexical_ids, lexical_counts)
        loss = self.ranking_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


BRForTagRanking.register_for_auto_class("AutoModel")
BRLateFusionForTagRanking.register_for_auto_class("AutoModel")

__all__ = ["BRForTagRanking", "BRLateFusionForTagRanking"]
