"""The one-pass attention layout: what it promises (order-free [MASK], context blind to tags, tags blind to each
other), packed training equal to unpacked, cached generation equal to uncached; and AR's packed/cached twins."""

import copy
import itertools

import pytest
import torch

from modeling_ar import ARForTagGeneration
from modeling_sog import UNIT_CONTEXT, UNIT_MASK, UNIT_TAG, SOGForTagGeneration, kl_to_target_loss
from tests.helpers import TAGS, labels_of, tiny_config, tiny_sog
from training_instances import InstanceCollator, epoch_instances

POSTS = ["short", "", "a much longer post about css selectors, html tables and a few more words",
         {"text": "java streams", "location": "Nice", "time": "2021-03-06T20:15:00"}]


LONG_POST = "a post long enough to be cut " * 40     # far beyond max_input_length: the context is truncated


def one_pass(**overrides):
    return tiny_sog(unit_scale_tags=True, attention_layout="one-pass", **overrides)


def states(model, batch):
    with torch.no_grad():
        return model.encode(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state


def test_mask_output_is_exactly_invariant_to_the_order_of_the_tags_given(tokenizer):
    model = one_pass()
    contexts = model.encode_contexts([POSTS[3]], tokenizer)
    reference = model(**model.build_inputs(contexts, [[0, 1, 4, 6]], tokenizer)).logits
    for order in itertools.permutations([0, 1, 4, 6]):
        logits = model(**model.build_inputs(contexts, [list(order)], tokenizer)).logits
        assert torch.allclose(logits, reference, atol=1e-5)
    fewer = model(**model.build_inputs(contexts, [[0, 1, 4]], tokenizer)).logits
    assert (fewer - reference).abs().max() > 1e-3          # the tags given do matter


def test_context_states_do_not_depend_on_the_tags_that_follow(tokenizer):
    model = one_pass()
    contexts = model.encode_contexts(POSTS, tokenizer)
    plain = model.build_inputs(contexts, [[] for _ in contexts], tokenizer)
    tagged = model.build_inputs(contexts, [[0, 1, 2], [5], [7, 6, 5, 4], [3]], tokenizer)
    kinds = model.units.kinds(plain["input_ids"], plain["token_type_ids"], plain["attention_mask"])
    context = kinds == UNIT_CONTEXT
    a, b = states(model, plain), states(model, tagged)
    width = plain["input_ids"].size(1)
    assert torch.allclose(a[context], b[:, :width][context], atol=1e-5)
    paper = SOGForTagGeneration(tiny_config()).eval()       # the paper's layout: the tags change the context
    paper.load_state_dict(model.state_dict())
    assert (states(paper, plain)[context] - states(paper, tagged)[:, :width][context]).abs().max() > 1e-3


def test_a_tag_state_depends_only_on_the_context_and_the_tag(tokenizer):
    model = one_pass()
    contexts = model.encode_contexts([POSTS[2]] * 2, tokenizer)
    batch = model.build_inputs(contexts, [[3, 0, 1], [5, 3, 7, 2]], tokenizer)
    hidden = states(model, batch)
    kinds = model.units.kinds(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    tag_three = (batch["input_ids"] == model.tag_offset + 3) & (kinds == UNIT_TAG)
    first, second = hidden[tag_three]
    assert torch.allclose(first, second, atol=1e-5)


def packed_and_unpacked(model, tokenizer, scheme="1-to-M"):
    contexts = model.encode_contexts(POSTS[:3] + [LONG_POST], tokenizer)
    groups = epoch_instances([[0, 1, 2], [3], [4, 5, 6, 7], [1, 2]], scheme, "all", seed=3)
    collate = InstanceCollator(model, tokenizer, contexts)
    return collate(groups), collate([inst for group in groups for inst in group])


@pytest.mark.parametrize("scheme,weighted,first_step,head", [("1-to-M", False, 0.0, False), ("1-to-1", False, 0.0, False),
                                                           ("1-to-M", True, 0.0, False), ("1-to-M", False, 1.0, False),
                                                           ("1-to-M", False, 0.0, True)])
def test_a_packed_batch_gives_the_loss_and_gradients_of_the_same_instances_unpacked(tokenizer, scheme, weighted,
                                                                                    first_step, head):
    model = one_pass(weight_loss_by_target_count=weighted, first_step_sigmoid_weight=first_step, first_tag_head=head)
    packed, unpacked = packed_and_unpacked(model, tokenizer, scheme)
    assert packed["input_ids"].size(0) == 4 and unpacked["input_ids"].size(0) == 10
    gradients = []
    for batch in (packed, unpacked):
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        gradients[-1]["logits"], gradients[-1]["loss"] = out.logits.detach(), out.loss.detach()
    assert torch.allclose(gradients[0]["logits"], gradients[1]["logits"], atol=1e-5)
    assert gradients[0]["loss"].item() == pytest.approx(gradients[1]["loss"].item(), abs=1e-5)
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], atol=1e-5), name


def test_one_adamw_step_in_train_mode_is_the_same_packed_or_unpacked(tokenizer):
    """Dropout off, train mode (what train.py runs): the same instances packed or not move the weights alike.
    (eps 1e-6: a key bias's gradient is zero up to rounding, and Adam's first step would blow that noise up.)"""
    model = one_pass(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, weight_loss_by_target_count=True)
    packed, unpacked = packed_and_unpacked(model, tokenizer)
    stepped = []
    for batch in (packed, unpacked):
        copy_ = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW(copy_.parameters(), lr=1e-3, eps=1e-6)
        copy_(**batch).loss.backward()
        optimizer.step()
        stepped.append(dict(copy_.named_parameters()))
    moved = 0
    for name, parameter in stepped[0].items():
        assert torch.allclose(parameter, stepped[1][name], atol=1e-6), name
        moved += int(not torch.equal(parameter, dict(model.named_parameters())[name]))
    assert moved > 10                                      # the step did change the weights


def reference_visibility(kinds, steps):
    """The one-pass rule written out unit by unit, independently of OnePassLayout.visibility: every unit sees the
    context and itself; a [MASK] also sees the tags given before its step."""
    return [[k_kind == UNIT_CONTEXT or k == q or (q_kind == UNIT_MASK and k_kind == UNIT_TAG and k_step < q_step)
             for k, (k_kind, k_step) in enumerate(zip(kinds, steps))]
            for q, (q_kind, q_step) in enumerate(zip(kinds, steps))]


def test_the_one_pass_mask_follows_the_rule_written_out_by_hand(tokenizer):
    model = one_pass()
    contexts = model.encode_contexts(["short post", "a longer post with more words"], tokenizer)
    batch = model.build_packed_inputs(contexts, [[3, 1, 5], [2]], [[0, 1, 2], [0, 1]], tokenizer)
    kinds = model.units.kinds(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    mask = model.layout.encoder_attention_mask(kinds, batch["unit_steps"], torch.float32)[:, 0] == 0
    for row in range(2):
        units = int(batch["attention_mask"][row].sum())
        expected = reference_visibility(kinds[row, :units].tolist(), batch["unit_steps"][row, :units].tolist())
        assert mask[row, :units, :units].tolist() == expected
        assert not mask[row, :units, units:].any()          # nobody real looks at padding


@pytest.mark.parametrize("head", [False, True])
def test_teacher_forced_cached_steps_equal_the_packed_mask_logits_on_a_truncated_post(tokenizer, head):
    """The cached path (context encoded once, then one tag and one [MASK] a step) against every [MASK] of one
    packed row, on a post cut at max_input_length: each step's logits must be the packed row's (with a first-tag
    head, the first step's are that head's in both)."""
    model = one_pass(first_tag_head=head)
    order = [4, 0, 6, 2]
    for post in (LONG_POST, POSTS[3]):
        contexts = model.encode_contexts([post], tokenizer)
        with torch.no_grad():
            packed = model(**model.build_packed_inputs(contexts, [order], [[0, 1, 2, 3]], tokenizer)).logits
            step_logits = model.cached_step_logits(contexts, tokenizer)
            for step in range(4):
                cached = step_logits([0], [order[:step]])
                assert torch.allclose(cached[0], packed[step], atol=1e-5), (post[:20], step)
    assert len(model.encode_contexts([LONG_POST], tokenizer)[0]) > model.layout.context_budget(len(order))


def test_eager_and_sdpa_attention_give_the_same_logits(tokenizer):
    model = one_pass()
    packed, _ = packed_and_unpacked(model, tokenizer)
    logits = {}
    for implementation in ("eager", "sdpa"):
        model.config._attn_implementation = implementation
        with torch.no_grad():
            logits[implementation] = model(**packed).logits
    assert torch.allclose(logits["eager"], logits["sdpa"], atol=1e-5)


def test_the_paper_layout_refuses_to_pack(tokenizer):
    model = SOGForTagGeneration(tiny_config())
    with pytest.raises(ValueError, match="cannot pack"):
        model.build_packed_inputs(model.encode_contexts(["x"], tokenizer), [[0, 1]], [[0, 1]], tokenizer)


@pytest.mark.parametrize("with_threshold,head", [(False, False), (True, False), (False, True)])
def test_cached_generation_equals_the_uncached_computation(tokenizer, with_threshold, head):
    """A padded batch of posts of different lengths, an empty post among them; with a threshold some posts
    stop early while the others go on."""
    model = one_pass(first_tag_head=head)
    threshold = None
    if with_threshold:   # the median score of a free run: some posts stop early, not all
        free = model.generate_tags(POSTS, tokenizer, num_tags=6)
        threshold = sorted(t["score"] for row in free for t in row)[len(POSTS) * 6 // 2]
    cached = model.generate_tags(POSTS, tokenizer, num_tags=6, threshold=threshold, batch_size=4)
    uncached = model.generate_tags(POSTS, tokenizer, num_tags=6, threshold=threshold, batch_size=4, use_cache=False)
    assert [labels_of(row) for row in cached] == [labels_of(row) for row in uncached]
    assert any(len(row) < 6 for row in cached) == with_threshold
    assert any(len(row) > 0 for row in cached)
    for a, b in zip(cached, uncached):
        assert [t["step_probability"] for t in a] == pytest.approx([t["step_probability"] for t in b], abs=1e-5)


def test_flash_attention_is_refused_for_the_one_pass_layout(tokenizer):
    model = one_pass()
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="4-D attention mask"):
        model.generate_tags(["x"], tokenizer)


def test_ar_packs_a_post_into_one_teacher_forced_pass_and_caches_its_encoder(tokenizer):
    torch.manual_seed(0)
    model = ARForTagGeneration(tiny_config()).eval()
    packed, unpacked = packed_and_unpacked(model, tokenizer)
    with torch.no_grad():
        a, b = model(**packed), model(**unpacked)
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and a.loss.item() == pytest.approx(b.loss.item(), abs=1e-5)
    cached = model.generate_tags(POSTS, tokenizer, num_tags=5)
    uncached = model.generate_tags(POSTS, tokenizer, num_tags=5, use_cache=False)
    assert [labels_of(row) for row in cached] == [labels_of(row) for row in uncached]
    for x, y in zip(cached, uncached):
        assert [t["score"] for t in x] == pytest.approx([t["score"] for t in y], abs=1e-5)
    assert sorted(labels_of(model.generate_tags(["x"], tokenizer, num_tags=20)[0])) == sorted(TAGS)


def packed_five_instances(model, tokenizer):
    """Posts 0 and 1 packed, gold [3, 1, 5] and [2, 4]: post 0's instances given 0, 1 and 2 tags, post 1's given 0 and
    1, so the first-step instances are masks 0 and 3 of 5; each row's labels are the tags not yet given."""
    contexts = model.encode_contexts(POSTS[:2], tokenizer)
    batch = model.build_packed_inputs(contexts, [[3, 1, 5], [2, 4]], [[0, 1, 2], [0, 1]], tokenizer)
    labels = torch.zeros(5, model.config.num_tags)
    for row, (gold, given) in enumerate([([3, 1, 5], 0), ([3, 1, 5], 1), ([3, 1, 5], 2), ([2, 4], 0), ([2, 4], 1)]):
        labels[row, gold[given:]] = 1
    return contexts, batch, labels


def test_the_first_step_sigmoid_loss_is_added_to_the_instances_given_no_tag_only(tokenizer):
    """The first-step instances (masks 0 and 3 of the five packed ones) add their BR objective, summed over the tags,
    divided by all 5 instances."""
    weight = 0.7
    model = one_pass(first_step_sigmoid_weight=weight)
    contexts, batch, labels = packed_five_instances(model, tokenizer)
    out = model(**batch, labels=labels)
    gold_sets = torch.zeros_like(labels)
    gold_sets[0, [3, 1, 5]] = gold_sets[3, [2, 4]] = 1
    first = out.logits[[0, 3]]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(first, gold_sets[[0, 3]], reduction="sum") / 5
    assert out.loss.item() == pytest.approx(kl_to_target_loss(out.logits, labels).item() + weight * bce.item(),
                                            rel=1e-5)
    kinds = model.units.kinds(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert model.layout.tags_given(kinds, batch["unit_steps"]).tolist() == [0, 1, 2, 0, 1]
    unpacked = model.build_inputs(contexts * 2, [[], [3], [], [2, 4]], tokenizer)
    kinds = model.units.kinds(unpacked["input_ids"], unpacked["token_type_ids"], unpacked["attention_mask"])
    assert model.layout.tags_given(kinds).tolist() == [0, 1, 0, 2]
    paper = tiny_sog(attention_layout="paper")
    rows = paper.build_inputs(paper.encode_contexts(POSTS[:2] * 2, tokenizer), [[], [3], [], [2, 4]], tokenizer)
    kinds = paper.units.kinds(rows["input_ids"], rows["token_type_ids"], rows["attention_mask"])
    assert paper.layout.tags_given(kinds).tolist() == [0, 1, 0, 2]


def first_tag_head_model():
    """A one-pass SOG with a first-tag head whose sigmoids disagree with the tag head's softmax about the top tag."""
    model = one_pass(first_tag_head=True)
    with torch.no_grad():
        model.first_tag_head.bias.copy_(torch.arange(model.config.num_tags, dtype=torch.float32))   # prefers the last
        model.first_tag_head.weight.mul_(0.01)
    return model


def test_the_first_tag_head_answers_the_masks_given_no_tag_and_learns_the_gold_set_by_bce(tokenizer):
    """The five packed instances again (first-step ones: masks 0 and 3): the logits of masks 0 and 3 are the first-tag
    head's, the others the tag head's; the loss is the step loss on the tag head's logits of all five, plus the
    first-tag head's binary cross-entropy against each gold set, summed over the tags, divided by all 5."""
    model = first_tag_head_model()
    _, batch, labels = packed_five_instances(model, tokenizer)
    out = model(**batch, labels=labels)
    with torch.no_grad():
        hidden = model.encode(**batch).last_hidden_state
        kinds = model.units.kinds(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        masks = hidden[kinds == UNIT_MASK]                                                   # [5, hidden]
        step = model.tag_head(masks, model.tag_embeddings.weight)
        head = masks @ model.first_tag_head.weight.t() + model.first_tag_head.bias
    assert torch.allclose(out.logits[[0, 3]], head[[0, 3]], atol=1e-5)
    assert torch.allclose(out.logits[[1, 2, 4]], step[[1, 2, 4]], atol=1e-5)
    gold_sets = labels[[0, 3]]                                # a first instance's targets are the whole gold set
    bce = torch.nn.functional.binary_cross_entropy_with_logits(head[[0, 3]], gold_sets, reduction="sum") / 5
    assert out.loss.item() == pytest.approx(kl_to_target_loss(step, labels).item() + bce.item(), rel=1e-5)


def test_the_first_tag_head_chooses_the_first_tag_and_the_tag_head_the_rest(tokenizer):
    model = first_tag_head_model()
    posts = [POSTS[0], POSTS[3]]
    generated = model.generate_tags(posts, tokenizer, num_tags=3)
    contexts = model.encode_contexts(posts, tokenizer)
    with torch.no_grad():
        first = model(**model.build_inputs(contexts, [[], []], tokenizer)).logits
        for row, tags in enumerate(generated):
            chosen = [model.config.label2id[t["label"]] for t in tags]
            assert chosen[0] == model.config.num_tags - 1 == int(first[row].argmax())
            assert tags[0]["step_probability"] == pytest.approx(torch.sigmoid(first[row].max()).item(), abs=1e-5)
            second = model.tag_head(model.encode(**model.build_inputs(contexts[row:row + 1], [chosen[:1]], tokenizer))
                                    .last_hidden_state[0, -1], model.tag_embeddings.weight)
            second[chosen[0]] = float("-inf")
            assert chosen[1] == int(second.argmax())
            assert tags[1]["step_probability"] == pytest.approx(second.softmax(-1).max().item(), abs=1e-5)
    plain = one_pass()                                        # the same weights without the head: another first tag
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("first_tag_head.")})
    assert [labels_of(row)[0] for row in plain.generate_tags(posts, tokenizer, num_tags=1)] != \
        [labels_of(row)[0] for row in generated]


def test_the_first_tag_head_starts_at_the_share_of_posts_that_carry_each_tag():
    model = one_pass(first_tag_head=True)
    model.init_from_training_tags([[0, 1], [0], [0, 2], [3]])
    p = torch.tensor([3, 1, 1, 1] + [0] * (model.config.num_tags - 4), dtype=torch.float64)
    bias = model.first_tag_head.bias.double()
    assert torch.sigmoid(bias[:4]).tolist() == pytest.approx((p[:4] / 4).tolist(), abs=1e-3)
    assert bias[4:].max() < -5                                # a tag no post carries starts near probability 0


def test_the_first_tag_head_needs_the_gold_set_of_1_to_m():
    with pytest.raises(ValueError, match="first_tag_head.*1-to-M"):
        tiny_config(first_tag_head=True, scheme="1-to-1")
