import random

import pytest
import torch

from tests.helpers import labels_of, tiny_config
from modeling_ar import ARForTagGeneration
from modeling_br import BRLateFusionForTagRanking
from modeling_br import BRForTagRanking
from modeling_sog import SOGForTagGeneration
from training_instances import InstanceCollator, InstanceDataset, epoch_instances, expand_post


def test_one_to_m_gives_every_prefix_and_the_rest_as_target():
    instances = expand_post(7, [3, 1, 4], "1-to-M", random.Random(0))
    assert len(instances) == 3
    for i, inst in enumerate(instances):
        assert inst.post == 7 and len(inst.given) == i
        assert set(inst.given) | set(inst.target) == {1, 3, 4} and not set(inst.given) & set(inst.target)


def test_one_to_one_targets_the_next_tag_of_the_shuffled_order():
    instances = expand_post(0, [3, 1, 4], "1-to-1", random.Random(0))
    order = list(instances[-1].given) + list(instances[-1].target)
    assert [inst.target for inst in instances] == [(t,) for t in order]
    assert sorted(order) == [1, 3, 4]


def flat(groups):
    return [inst for group in groups for inst in group]


def test_orders_change_between_epochs_and_repeat_for_a_seed():
    posts = [list(range(6))] * 20
    first = epoch_instances(posts, "1-to-M", "all", seed=1)
    assert first == epoch_instances(posts, "1-to-M", "all", seed=1)
    assert first != epoch_instances(posts, "1-to-M", "all", seed=2)
    assert len(first) == 20 and len(flat(first)) == 120 and all(len({i.post for i in g}) == 1 for g in first)
    ranking = epoch_instances(posts, "1-to-M", "set", seed=1)
    assert len(ranking) == 20 and ranking[0][0].target == tuple(range(6))
    with pytest.raises(ValueError, match="scheme"):
        epoch_instances(posts, "2-to-2", "all", seed=1)
    with pytest.raises(ValueError, match="per_post"):
        epoch_instances(posts, "1-to-M", "some", seed=1)


def test_one_instance_per_post_is_drawn_from_all_instances_and_redrawn_each_epoch():
    posts = [list(range(6))] * 200
    draws = [flat(epoch_instances(posts, "1-to-M", "one", seed=epoch)) for epoch in range(2)]
    assert all(len(epoch) == 200 for epoch in draws)
    assert [inst.post for inst in draws[0]] == list(range(200))
    for inst in draws[0]:
        assert sorted(inst.given + inst.target) == list(range(6)) and inst.target
    given_counts = {len(inst.given) for inst in draws[0]}
    assert given_counts == set(range(6))       # every prefix length occurs, not always the empty one
    assert draws[0] != draws[1]


def test_collator_builds_inputs_and_uniform_targets(tokenizer):
    model = SOGForTagGeneration(tiny_config())
    contexts = model.encode_contexts(["pandas question", "css question"], tokenizer)
    instances = flat(epoch_instances([[0, 1], [3]], "1-to-M", "all", seed=0))
    batch = InstanceCollator(model, tokenizer, contexts)(instances)
    assert batch["labels"].shape == (3, 8)
    assert batch["labels"].sum(-1).tolist() == [2.0, 1.0, 1.0]
    assert batch["input_ids"].shape[0] == 3


@pytest.mark.parametrize("model_class,scheme,overrides", [
    (SOGForTagGeneration, "1-to-M", {}), (SOGForTagGeneration, "1-to-1", {}),
    (SOGForTagGeneration, "1-to-M", {"attention_layout": "one-pass"}), (BRForTagRanking, "1-to-M", {}),
    (BRForTagRanking, "1-to-M", {"ranking_loss": "softmax"}), (ARForTagGeneration, "1-to-M", {}),
    (ARForTagGeneration, "1-to-1", {}), (BRLateFusionForTagRanking, "1-to-M", {})])
def test_a_few_steps_teach_a_toy_task(tokenizer, model_class, scheme, overrides):
    """Posts about fruit get {fruit, food}, posts about cars get {vehicle, road}: after training the
    right tags come first (packed rows for the models that pack)."""
    tags = ["fruit", "food", "vehicle", "road", "music", "sport"]
    torch.manual_seed(0)
    model = model_class(tiny_config(tags=tags, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides))
    posts = ["apple banana cherry", "a ripe mango and a pear", "car truck engine", "the bus and the tram"]
    gold = [[0, 1], [0, 1], [2, 3], [2, 3]]
    contexts = model.encode_contexts(posts, tokenizer)
    collate = InstanceCollator(model, tokenizer, contexts)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(40):
        groups = epoch_instances(gold, scheme, "set" if model.learns_from_gold_set else "all", seed=epoch)
        batch = collate(groups if model.packs_instances else flat(groups))
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    generated = model.generate_tags(posts, tokenizer, num_tags=2)
    assert [sorted(labels_of(row)) for row in generated] == [
        ["food", "fruit"], ["food", "fruit"], ["road", "vehicle"], ["road", "vehicle"]]


@pytest.mark.parametrize("model_class,overrides", [(SOGForTagGeneration, {}),
                                                   (SOGForTagGeneration, {"attention_layout": "one-pass"}),
                                                   (ARForTagGeneration, {})])
def test_generators_learn_that_the_next_tag_depends_on_the_tags_given(tokenizer, model_class, overrides):
    """One text, two tag sets: {fruit, pie} and {computer, phone}. Only the tags given tell which set a post has,
    so a model that ignored them could not put pie first after fruit and phone first after computer."""
    tags = ["fruit", "pie", "computer", "phone"]
    torch.manual_seed(0)
    model = model_class(tiny_config(tags=tags, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides))
    contexts = model.encode_contexts(["apple"] * 4, tokenizer)
    gold = [[0, 1], [0, 1], [2, 3], [2, 3]]
    collate = InstanceCollator(model, tokenizer, contexts)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(60):
        groups = epoch_instances(gold, "1-to-M", "all", seed=epoch)
        loss = model(**collate(groups if model.packs_instances else flat(groups))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        after_fruit, after_computer = model(**model.build_inputs(contexts[:2], [[0], [2]], tokenizer)).logits
    assert after_fruit[1] > after_fruit[3] and after_fruit[1] > after_fruit[2]      # pie after fruit
    assert after_computer[3] > after_computer[1] and after_computer[3] > after_computer[0]  # phone after computer


def listed_epoch(post_tag_ids, scheme, per_post, seed, tag_order, packed, epoch):
    """The epoch as it was built before it was planned in flat arrays, written out as the specification: every
    instance an object in a list, the list shuffled by random.shuffle."""
    from training_instances import Instance

    if per_post == "set":
        groups = [[Instance(post, (), tuple(tags))] for post, tags in enumerate(post_tag_ids)]
    else:
        rng, groups = random.Random(seed + epoch), []
        for post, tags in enumerate(post_tag_ids):
            order = list(tags)
            if tag_order == "shuffled":
                rng.shuffle(order)
            expanded = [Instance(post, tuple(order[:i]), tuple(order[i:]) if scheme == "1-to-M" else (order[i],))
                        for i in range(len(order))]
            groups.append(expanded if per_post == "all" else [rng.choice(expanded)])
    items = groups if packed else [inst for group in groups for inst in group]
    random.Random(seed * 1000 + epoch).shuffle(items)
    return items


@pytest.mark.parametrize("scheme,per_post,tag_order,packed", [
    ("1-to-M", "all", "shuffled", False), ("1-to-M", "all", "shuffled", True), ("1-to-1", "all", "fixed", False),
    ("1-to-1", "all", "fixed", True), ("1-to-M", "one", "shuffled", False), ("1-to-1", "one", "fixed", True),
    ("1-to-M", "set", "shuffled", False)])
def test_planned_epochs_hold_the_instances_and_order_of_listed_ones(scheme, per_post, tag_order, packed):
    rng = random.Random(5)
    post_tag_ids = [rng.sample(range(30), rng.randint(1, 6)) for _ in range(300)]
    data = InstanceDataset(post_tag_ids, scheme, per_post, 42, tag_order, packed)
    for epoch in range(3):
        data.set_epoch(epoch)
        assert [data[i] for i in range(len(data))] == listed_epoch(post_tag_ids, scheme, per_post, 42, tag_order,
                                                                   packed, epoch)
