"""The paper's other neural baselines, for benchmarks/paper_table.py: BR-LF and AR (1-to-1 / 1-to-M).

- ``BRLateFusionForTagRanking`` (BR-LF): each context field is encoded on its own
  (``[CLS] [LOC] location [SEP]``, ...), the ``[CLS]`` vectors are averaged, and a sigmoid per tag is
  read from the average: the late-fusion counterpart of BR-EF.
- ``ARForTagGeneration`` (AR): the encoder reads the context once; a one-layer Transformer decoder
  reads ``[BOS] tag_1 ... tag_{i-1}`` with positions (so the order matters), attends to the encoder
  and predicts tag *i*; greedy decoding, no repeats. Trained on the same instances as SOG.

Both save and load like SOG (``auto_map`` points here).
"""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .modeling_br import BRForTagRanking
    from .modeling_sog import SOGPreTrainedModel, SOGTagHead, kl_to_target_loss
except ImportError:  # imported as a top-level module (development checkout)
    from modeling_br import BRForTagRanking
    from modeling_sog import SOGPreTrainedModel, SOGTagHead, kl_to_target_loss


class BRLateFusionForTagRanking(BRForTagRanking):
    def encode_contexts(self, posts, tokenizer):
        return self.field_units(posts, tokenizer)

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        """One ``[CLS] field [SEP]`` row per field; ``field_owner`` says which post each row belongs to."""
        rows, owners = [], []
        for post, fields in enumerate(contexts):
            rows.extend(fields)
            owners.extend([post] * len(fields))
        batch = super().build_inputs(rows, [()] * len(rows), tokenizer)
        batch["field_owner"] = torch.tensor(owners)
        return batch

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, field_owner=None, labels=None, **kwargs):
        if field_owner is None:
            raise ValueError("BRLateFusionForTagRanking needs field_owner; use build_inputs")
        outputs = self.encode(input_ids, attention_mask, token_type_ids)
        cls = outputs.last_hidden_state[:, 0]
        posts = int(field_owner.max().item()) + 1
        summed = torch.zeros(posts, cls.size(-1), device=cls.device, dtype=cls.dtype).index_add_(0, field_owner, cls)
        counts = torch.bincount(field_owner, minlength=posts).clamp(min=1).unsqueeze(-1).to(cls.dtype)
        logits = self.classifier(self.dropout(summed / counts))
        loss = self.ranking_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class ARForTagGeneration(SOGPreTrainedModel):
    reads_tags = False  # the encoder reads the context only; the tags go to the decoder

    def __init__(self, config):
        super().__init__(config)
        hidden = config.hidden_size
        self.tag_embeddings = nn.Embedding(config.num_tags + 1, hidden)   # the last row is [BOS]
        self.tag_positions = nn.Embedding(config.num_tags + 1, hidden)
        self.decoder = nn.TransformerDecoderLayer(hidden, config.num_attention_heads, config.intermediate_size,
                                                  dropout=config.hidden_dropout_prob, activation="gelu",
                                                  batch_first=True, norm_first=False)
        self.tag_head = SOGTagHead(config)
        self.post_init()

    def unit_embeddings_with_names(self):
        return super().unit_embeddings_with_names() + [(self.tag_embeddings, self.config.tag_names)]

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        batch = super().build_inputs(contexts, given_tags, tokenizer)
        longest = max(len(tags) for tags in given_tags) + 1
        decoder_ids = torch.full((len(given_tags), longest), self.config.num_tags, dtype=torch.long)
        for i, tags in enumerate(given_tags):
            decoder_ids[i, 1:1 + len(tags)] = torch.tensor(list(tags), dtype=torch.long)
        batch["decoder_tag_ids"] = decoder_ids
        batch["decoder_lengths"] = torch.tensor([len(tags) + 1 for tags in given_tags])
        return batch

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, decoder_tag_ids=None,
                decoder_lengths=None, labels=None, **kwargs):
        if decoder_tag_ids is None or decoder_lengths is None:
            raise ValueError("ARForTagGeneration needs decoder_tag_ids and decoder_lengths; use build_inputs")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        memory = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        steps = decoder_tag_ids.size(1)
        positions = torch.arange(steps, device=decoder_tag_ids.device)
        target = self.tag_embeddings(decoder_tag_ids) + self.tag_positions(positions)
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=target.device), diagonal=1)
        padding = positions.unsqueeze(0) >= decoder_lengths.unsqueeze(1)
        hidden = self.decoder(target, memory, tgt_mask=causal, tgt_key_padding_mask=padding,
                              memory_key_padding_mask=attention_mask == 0)
        last = hidden[torch.arange(hidden.size(0), device=hidden.device), decoder_lengths - 1]
        logits = self.tag_head(last, self.tag_embeddings.weight[:self.config.num_tags])
        loss = None if labels is None else kl_to_target_loss(logits, labels, self.config.weight_loss_by_target_count)
        return SequenceClassifierOutput(loss=loss, logits=logits)


BRLateFusionForTagRanking.register_for_auto_class("AutoModel")
ARForTagGeneration.register_for_auto_class("AutoModel")

__all__ = ["ARForTagGeneration", "BRLateFusionForTagRanking"]
