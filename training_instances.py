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


def expand_post(post: int, tag_ids, scheme: str, rng: random.Random, tag_order: str = "shuffled") -> list[Instance]:
    if tag_order not in TAG_ORDERS:
        raise ValueError(f"unknown tag_order {tag_order!r}; expected one of {TAG_ORDERS}")
    order = list(tag_ids)
    if tag_order == "shuffled":
        rng.shuffle(order)
    if scheme == "1-to-M":
        return [Instance(post, tuple(order[:i]), tuple(order[i:])) for i in range(len(order))]
    if scheme == "1-to-1":
        return [Instance(post, tuple(order[:i]), (order[i],)) for i in range(len(order))]
    raise ValueError(f"unknown scheme {scheme!r}; expected '1-to-M' or '1-to-1'")


def epoch_instances(post_tag_ids, scheme: str, per_post: str, seed: int, tag_order: str = "shuffled") -> list[list[Instance]]:
    """The instances of one epoch, grouped by post; ``seed`` (e.g. base seed + epoch) fixes the orders and draws.

    per_post: ``"all"`` every instance of the post (the paper's generators), ``"one"`` one of them drawn
    at random (an epoch then costs what a ranking epoch costs), ``"set"`` the ranking instance: nothing
    given, the whole gold set as target."""
    if per_post == "set":
        return [[Instance(post, (), tuple(tags))] for post, tags in enumerate(post_tag_ids)]
    if per_post not in INSTANCES_PER_POST:
        raise ValueError(f"unknown per_post {per_post!r}; expected one of {INSTANCES_PER_POST}")
    rng = random.Random(seed)
    groups = []
    for post, tags in enumerate(post_tag_ids):
        expanded = expand_post(post, tags, scheme, rng, tag_order)
        groups.append(expanded if per_post == "all" else [rng.choice(expanded)])
    return groups


class InstanceDataset(Dataset):
    """The items of one epoch, in a shuffled order that ``set_epoch`` redraws (the tag orders too): instances,
    or, for models that pack, posts (each with all its instances). A prepared DataLoader's ``set_epoch``
    forwards to it.

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
        groups = epoch_instances(self.post_tag_ids, self.scheme, self.per_post, self.seed + epoch, self.tag_order)
        self.instance_count = sum(len(group) for group in groups)
        self.instances = groups if self.packed else [inst for group in groups for inst in group]
        random.Random(self.seed * 1000 + epoch).shuffle(self.instances)

    def __len__(self):
        return len(self.instances)

    def __getitem__(self, index):
        return self.instances[index]


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
            batch.update(self.model.units.bag_tensors([self.bags[post] for post in posts]))
        return batch
