"""Training instances for tag models: the paper's 1-to-M / 1-to-1 expansion, one epoch's items and the batch
collator.

A post with N gold tags becomes N instances: instance i gives i tags and asks for the rest. The tags are
given in the order the corpus lists them (``tag_order="fixed"``, the paper's 1-to-1: Eq. 9 learns the
i-th ground-truth tag) or in an order drawn afresh each epoch (``"shuffled"``). 1-to-M: the target is
uniform over every gold tag not yet given; 1-to-1: it is the next tag of the order. Ranking models
(``learns_from_gold_set``) get one instance per post whose target is the whole gold set.

Models whose layout packs instances (one-pass SOG, AR) get batches of posts, each post's instances in one
row; the others get batches of instances.
"""

import random
from array import array
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

TAG_ORDERS = ("fixed", "shuffled")
INSTANCES_PER_POST = ("all", "one", "set")


@dataclass(frozen=True)
class Instance:
    post: int                   # index into the list of encoded contexts
    given: tuple[int, ...]      # tag ids already given, in input order (SOG ignores the order, AR does not)
    target: tuple[int, ...]     # tag ids of the target distribution (uniform over them)


def _check(scheme: str, per_post: str, tag_order: str):
    if scheme not in ("1-to-M", "1-to-1"):
        raise ValueError(f"unknown scheme {scheme!r}; expected '1-to-M' or '1-to-1'")
    if per_post not in INSTANCES_PER_POST:
        raise ValueError(f"unknown per_post {per_post!r}; expected one of {INSTANCES_PER_POST}")
    if per_post != "set" and tag_order not in TAG_ORDERS:   # a gold set has no order
        raise ValueError(f"unknown tag_order {tag_order!r}; expected one of {TAG_ORDERS}")


def shuffled_indices(count: int, rng: random.Random) -> array:
    """``range(count)`` in the order ``rng.shuffle`` would put a list of ``count`` items in (the same Fisher-Yates
    draws), in a compact array: an epoch of millions of instances costs 8 bytes each, not an object each."""
    index = array("q", range(count))
    randbelow = rng._randbelow   # what random.shuffle itself draws with
    for i in reversed(range(1, count)):
        j = randbelow(i + 1)
        index[i], index[j] = index[j], index[i]
    return index


class EpochPlan:
    """One epoch's instances, as flat arrays: each post's tag order (in the corpus's order, or drawn with ``seed``),
    and, for ``per_post="one"``, which of its instances was drawn. The draws are those of a ``random.Random(seed)``
    walking the posts in order, so a seed always gives the same epoch.

    per_post: ``"all"`` every instance of the post (the paper's generators), ``"one"`` one of them drawn at
    random (an epoch then costs what a ranking epoch costs), ``"set"`` the ranking instance: nothing given, the
    whole gold set as target. ``post_tag_ids`` is read once, in order (a list, or a column read in batches)."""

    def __init__(self, post_tag_ids, scheme: str, per_post: str, seed: int, tag_order: str = "shuffled"):
        _check(scheme, per_post, tag_order)
        self.scheme, self.per_post = scheme, per_post
        rng = random.Random(seed)
        self.orders, self.starts, self.drawn = array("q"), array("q", [0]), array("q")
        for tags in post_tag_ids:
            order = list(tags)
            if per_post != "set" and tag_order == "shuffled":
                rng.shuffle(order)
            if per_post == "one":
                self.drawn.append(rng._randbelow(len(order)))   # rng.choice over the post's instances
            self.orders.extend(order)
            self.starts.append(len(self.orders))

    @property
    def posts(self) -> int:
        return len(self.starts) - 1

    def instances_of(self, post: int) -> int:
        return self.starts[post + 1] - self.starts[post] if self.per_post == "all" else 1

    def instance(self, post: int, given: int) -> Instance:
        order = tuple(self.orders[self.starts[post]:self.starts[post + 1]])
        if self.per_post == "set":
            return Instance(post, (), order)
        target = order[given:] if self.scheme == "1-to-M" else (order[given],)
        return Instance(post, order[:given], target)

    def group(self, post: int) -> list[Instance]:
        """The post's instances this epoch, fewest tags given first."""
        if self.per_post == "one":
            return [self.instance(post, self.drawn[post])]
        return [self.instance(post, given) for given in range(self.instances_of(post))]


def epoch_instances(post_tag_ids, scheme: str, per_post: str, seed: int, tag_order: str = "shuffled") -> list[list[Instance]]:
    """The instances of one epoch, grouped by post (``EpochPlan`` as lists, for small corpora and tests)."""
    plan = EpochPlan(post_tag_ids, scheme, per_post, seed, tag_order)
    return [plan.group(post) for post in range(plan.posts)]


def expand_post(post: int, tag_ids, scheme: str, rng: random.Random, tag_order: str = "shuffled") -> list[Instance]:
    """Every instance of one post (its tags in the corpus's order, or shuffled with ``rng``)."""
    _check(scheme, "all", tag_order)
    order = list(tag_ids)
    if tag_order == "shuffled":
        rng.shuffle(order)
    plan = EpochPlan([order], scheme, "all", 0, "fixed")
    return [Instance(post, inst.given, inst.target) for inst in plan.group(0)]


class InstanceDataset(Dataset):
    """The items of one epoch, in a shuffled order that ``set_epoch`` redraws (the tag orders too): instances,
    or, for models that pack, posts (each with all its instances). A prepared DataLoader's ``set_epoch``
    forwards to it. Items are made when asked for, from the epoch's ``EpochPlan``: memory grows by a few bytes
    per instance, not an object.

    The count does not change between epochs, so one prepared DataLoader serves every epoch and a resumed
    run skips exactly the batches it had done."""

    def __init__(self, post_tag_ids, scheme: str, per_post: str, seed: int, tag_order: str, packed: bool):
        self.post_tag_ids, self.scheme, self.per_post, self.seed = post_tag_ids, scheme, per_post, seed
        self.tag_order, self.packed = tag_order, packed
        self.set_epoch(0)

    @classmethod
    def for_model(cls, model, post_tag_ids, scheme: str, instances_per_post: str, seed: int, tag_order: str):
        """The epoch items a model learns from: the gold set of each post for ranking models, else
        ``instances_per_post`` instances of each post, packed by post where the model packs."""
        per_post = "set" if model.learns_from_gold_set else instances_per_post
        return cls(post_tag_ids, scheme, per_post, seed, tag_order, model.packs_instances)

    def set_epoch(self, epoch: int):
        plan = EpochPlan(self.post_tag_ids, self.scheme, self.per_post, self.seed + epoch, self.tag_order)
        self.plan = plan
        self.instance_count = sum(plan.instances_of(post) for post in range(plan.posts))
        if self.packed:
            self.item_post = self.item_given = None
        else:   # item i of the unshuffled epoch: post item_post[i], item_given[i] tags given
            self.item_post, self.item_given = array("q"), array("q")
            for post in range(plan.posts):
                for instance in range(plan.instances_of(post)):
                    self.item_post.append(post)
                    self.item_given.append(plan.drawn[post] if plan.per_post == "one" else instance)
        items = plan.posts if self.packed else self.instance_count
        self.order = shuffled_indices(items, random.Random(self.seed * 1000 + epoch))

    def __len__(self):
        return len(self.order)

    def __getitem__(self, index):
        item = self.order[index]
        if self.packed:
            return self.plan.group(item)
        return self.plan.instance(self.item_post[item], self.item_given[item])


class InstanceCollator:
    """Turns instances into model inputs plus a ``(instances, num_tags)`` target-weight ``labels``.

    Takes a list of instances (one per row) or, for models that pack, a list of posts' instance groups (one
    row per post, the instances of a group given prefixes of one tag order). With a lexical expert, each
    instance also gets its post's ``offsets`` (``[posts, tags]``: cross-fitted priors) or the bag of word pieces
    its post's expert score is computed from (``bags``: a jointly trained expert), one row per instance."""

    def __init__(self, model, tokenizer, contexts, offsets=None, bags=None):
        self.model = model
        self.tokenizer = tokenizer
        self.contexts = contexts
        self.offsets, self.bags = offsets, bags

    def __call__(self, items) -> dict:
        if items and isinstance(items[0], Instance):
            instances = items
            batch = self.model.build_inputs([self.contexts[i.post] for i in instances],
                                            [i.given for i in instances], self.tokenizer)
        else:
            groups = [sorted(group, key=lambda inst: len(inst.given)) for group in items]
            instances = [inst for group in groups for inst in group]
            orders = [group[-1].given for group in groups]
            for order, group in zip(orders, groups):
                if any(order[:len(inst.given)] != inst.given for inst in group):
                    raise ValueError(f"post {group[0].post}: packed instances must be given prefixes of one tag order")
            batch = self.model.build_packed_inputs([self.contexts[group[0].post] for group in groups], orders,
                                                   [[len(inst.given) for inst in group] for group in groups],
                                                   self.tokenizer)
        labels = torch.zeros(len(instances), self.model.config.num_tags)
        for row, inst in enumerate(instances):
            labels[row, list(inst.target)] = 1.0
        batch["labels"] = labels
        posts = [inst.post for inst in instances]
        if self.offsets is not None:
            batch["lexical_offsets"] = self.offsets[posts]
        if self.bags is not None:
            batch.update(self.model.lexical_input.tensors([self.bags[post] for post in posts]))
        return batch
