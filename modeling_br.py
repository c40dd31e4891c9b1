"""BR-EF, the paper's ranking baseline: binary relevance over every tag from ``[CLS]``, early-fused input.

Same input as SOG minus the tags (``[CLS] [IMG] .. [LOC] .. [TIME] .. text [SEP]``), one pass, one score per
tag. ``config.ranking_loss`` picks how the scores learn from the gold set:

- ``"sigmoid"`` (default): an independent sigmoid per tag, binary cross-entropy (a stronger baseline);
- ``"softmax"``: the paper's BR, a softmax over tags trained with cross-entropy against the uniform
  distribution over the gold set.

It ignores how tags depend on each other, which is what SOG is compared against. Ships to the Hub like
``modeling_sog.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .modeling_sog import SOGPreTrainedModel, calibrated_scores, kl_to_target_loss, log_tag_shares
except ImportError:  # imported as a top-level module (development checkout)
    from modeling_sog import SOGPreTrainedModel, calibrated_scores, kl_to_target_loss, log_tag_shares


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
        """Start the scores at the training tag frequencies: sigmoid: bias = log(p / (1 - p)) with p the share
        of posts carrying the tag; softmax: bias = log(share of tag occurrences), as the generators.

        With a zero bias, hundreds of independent sigmoids first spend many steps learning that almost
        every tag is absent; a short budget then ends with rankings worse than the frequency baseline."""
        if self.config.ranking_loss == "softmax":
            bias = log_tag_shares(post_tag_ids, self.config.num_tags)
        else:
            counts = torch.zeros(self.config.num_tags, dtype=torch.float64)
            for tags in post_tag_ids:
                counts[list(set(tags))] += 1
            prior = (counts / max(1, len(post_tag_ids))).clamp(1e-4, 1 - 1e-4)
            bias = torch.log(prior / (1 - prior))
        self.classifier.bias.copy_(bias.to(self.classifier.bias.dtype))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        r"""
        labels: ``(batch, num_tags)``, 1 for every gold tag of the post (see ``ranking_loss``).
        """
        outputs = self.encode(input_ids, attention_mask, token_type_ids,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(outputs.last_hidden_state[:, 0]))
        loss = self.ranking_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)

    def ranking_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of every tag's sigmoid, or KL from the uniform distribution over the gold set
        to the softmax (``config.ranking_loss``)."""
        if labels.dim() != 2:
            raise ValueError("BRForTagRanking labels must be a (batch, num_tags) multi-hot tensor")
        if self.config.ranking_loss == "softmax":
            return kl_to_target_loss(logits, labels)
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def tag_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1) if self.config.ranking_loss == "softmax" else torch.sigmoid(logits.float())

    def _choose_tags(self, contexts, tokenizer, num_tags, threshold, use_cache):
        """One pass: the ``num_tags`` most probable tags, ending before the first whose score is under
        ``threshold``. A tag's step is its rank."""
        batch = self.build_inputs(contexts, [[] for _ in contexts], tokenizer)
        probs = self.tag_probabilities(self(**{k: v.to(self.device) for k, v in batch.items()}).logits)
        top_probs, top_tags = probs.topk(num_tags, dim=-1)
        scores = torch.stack([calibrated_scores(top_probs[:, rank], rank + 1, self.config.score_calibration)
                              for rank in range(num_tags)], dim=1)
        chosen = []
        for row_tags, row_scores, row_probs in zip(top_tags.tolist(), scores.tolist(), top_probs.tolist()):
            kept = []
            for tag, score, prob in zip(row_tags, row_scores, row_probs):
                if threshold is not None and score < threshold:
                    break
                kept.append((tag, score, prob))
            chosen.append(kept)
        return chosen


BRForTagRanking.register_for_auto_class("AutoModel")

__all__ = ["BRForTagRanking"]
