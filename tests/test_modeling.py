import itertools
import math

import pytest
import torch

from configuration_sog import SOGConfig
from inputs_sog import post_fields, time_to_words
from modeling_br import BRForTagRanking
from modeling_sog import SOGForTagGeneration, kl_to_target_loss, sigmoid_set_loss
from tests.helpers import TAGS, labels_of, tiny_config, tiny_sog


def mask_logits(model, tokenizer, post, given):
    batch = model.build_inputs(model.encode_contexts([post], tokenizer), [given], tokenizer)
    with torch.no_grad():
        return model(**batch).logits[0]


def test_mask_logits_ignore_the_order_of_given_tags(tokenizer):
    model = tiny_sog(unit_scale_tags=True)
    post = {"text": "How do I select rows of a dataframe?", "location": "Berlin", "time": "2021-03-06T20:15:00"}
    reference = mask_logits(model, tokenizer, post, [0, 1, 4, 6])
    for order in itertools.permutations([0, 1, 4, 6]):
        assert torch.allclose(mask_logits(model, tokenizer, post, list(order)), reference, atol=1e-5)
    # ... and the given tags do matter (the check above is not vacuous)
    assert (mask_logits(model, tokenizer, post, [0, 1, 4]) - reference).abs().max() > 1e-3


def test_permutation_invariance_holds_inside_a_padded_batch(tokenizer):
    model = tiny_sog()
    contexts = model.encode_contexts(["short", "a much longer post about css selectors and html"], tokenizer)
    batch_a = model.build_inputs(contexts, [[2, 3, 4], [5]], tokenizer)
    batch_b = model.build_inputs(contexts, [[4, 2, 3], [5]], tokenizer)
    with torch.no_grad():
        assert torch.allclose(model(**batch_a).logits, model(**batch_b).logits, atol=1e-5)


def test_generated_tags_never_repeat_and_cap_at_the_vocabulary(tokenizer):
    model = tiny_sog()
    [tags] = model.generate_tags(["pandas merge"], tokenizer, num_tags=50)
    names = labels_of(tags)
    assert len(names) == len(TAGS) and sorted(names) == sorted(TAGS)
    assert all(0.0 < tag["step_probability"] <= 1.0 and tag["score"] == tag["step_probability"] for tag in tags)


def test_default_number_of_tags_and_threshold(tokenizer):
    model = tiny_sog(num_tags_to_generate=3)
    [tags] = model.generate_tags(["x"], tokenizer)
    assert len(tags) == 3
    [none] = model.generate_tags(["x"], tokenizer, threshold=1.0)
    assert none == []
    with torch.no_grad():   # two clear favourites, then a flat rest: scores fall under 0.3 after two tags
        model.tag_head.bias.copy_(torch.tensor([4.0, 3.5] + [0.0] * (len(TAGS) - 2)))
    [free] = model.generate_tags(["x"], tokenizer, num_tags=8)
    [some] = model.generate_tags(["x"], tokenizer, num_tags=8, threshold=0.3)
    assert some and all(tag["score"] >= 0.3 for tag in some)
    assert len(some) < 8 and free[len(some)]["score"] < 0.3      # stopped by the threshold, not by num_tags
    assert labels_of(some) == labels_of(free)[:len(some)]


def test_batching_does_not_change_the_tags(tokenizer):
    model = tiny_sog()
    posts = ["pandas merge", "", "css grid " * 30, {"text": "java", "image": "a cup of coffee"}]
    one_by_one = [model.generate_tags([p], tokenizer, num_tags=4)[0] for p in posts]
    batched = model.generate_tags(posts, tokenizer, num_tags=4, batch_size=3)
    for a, b in zip(one_by_one, batched):
        assert labels_of(a) == labels_of(b)
        assert [t["score"] for t in a] == pytest.approx([t["score"] for t in b], abs=1e-5)


def test_empty_and_whitespace_posts_still_get_tags(tokenizer):
    model = tiny_sog()
    empty, blank = model.generate_tags(["", "   \n\t "], tokenizer, num_tags=3)
    assert len(empty) == 3 and labels_of(empty) == labels_of(blank)
    assert model.encode_contexts([""], tokenizer) == [[]]


def test_long_posts_truncate_the_context_never_the_tags_or_mask(tokenizer):
    model = tiny_sog(max_input_length=24)
    long_post = "dataframe " * 2000
    contexts = model.encode_contexts([long_post], tokenizer)
    batch = model.build_inputs(contexts, [[0, 1, 2, 3, 4, 5]], tokenizer)
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 24
    assert ids[-1] == tokenizer.mask_token_id
    assert ids[-7:-1] == [model.tag_offset + t for t in range(6)]
    assert ids[-8] == tokenizer.sep_token_id and ids[0] == tokenizer.cls_token_id
    [tags] = model.generate_tags([long_post], tokenizer, num_tags=8)
    assert len(tags) == 8


def test_more_tags_than_the_input_length_still_decode(tokenizer):
    model = tiny_sog(max_input_length=6, tag_names=[f"t{i}" for i in range(12)])
    [tags] = model.generate_tags(["some text"], tokenizer, num_tags=12)
    assert len(set(labels_of(tags))) == 12


def test_dict_posts_with_every_field_and_with_none(tokenizer):
    model = tiny_sog()
    full = {"text": "beach day", "image": "a dog on the sand", "location": "Nice", "time": "2020-07-01T14:52:00"}
    units = model.encode_contexts([full], tokenizer)[0]
    markers = [u - model.marker_offset for u in units if model.marker_offset <= u < model.tag_offset]
    assert markers == [0, 1, 2]
    assert model.encode_contexts([{}], tokenizer) == [[]]
    assert model.encode_contexts([{"text": "beach day"}], tokenizer) == model.encode_contexts(["beach day"], tokenizer)
    assert len(model.generate_tags([full, {}], tokenizer, num_tags=2)) == 2


def test_bad_posts_raise_errors_that_name_the_field(tokenizer):
    model = tiny_sog()
    with pytest.raises(ValueError, match="caption"):
        model.generate_tags([{"caption": "x"}], tokenizer)
    with pytest.raises(ValueError, match="'time'"):
        model.generate_tags([{"time": "yesterday"}], tokenizer)
    with pytest.raises(TypeError, match="list of posts"):
        model.generate_tags("a single string", tokenizer)
    with pytest.raises(TypeError, match="post 1: a post is a string .* got NoneType"):
        model.generate_tags(["fine", None], tokenizer)
    with pytest.raises(TypeError, match="post 0: .* got int"):
        model.generate_tags([3], tokenizer)
    with pytest.raises(TypeError, match="'location'"):
        post_fields({"location": 3})


def test_time_becomes_words():
    assert time_to_words("2020-07-01 14:52") == "summer weekday afternoon"
    assert time_to_words("2021-12-25T23:30:00+01:00") == "winter weekend night"
    assert time_to_words("2019-04-15T06:00:00Z") == "spring weekday morning"
    assert time_to_words("2019-10-12T18:00:00") == "autumn weekend evening"


def test_loss_is_the_hand_computed_kl_for_both_schemes():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    z = sum(math.exp(v) for v in (2.0, 0.0, -1.0))
    log_p = [v - math.log(z) for v in (2.0, 0.0, -1.0)]
    # 1-to-M: target uniform over tags 0 and 2 -> KL = sum q (log q - log p)
    expected = 0.5 * (math.log(0.5) - log_p[0]) + 0.5 * (math.log(0.5) - log_p[2])
    assert kl_to_target_loss(logits, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(expected, rel=1e-6)
    # 1-to-1: target one-hot on tag 1 -> KL = -log p_1, as an id or as a one-hot row
    assert kl_to_target_loss(logits, torch.tensor([1])).item() == pytest.approx(-log_p[1], rel=1e-6)
    assert kl_to_target_loss(logits, torch.tensor([[0.0, 1.0, 0.0]])).item() == pytest.approx(-log_p[1], rel=1e-6)
    # averaged over instances
    two = kl_to_target_loss(logits.repeat(2, 1), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert two.item() == pytest.approx((expected - log_p[1]) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="at least one target"):
        kl_to_target_loss(logits, torch.zeros(1, 3))


def test_forward_returns_the_loss_from_labels(tokenizer):
    model = tiny_sog()
    batch = model.build_inputs(model.encode_contexts(["a", "b"], tokenizer), [[0], []], tokenizer)
    labels = torch.zeros(2, len(TAGS))
    labels[0, [1, 2]] = 1
    labels[1, 3] = 1
    out = model(**batch, labels=labels)
    assert out.loss.item() == pytest.approx(kl_to_target_loss(out.logits, labels).item())
    out.loss.backward()
    assert model.tag_embeddings.weight.grad is not None


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="scheme"):
        SOGConfig(scheme="1-to-N")
    with pytest.raises(ValueError, match="duplicates"):
        SOGConfig(tag_names=["a", "a"])
    with pytest.raises(ValueError, match="tag_names is empty"):
        SOGForTagGeneration(tiny_config(tags=[]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        SOGForTagGeneration(tiny_config(max_input_length=512))
    with pytest.raises(ValueError, match="step_loss"):
        SOGConfig(step_loss="hinge")
    with pytest.raises(ValueError, match="weight_loss_by_target_count weights the softmax"):
        SOGConfig(step_loss="sigmoid", weight_loss_by_target_count=True)
    with pytest.raises(ValueError, match="first_step_sigmoid_weight must be >= 0"):
        SOGConfig(first_step_sigmoid_weight=-0.5)
    for other in (dict(step_loss="sigmoid"), dict(scheme="1-to-1")):
        with pytest.raises(ValueError, match="first_step_sigmoid_weight adds BR's objective"):
            SOGConfig(first_step_sigmoid_weight=1.0, **other)


def test_the_sigmoid_step_loss_is_each_tags_cross_entropy_against_being_a_target(tokenizer):
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    bce = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(0.0)), math.log1p(math.exp(1.0))]   # -log sigmoid(z)
    bce_absent = [math.log1p(math.exp(2.0)), math.log1p(math.exp(0.0)), math.log1p(math.exp(-1.0))]
    # 1-to-M: tags 0 and 2 are targets, whatever their weights; tag 1 is not
    expected = (bce[0] + bce_absent[1] + bce[2]) / 3
    assert sigmoid_set_loss(logits, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(expected, rel=1e-6)
    assert sigmoid_set_loss(logits, torch.tensor([[0.5, 0.0, 2.0]])).item() == pytest.approx(expected, rel=1e-6)
    # 1-to-1: a tag id is its one-hot row
    one = (bce_absent[0] + bce[1] + bce_absent[2]) / 3
    assert sigmoid_set_loss(logits, torch.tensor([1])).item() == pytest.approx(one, rel=1e-6)
    with pytest.raises(ValueError, match="do not match the logits"):
        sigmoid_set_loss(logits, torch.ones(1, 4))
    # SOG trains it with step_loss="sigmoid"; the paper's KL stays the default
    batch_posts, given = ["a", "b"], [[0], []]
    labels = torch.zeros(2, len(TAGS))
    labels[0, [1, 2]] = 1
    labels[1, 3] = 1
    for step_loss, loss_of in (("sigmoid", sigmoid_set_loss), ("softmax", kl_to_target_loss)):
        model = tiny_sog(step_loss=step_loss)
        out = model(**model.build_inputs(model.encode_contexts(batch_posts, tokenizer), given, tokenizer), labels=labels)
        assert out.loss.item() == pytest.approx(loss_of(out.logits, labels).item(), rel=1e-6)


def test_a_sigmoid_generator_reports_each_tags_sigmoid_and_starts_at_the_share_of_posts(tokenizer):
    sog = tiny_sog(step_loss="sigmoid")
    sog.init_from_training_tags([[0, 1], [0, 0]])          # tag 0 on both posts, tag 1 on one, the rest on none
    assert torch.sigmoid(sog.tag_head.bias[:3]).tolist() == pytest.approx([1 - 1e-4, 0.5, 1e-4], rel=1e-4)
    post = "How do I merge two dataframes?"
    [tags] = sog.generate_tags([post], tokenizer, num_tags=3)
    first = mask_logits(sog, tokenizer, post, [])
    second = mask_logits(sog, tokenizer, post, [sog.config.tag2id[tags[0]["label"]]])
    assert tags[0]["label"] == TAGS[int(first.argmax())]
    assert tags[0]["step_probability"] == pytest.approx(torch.sigmoid(first.max()).item(), rel=1e-5)
    second[sog.config.tag2id[tags[0]["label"]]] = float("-inf")
    assert tags[1]["step_probability"] == pytest.approx(torch.sigmoid(second.max()).item(), rel=1e-5)
    # a softmax generator with the same weights chooses the same tags, with softmax step probabilities
    soft = tiny_sog()
    soft.load_state_dict(sog.state_dict())
    [soft_tags] = soft.generate_tags([post], tokenizer, num_tags=3)
    assert labels_of(soft_tags) == labels_of(tags)
    assert soft_tags[0]["step_probability"] == pytest.approx(first.softmax(-1).max().item(), rel=1e-5)


def test_ranking_baseline_scores_every_tag_in_one_pass(tokenizer):
    torch.manual_seed(0)
    model = BRForTagRanking(tiny_config()).eval()
    [tags] = model.generate_tags(["pandas"], tokenizer, num_tags=20)
    probs = [tag["score"] for tag in tags]
    assert len(tags) == len(TAGS) and probs == sorted(probs, reverse=True)
    batch = model.build_inputs(model.encode_contexts(["pandas"], tokenizer), [[]], tokenizer)
    assert batch["input_ids"][0, -1].item() == tokenizer.sep_token_id
    loss = model(**batch, labels=torch.ones(1, len(TAGS))).loss
    expected = torch.nn.functional.softplus(-model(**batch).logits).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ar_baseline_depends_on_tag_order_unlike_sog(tokenizer):
    from modeling_ar import ARForTagGeneration

    torch.manual_seed(0)
    model = ARForTagGeneration(tiny_config()).eval()
    with torch.no_grad():
        model.tag_embeddings.weight.normal_(0.0, 1.0)
        contexts = model.encode_contexts(["pandas merge"], tokenizer)
        forward = model(**model.build_inputs(contexts, [[0, 1, 4]], tokenizer)).logits
        backward = model(**model.build_inputs(contexts, [[4, 1, 0]], tokenizer)).logits
    assert (forward - backward).abs().max() > 1e-3
    [tags] = model.generate_tags(["pandas merge"], tokenizer, num_tags=8)
    assert sorted(labels_of(tags)) == sorted(TAGS)


def test_late_fusion_baseline_encodes_each_field_on_its_own(tokenizer):
    from modeling_br import BRLateFusionForTagRanking

    torch.manual_seed(0)
    model = BRLateFusionForTagRanking(tiny_config()).eval()
    posts = [{"text": "beach", "location": "Nice", "time": "2020-07-01T14:52:00"}, "only text", {}]
    batch = model.build_inputs(model.encode_contexts(posts, tokenizer), [[], [], []], tokenizer)
    assert batch["field_owner"].tolist() == [0, 0, 0, 1, 2]
    assert model(**batch).logits.shape == (3, len(TAGS))
    assert [len(t) for t in model.generate_tags(posts, tokenizer, num_tags=2)] == [2, 2, 2]


def test_ranking_baseline_starts_from_the_tag_prior():
    torch.manual_seed(0)
    model = BRForTagRanking(tiny_config())
    model.init_from_training_tags([[0, 1], [0], [0, 2, 2]])
    expected = [math.log(p / (1 - p)) for p in (1 - 1e-4, 1 / 3, 1 / 3, 1e-4)]
    assert model.classifier.bias[:4].tolist() == pytest.approx(expected, rel=1e-5)

def test_generators_start_their_softmax_at_the_smoothed_tag_shares():
    sog = tiny_sog()
    sog.init_from_training_tags([[0, 1], [0, 0]])         # counted once per post: tag 0 twice, tag 1 once
    # add-one over 8 tags: (2+1, 1+1, 0+1 x 6) / (3 + 8)
    expected = [3 / 11, 2 / 11] + [1 / 11] * 6
    assert torch.softmax(sog.tag_head.bias, -1).tolist() == pytest.approx(expected, rel=1e-5)


def test_plain_head_scores_the_mask_state_against_the_tag_embeddings(tokenizer, tmp_path):
    model = tiny_sog(tag_head_transform=False)
    assert not hasattr(model.tag_head, "dense")
    post = "How do I merge two dataframes?"
    batch = model.build_inputs(model.encode_contexts([post], tokenizer), [[2, 0]], tokenizer)
    with torch.no_grad():
        hidden = model.encode(**batch).last_hidden_state[0, batch["attention_mask"][0].sum() - 1]
        expected = hidden @ model.tag_embeddings.weight.t() + model.tag_head.bias
    assert torch.allclose(mask_logits(model, tokenizer, post, [2, 0]), expected, atol=1e-5)
    assert torch.allclose(mask_logits(model, tokenizer, post, [0, 2]), expected, atol=1e-5)
    model.save_pretrained(tmp_path)
    reloaded = SOGForTagGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.tag_head_transform is False
    assert torch.allclose(mask_logits(reloaded, tokenizer, post, [2, 0]), expected, atol=1e-5)


def test_loss_weighted_by_target_count_weighs_each_instance_by_its_number_of_targets():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])
    labels = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])        # 3 targets, then 1: mean 2
    each = [kl_to_target_loss(logits[i:i + 1], labels[i:i + 1]).item() for i in range(2)]
    weighted = kl_to_target_loss(logits, labels, weight_by_target_count=True).item()
    assert weighted == pytest.approx((each[0] * 3 / 2 + each[1] * 1 / 2) / 2, rel=1e-6)
    assert kl_to_target_loss(logits, labels).item() == pytest.approx(sum(each) / 2, rel=1e-6)


def test_the_weighted_loss_ranks_the_first_tag_by_how_often_it_is_gold():
    """Tag 0 is in 2 of 3 gold sets (each of 3 tags), tag 3 alone in 1: the paper's loss is minimised by
    ranking tag 3 first (its 1/|gold| share is larger), the weighted loss by ranking tag 0 first."""
    gold = torch.zeros(3, 4)
    gold[0, [0, 1, 2]] = 1
    gold[1, [0, 1, 2]] = 1
    gold[2, 3] = 1
    for weighted, best in ((False, 3), (True, 0)):
        logits = torch.zeros(1, 4, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=0.1)
        for _ in range(300):
            loss = kl_to_target_loss(logits.expand(3, 4), gold, weight_by_target_count=weighted)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert logits.argmax().item() == best
