"""AR, the paper's autoregressive baseline: the encoder reads the context once; a one-layer Transformer decoder
reads ``[BOS] tag_1 ... tag_{i-1}`` with positions (so the order matters), attends to the encoder and predicts
tag *i*; greedy decoding, no repeats. Trained on the same instances as SOG (1-to-1 or 1-to-M), all instances
of a post in one teacher-forced decoder pass; generation encodes the context once.

Saves and loads like SOG (``auto_map`` points here); ships to the Hub with ``modeling_sog.py``.
"""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

try:
    from .modeling_sog import ExpertOffsets, SetDecoder, SOGTagHead, SOGTagModel, tag_loss
except ImportError:  # imported as a top-level module (development checkout)
    from modeling_sog import ExpertOffsets, SetDecoder, SOGTagHead, SOGTagModel, tag_loss


class ARForTagGeneration(SOGTagModel):
    display_name = "AR (autoregressive baseline)"
    reads_tags_in_encoder = False
    learns_from_gold_set = False   # one training instance per gold tag, as SOG
    decodes_in_steps = True        # greedy, in the order it chose
    packs_instances = True         # the causal decoder makes every prefix of one tag order an instance of its own

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

    @staticmethod
    def attention_layout_name(config) -> str:
        return "paper"   # the encoder reads the context only; the tags go to the decoder

    def input_tail(self, given_tags, mask_token_id) -> list[int]:
        return []

    def unit_embeddings_with_names(self):
        return super().unit_embeddings_with_names() + [(self.tag_embeddings, self.config.tag_names)]

    def _decoder_inputs(self, tag_sequences, read_at) -> dict:
        """``[BOS] tags`` per row (``decoder_tag_ids`` ``[rows, longest + 1]``), and the decoder positions whose
        outputs are read (``decoder_predict`` ``[rows, most reads]``, -1 pads)."""
        longest = max(len(tags) for tags in tag_sequences) + 1
        decoder_ids = torch.full((len(tag_sequences), longest), self.config.num_tags, dtype=torch.long)
        predict = torch.full((len(tag_sequences), max(len(r) for r in read_at)), -1, dtype=torch.long)
        for i, (tags, positions) in enumerate(zip(tag_sequences, read_at)):
            decoder_ids[i, 1:1 + len(tags)] = torch.tensor(list(tags), dtype=torch.long)
            predict[i, :len(positions)] = torch.tensor(list(positions), dtype=torch.long)
        return {"decoder_tag_ids": decoder_ids,
                "decoder_lengths": torch.tensor([len(tags) + 1 for tags in tag_sequences]),
                "decoder_predict": predict}

    def build_inputs(self, contexts, given_tags, tokenizer) -> dict:
        batch = super().build_inputs(contexts, given_tags, tokenizer)
        return {**batch, **self._decoder_inputs([list(tags) for tags in given_tags],
                                                [[len(tags)] for tags in given_tags])}

    def build_packed_inputs(self, contexts, tag_orders, given_counts, tokenizer) -> dict:
        """One teacher-forced row per post: the decoder reads ``[BOS] g_1 .. g_k`` once and predicts after
        each prefix named in ``given_counts``."""
        batch = super().build_inputs(contexts, [()] * len(contexts), tokenizer)
        sequences = [list(order[:max(counts)]) for order, counts in zip(tag_orders, given_counts, strict=True)]
        return {**batch, **self._decoder_inputs(sequences, given_counts)}

    def decode(self, memory, memory_padding, decoder_tag_ids, decoder_lengths):
        """``memory`` ``[rows, units, hidden]`` -> decoder states ``[rows, steps, hidden]``."""
        steps = decoder_tag_ids.size(1)
        positions = torch.arange(steps, device=decoder_tag_ids.device)
        target = self.tag_embeddings(decoder_tag_ids) + self.tag_positions(positions)
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool, device=target.device), diagonal=1)
        padding = positions.unsqueeze(0) >= decoder_lengths.unsqueeze(1)
        return self.decoder(target, memory, tgt_mask=causal, tgt_key_padding_mask=padding,
                            memory_key_padding_mask=memory_padding)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, decoder_tag_ids=None,
                decoder_lengths=None, decoder_predict=None, labels=None, lexical_offsets=None, lexical_ids=None,
                lexical_counts=None, **kwargs):
        r"""Logits ``(predictions, num_tags)``: one row per entry of ``decoder_predict`` that is >= 0, in row order
        (the lexical expert's offsets or bags, when given, one row per prediction too)."""
        if decoder_tag_ids is None or decoder_lengths is None or decoder_predict is None:
            raise ValueError("ARForTagGeneration needs decoder_tag_ids, decoder_lengths and decoder_predict; use "
                             "build_inputs")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        memory = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        hidden = self.decode(memory, attention_mask == 0, decoder_tag_ids, decoder_lengths)
        read = decoder_predict >= 0
        rows = torch.arange(hidden.size(0), device=hidden.device).unsqueeze(1).expand_as(decoder_predict)
        logits = self.tag_head(hidden[rows[read], decoder_predict[read]], self.tag_embeddings.weight[:self.config.num_tags])
        logits = self.with_lexical_offsets(logits, lexical_offsets, lexical_ids, lexical_counts)
        loss = None if labels is None else tag_loss(logits, labels, self.tag_scoring,
                                                    self.config.weight_loss_by_target_count)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def choose_tags(self, contexts, tokenizer, decoder: SetDecoder, use_cache: bool,
                    offsets: ExpertOffsets | None = None) -> list[list[tuple]]:
        """Greedy set decoding; with ``use_cache`` the encoder reads each context once and each step runs the
        decoder alone."""
        step_logits = (self.cached_step_logits if use_cache else self.uncached_step_logits)(contexts, tokenizer)
        return decoder.greedy(step_logits, len(contexts), offsets, self.step_probabilities)

    def cached_step_logits(self, contexts, tokenizer):
        """The encoder reads only the context: encode it once, then each step runs the decoder alone."""
        batch = {k: v.to(self.device) for k, v in super().build_inputs(contexts, [()] * len(contexts),
                                                                         tokenizer).items()}
        memory = self.encode(**batch).last_hidden_state                       # [rows, units, hidden]
        padding = batch["attention_mask"] == 0

        def step_logits(active, chosen):
            rows = torch.tensor(active, device=self.device)
            decoder = {k: v.to(self.device) for k, v in self._decoder_inputs(chosen, [[len(c)] for c in chosen]).items()}
            hidden = self.decode(memory[rows], padding[rows], decoder["decoder_tag_ids"], decoder["decoder_lengths"])
            last = hidden[torch.arange(len(active), device=self.device), decoder["decoder_lengths"] - 1]
            return self.tag_head(last, self.tag_embeddings.weight[:self.config.num_tags])

        return step_logits


ARForTagGeneration.register_for_auto_class("AutoModel")

__all__ = ["ARForTagGeneration"]
