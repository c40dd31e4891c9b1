"""Fitting the lexical expert of a model (``modeling_sog.LexicalExpert``): its word vocabulary
(``fit_word_vocabulary``), TF-IDF over the words (or word pieces) of whole posts, idf from the train split, and one
regularised logistic regression per tag (L2, minibatch Adam), its strength C
chosen on the validation split, as the TF-IDF + LogisticRegression baseline chooses it; and the
cross-fitted scores that ``lexical_mode="prior"`` trains the encoder against.

Everything here reads bags (``LexicalInput.bags``: a post's distinct feature ids and their counts), so the features
are exactly what the model computes at inference: sublinear tf (``1 + log count``) times idf, each post's vector
scaled to unit length. Bags are read once, in order: a list, or the columns of a memory-mapped table.
"""

import math
import random
import time
import warnings
from array import array
from dataclasses import dataclass

from modeling_sog import post_words

import numpy as np
import torch

MIN_DOCUMENT_FREQUENCY = 2          # features seen in fewer train posts are ignored (idf 0), as min_df=2 does
DEFAULT_MAX_WORDS = 100_000         # a word vocabulary keeps the words most posts use (V: words x tags floats)
DEFAULT_C_GRID = (1.0, 4.0, 16.0, 64.0)   # on 5,000 cooking posts the smallest of (4, 16, 64) won: the grid spans both sides
DEFAULT_FOLDS = 5
DEFAULT_MAX_TRAIN_POSTS = 100_000   # the expert is a minutes model: on more posts it is fitted on a sample
POSTS_VISITED = 150_000             # per fit: 10 epochs of a small corpus, at least 2 of a large one


def epochs_for(posts: int) -> int:
    """Epochs of one fit: about POSTS_VISITED posts in all (its cost stays bounded as corpora grow), 2 to 10."""
    return min(10, max(2, math.ceil(POSTS_VISITED / max(1, posts))))


def fit_word_vocabulary(post_fields, min_df: int = MIN_DOCUMENT_FREQUENCY, max_words: int = DEFAULT_MAX_WORDS):
    """The words (``modeling_sog.post_words``) of at least ``min_df`` of the posts (each one's ``post_fields``, read
    once, in order), at most ``max_words`` of them: those most posts use, ties in alphabetical order. Returns (the
    words in that order, how many distinct words the posts had)."""
    df = {}
    for fields in post_fields:
        for feature in {feature for feature, _ in post_words(fields)}:
            df[feature] = df.get(feature, 0) + 1
    kept = sorted((word for word, count in df.items() if count >= min_df), key=lambda word: (-df[word], word))
    return kept[:max_words], len(df)


def fit_idf(bags, rows: int, min_df: int = MIN_DOCUMENT_FREQUENCY) -> torch.Tensor:
    """Smooth idf, ``log((1 + N) / (1 + df)) + 1``, and 0 for features in fewer than ``min_df`` posts."""
    df = torch.zeros(rows, dtype=torch.float64)
    posts = 0
    for ids, _ in bags:
        posts += 1
        if len(ids):
            df[torch.tensor(ids, dtype=torch.long)] += 1
    idf = torch.log((1 + posts) / (1 + df)) + 1
    return torch.where(df >= min_df, idf, torch.zeros_like(idf)).float()


def tfidf_rows(bags, idf: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """A sparse CSR matrix ``[posts, kept features]`` of unit-length TF-IDF rows; ``columns`` maps a feature id to its
    column (-1: ignored)."""
    crow, col, values = [0], array("q"), array("f")
    for ids, counts in bags:
        ids = torch.tensor(ids, dtype=torch.long)
        kept = columns[ids] >= 0
        ids, counts = ids[kept], torch.tensor(counts, dtype=torch.float32)[kept]
        weights = (1 + torch.log(counts)) * idf[ids]
        col.extend(columns[ids].tolist())
        values.extend((weights / weights.norm().clamp(min=1e-12)).tolist())
        crow.append(len(col))
    with warnings.catch_warnings():   # "sparse CSR support is in beta": the products used here are plain
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.tensor(crow), torch.from_numpy(np.frombuffer(col, dtype=np.int64).copy()),
                                       torch.from_numpy(np.frombuffer(values, dtype=np.float32).copy()),
                                       size=(len(crow) - 1, int(columns.max()) + 1), check_invariants=False)


def rows_of(features, indices) -> torch.Tensor:
    """Rows ``indices`` of a CSR matrix, as a CSR matrix (torch's own row selection goes through COO and scans every
    stored value of the matrix: most of a batch's time at 100,000 posts)."""
    crow, col, values = features.crow_indices(), features.col_indices(), features.values()
    indices = torch.as_tensor(indices, dtype=torch.long)
    starts, lengths = crow[indices], crow[indices + 1] - crow[indices]
    ends = lengths.cumsum(0)
    # position of every kept value in the whole matrix: its row's start plus its offset within the row
    positions = torch.arange(int(ends[-1]) if len(ends) else 0) + torch.repeat_interleave(starts - (ends - lengths),
                                                                                          lengths)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.cat([torch.zeros(1, dtype=torch.long), ends]), col[positions],
                                       values[positions], size=(len(indices), features.size(1)),
                                       check_invariants=False)


def multi_hot(tag_ids, num_tags: int) -> torch.Tensor:
    """``[posts, tags]`` targets, built a batch at a time (at 100,000 posts and 1,400 tags the whole matrix would
    be 560 MB)."""
    targets = torch.zeros(len(tag_ids), num_tags)
    for row, tags in enumerate(tag_ids):
        targets[row, list(tags)] = 1.0
    return targets


def logistic_gradients(rows, targets, weight, bias, penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``BCE(rows @ weight + bias, targets) summed over tags, averaged over posts + penalty * ||W||^2``
    for a batch of sparse rows ``[B, columns]`` and targets ``[B, tags]``, written out (no autograd graph)."""
    residual = (torch.sigmoid(rows @ weight + bias) - targets) / rows.size(0)   # d loss / d logits  [B, tags]
    return (rows.t() @ residual).add_(weight, alpha=2 * penalty), residual.sum(0)   # [columns, tags], [tags]


def fit_logistic(features, tag_ids, num_tags: int, c: float, init=None, epochs: int | None = None,
                 batch_size: int = 512, learning_rate: float = 0.3, seed: int = 0):
    """One-vs-rest logistic regression with liblinear's objective divided by ``C * N`` (mean log loss per post plus
    ``||W||^2 / (2 C N)``), by minibatch Adam whose rate decays linearly to 0 over ``epochs`` (default
    ``epochs_for(N)``): on this machine's sparse products that reaches a better validation P@1 in seconds than
    full-batch L-BFGS in minutes. The gradient is written out (the loss's own, no autograd graph) and Adam is the
    fused kernel: 2.5x faster per step than autograd at 100,000 posts, the same updates up to rounding.
    Returns (W ``[columns, tags]``, b ``[tags]``)."""
    posts = features.size(0)
    epochs = epochs or epochs_for(posts)
    if init:
        weight, bias = init[0].clone(), init[1].clone()
    else:
        counts = torch.zeros(num_tags)
        for tags in tag_ids:
            counts[list(tags)] += 1
        weight, bias = torch.zeros(features.size(1), num_tags), torch.logit((counts / posts).clamp(1e-4, 1 - 1e-4))
    penalty = 1.0 / (2 * c * posts)
    optimizer = torch.optim.Adam([weight, bias], lr=learning_rate, fused=True)
    steps = epochs * math.ceil(posts / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(posts, generator=generator)
        for start in range(0, posts, batch_size):
            batch = order[start:start + batch_size]
            targets = multi_hot([tag_ids[i] for i in batch.tolist()], num_tags)
            weight.grad, bias.grad = logistic_gradients(rows_of(features, batch), targets, weight, bias, penalty)
            optimizer.step()
            schedule.step()
    return weight, bias


def precision_at_1(logits, tag_ids) -> float:
    """Share of posts whose top-scored tag is one of theirs (a post with none in the vocabulary is a miss)."""
    top = logits.argmax(-1).tolist()
    return 100 * sum(t in set(tags) for t, tags in zip(top, tag_ids)) / max(1, len(tag_ids))


@dataclass
class FittedExpert:
    """What ``install`` puts into a model, and how it was chosen."""

    idf: torch.Tensor            # [vocab]
    weight: torch.Tensor         # [vocab, tags]
    bias: torch.Tensor           # [tags]
    c: float
    validation_precision_at_1: dict    # C -> the expert's own validation P@1
    seconds: float
    cross_fitted: torch.Tensor | None = None   # [train posts, tags]: logits from experts that never saw the post

    def report(self) -> dict:
        return {"C": self.c, "validation_P@1_by_C": self.validation_precision_at_1, "seconds": round(self.seconds, 1),
                "features": int((self.idf > 0).sum()), "cross_fitted": self.cross_fitted is not None}


def fit_expert(train_bags, train_tag_ids, validation_bags, validation_tag_ids, num_tags: int, rows: int,
               c_grid=DEFAULT_C_GRID, folds: int = 0, seed: int = 42, log=print) -> FittedExpert:
    """The expert on the train split, C chosen by its own P@1 on validation; with ``folds`` > 1, also each train
    post's logits from an expert fitted (with the chosen C) on the other folds."""
    start = time.perf_counter()
    idf = fit_idf(train_bags, rows)
    kept = torch.nonzero(idf > 0).squeeze(-1)
    columns = torch.full((rows,), -1, dtype=torch.long)
    columns[kept] = torch.arange(len(kept))
    features, held_out = tfidf_rows(train_bags, idf, columns), tfidf_rows(validation_bags, idf, columns)
    scores, best = {}, None
    for c in sorted(c_grid):
        fitted = fit_logistic(features, train_tag_ids, num_tags, c, seed=seed)
        scores[c] = round(precision_at_1(held_out @ fitted[0] + fitted[1], validation_tag_ids), 2)
        log(f"lexical expert: C={c:g}, validation P@1 {scores[c]:.2f} ({time.perf_counter() - start:.0f} s)")
        if best is None or scores[c] > scores[best]:   # ties keep the smaller C; only the best fit is kept
            best, (compact, bias) = c, fitted
    weight = torch.zeros(rows, num_tags)
    weight[kept] = compact
    cross_fitted = None
    if folds > 1:
        cross_fitted = torch.zeros(features.size(0), num_tags)
        order = list(range(features.size(0)))
        random.Random(seed).shuffle(order)
        for fold in range(folds):
            held = sorted(order[fold::folds])
            rest = sorted(set(order) - set(held))
            w, b = fit_logistic(rows_of(features, rest), [train_tag_ids[i] for i in rest], num_tags, best,
                                seed=seed + fold)
            cross_fitted[held] = rows_of(features, held) @ w + b
        log(f"lexical expert: cross-fitted on {folds} folds ({time.perf_counter() - start:.0f} s)")
    return FittedExpert(idf, weight, bias, best, scores, time.perf_counter() - start, cross_fitted)


@torch.no_grad()
def expert_logits(expert: FittedExpert, bags, batch_size: int = 4096) -> torch.Tensor:
    """The expert's logits ``[posts, tags]`` for bags it may never have seen, a batch of bags at a time."""
    columns = torch.arange(len(expert.idf))
    rows, batch = [], []
    for bag in bags:
        batch.append(bag)
        if len(batch) == batch_size:
            rows.append(tfidf_rows(batch, expert.idf, columns) @ expert.weight + expert.bias)
            batch = []
    if batch:
        rows.append(tfidf_rows(batch, expert.idf, columns) @ expert.weight + expert.bias)
    return torch.cat(rows)


@torch.no_grad()
def install(model, expert: FittedExpert, trainable: bool):
    """Copy a fitted expert into ``model.lexical``; frozen unless ``trainable``."""
    lexical = model.lexical
    lexical.idf.copy_(expert.idf.to(lexical.idf))
    lexical.weight.copy_(expert.weight.to(lexical.weight))
    lexical.bias.copy_(expert.bias.to(lexical.bias))
    lexical.weight.requires_grad_(trainable)
    lexical.bias.requires_grad_(trainable)


def fit_idf_only(model, train_bags):
    """A jointly trained expert learns its weights with the encoder; its idf still comes from the train split."""
    with torch.no_grad():
        model.lexical.idf.copy_(fit_idf(train_bags, model.lexical.idf.numel()).to(model.lexical.idf))
