"""Training instances for tag models: the paper's 1-to-M / 1-to-1 expansion and the batch collator.

A post with N gold tags becomes N instances: instance i gives i tags (in a freshly shuffled order each
epoch) and asks for the rest. 1-to-M: the target is uniform over every gold tag not yet given; 1-to-1: it
is the next tag of the shuffled order. Ranking models (``ranks_in_one_pass``) get one instance per post
whose target is the whole gold set.
"""

import random
from collections import Counter
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Instance:
    post: int                   # index into the list of encoded contexts
    given: tuple[int, ...]      # tag ids already given, in input order (the model ignores the order)
    target: tuple[int, ...]     # tag ids of the target distribution (uniform over them)


def tags_by_post_count(post_tags) -> list[tuple[str, int]]:
    """(tag, number of posts carrying it), most frequent first, ties by name."""
    counts = Counter(tag for tags in post_tags for tag in set(tags))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def expand_post(post: int, tag_ids, scheme: str, rng: random.Random) -> list[Instance]:
    order = list(tag_ids)
    rng.shuffle(order)
    if scheme == "1-to-M":
        return [Instance(post, tuple(order[:i]), tuple(order[i:])) for i in range(len(order))]
    if scheme == "1-to-1":
        return [Instance(post, tuple(order[:i]), (order[i],)) for i in range(len(order))]
    raise ValueError(f"unknown scheme {scheme!r}; expected '1-to-M' or '1-to-1'")


INSTANCES_PER_POST = ("all", "one", "set")


def epoch_instances(post_tag_ids, scheme: str, per_post: str, seed: int) -> list[Instance]:
    """The instances of one epoch; ``seed`` (e.g. base seed + epoch) fixes the tag orders and draws.

    per_post: ``"all"`` every instance of the post (the paper's generators), ``"one"`` one of them drawn
    at random (an epoch then costs what a ranking epoch costs), ``"set"`` the ranking instance: nothing
    given, the whole gold set as target."""
    if per_post == "set":
        return [Instance(post, (), tuple(tags)) for post, tags in enumerate(post_tag_ids)]
    if per_post not in INSTANCES_PER_POST:
        raise ValueError(f"unknown per_post {per_post!r}; expected one of {INSTANCES_PER_POST}")
    rng = random.Random(seed)
    instances = []
    for post, tags in enumerate(post_tag_ids):
        expanded = expand_post(post, tags, scheme, rng)
        instances.extend(expanded if per_post == "all" else [rng.choice(expanded)])
    return instances


class InstanceCollator:
    """Turns a list of instances into model inputs plus a ``(batch, num_tags)`` target-weight ``labels``."""

    def __init__(self, model, tokenizer, contexts):
        self.model = model
        self.tokenizer = tokenizer
        self.contexts = contexts

    def __call__(self, instances: list[Instance]) -> dict:
        batch = self.model.build_inputs([self.contexts[i.post] for i in instances], [i.given for i in instances],
                                        self.tokenizer)
        labels = torch.zeros(len(instances), self.model.config.num_tags)
        for row, inst in enumerate(instances):
            labels[row, list(inst.target)] = 1.0
        batch["labels"] = labels
        return batch
