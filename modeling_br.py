"""BR-EF, the paper's ranking baseline: binary relevance over every tag from ``[CLS]``, early-fused input.

Same input as SOG minus the tags (``[CLS] [IMG] .. [LOC] .. [TIME] .. text [SEP]``), one pass, an
independent sigmoid per tag trained with binary cross-entropy on the gold set. It ignores how tags depend
on each other, which is what SOG is compared against. Ships to the Hub like ``modeling_sog.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .modeling_sog import SOGPreTrainedModel
except ImportError:  # imported as a top-level module (development checkout)
    from modeling_sog import SOGPreTrainedModel


class BRForTagRanking(SOGPreTrainedModel):
    reads_tags = False
    ranks_in_one_pass = True

    def __init__(self, config):
        super().__init__(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_tags)
        self.post_init()

    @torch.no_grad()
    def init_from_training_tags(self, post_tag_ids):
        """Start each tag's sigmoid at its training frequency: bias = log(p / (1 - p)).

        With a zero bias, hundreds of independent sigmoids first spend many steps learning that almost
        every tag is absent; a short budget then ends with rankings worse than the frequency baseline."""
        counts = torch.zeros(self.config.num_tags, dtype=torch.float64)
        for tags in post_tag_ids:
            counts[list(set(tags))] += 1
        prior = (counts / max(1, len(post_tag_ids))).clamp(1e-4, 1 - 1e-4)
        self.classifier.bias.copy_(torch.log(prior / (1 - prior)).to(self.classifier.bias.dtype))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        r"""
        labels: ``(batch, num_tags)``, 1 for every gold tag of the post; the loss is binary cross-entropy.
        """
        outputs = self.encode(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(outputs.last_hidden_state[:, 0]))
        loss = self.ranking_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)

    @staticmethod
    def ranking_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of every tag's sigmoid against the gold set (multi-hot labels)."""
        if labels.dim() != 2:
            raise ValueError("BRForTagRanking labels must be a (batch, num_tags) multi-hot tensor")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def _choose_tags(self, contexts, tokenizer, num_tags, threshold):
        """One pass: the ``num_tags`` highest sigmoid scores, cut where a score falls under ``threshold``."""
        batch = self.build_inputs(contexts, [[] for _ in contexts], tokenizer)
        probs = torch.sigmoid(self(**{k: v.to(self.device) for k, v in batch.items()}).logits.float())
        top_probs, top_tags = probs.topk(num_tags, dim=-1)
        chosen = []
        for row_probs, row_tags in zip(top_probs.tolist(), top_tags.tolist()):
            chosen.append([(t, p) for t, p in zip(row_tags, row_probs) if threshold is None or p >= threshold])
        return chosen


BRForTagRanking.register_for_auto_class("AutoModel")

__all__ = ["BRForTagRanking"]
