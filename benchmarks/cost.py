"""What each model costs, side by side in one run: training posts/s over a real epoch, generation posts/s for
5 tags, and peak memory, for BR-EF, SOG (paper layout), SOG (one-pass layout) and AR.

    python -m benchmarks.cost                   # 1,000 train posts of the bundled corpus, 128 units, batch 32
    python -m benchmarks.cost --train_posts 200 --generate_posts 64     # a quick look

Every model gets the same posts, encoder (the offline MiniLM), input length, batch size and machine. Each model
runs in a fresh process, one after the other (never two at once: they would share the cores), so its peak
resident memory is its own. A training epoch is what ``train.py`` runs: the same instances, collator, loss,
backward pass, gradient clipping and AdamW step; the batch is 32 instances for models that take one instance
per row (BR-EF, SOG paper layout) and 32 posts for models that pack a post's instances in one row (SOG one-pass,
AR). Writes benchmarks/results/cost.{json,md}.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODELS = {  # row name -> (train.py --model, config overrides)
    "BR-EF": ("br", {}),
    "SOG (paper)": ("sog", {"attention_layout": "paper"}),
    "SOG (one-pass)": ("sog", {"attention_layout": "one-pass"}),
    "AR": ("ar", {}),
}
TARGETS = {"SOG (one-pass)": {"train_time_ratio": 1.3, "generate_time_ratio": 1.5}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_posts", type=int, default=1000)
    p.add_argument("--generate_posts", type=int, default=256)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_tags", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "cost"), help="path stem of .json/.md")
    p.add_argument("--one", choices=list(MODELS), help=argparse.SUPPRESS)   # internal: measure one model here
    return p.parse_args(argv)


def measure_one(name: str, args) -> dict:
    """Runs in its own process: build, train one epoch, generate; returns the measured row."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    from corpora import load_corpus, posts_of, subset, tag_vocabulary
    from recipe import build_model, default_encoder_path, make_optimizer
    from training_instances import InstanceCollator, InstanceDataset

    torch.manual_seed(args.seed)
    corpus = load_corpus(None)
    train_split = subset(corpus["train"], args.train_posts, args.seed)
    test_split = subset(corpus["test"], args.generate_posts, args.seed)
    vocabulary = tag_vocabulary(train_split["tags"], 1)
    tag2id = {t: i for i, t in enumerate(vocabulary)}
    post_tag_ids = [[tag2id[t] for t in dict.fromkeys(tags)] for tags in train_split["tags"]]
    model_key, overrides = MODELS[name]
    encoder = default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = build_model(model_key, encoder, vocabulary, max_input_length=args.max_length, **overrides)
    model.init_from_training_tags(post_tag_ids)
    data = InstanceDataset.for_model(model, post_tag_ids, "1-to-M", "all", args.seed, "shuffled")
    contexts = model.encode_contexts(posts_of(train_split), tokenizer)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False,
                        collate_fn=InstanceCollator(model, tokenizer, contexts))
    optimizer = make_optimizer(model, 1e-4)
    model.train()
    start = time.perf_counter()
    steps = 0
    for batch in loader:   # collation included: it is part of what an epoch costs
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        steps += 1
    train_seconds = time.perf_counter() - start
    posts = posts_of(test_split)
    start = time.perf_counter()
    model.generate_tags(posts, tokenizer, num_tags=args.num_tags, batch_size=args.batch_size)
    generate_seconds = time.perf_counter() - start
    return {"model": name, "train_posts_per_s": round(len(post_tag_ids) / train_seconds, 2),
            "generate_posts_per_s": round(len(posts) / generate_seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "train_seconds": round(train_seconds, 1), "train_steps": steps, "train_instances": data.instance_count,
            "generate_seconds": round(generate_seconds, 1), "generated_posts": len(posts)}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's epoch time and 5-tag generation time as multiples of BR-EF's (1.0 = as cheap as BR-EF)."""
    base = next((r for r in rows if r["model"] == "BR-EF"), None)
    for row in rows:
        if base:
            row["train_time_ratio"] = round(base["train_posts_per_s"] / row["train_posts_per_s"], 2)
            row["generate_time_ratio"] = round(base["generate_posts_per_s"] / row["generate_posts_per_s"], 2)
    return rows


def markdown(rows, settings) -> str:
    lines = ["| model | train posts/s | epoch time / BR-EF's | generate posts/s (5 tags) | generation time / BR-EF's "
             "| peak RSS MB |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['train_posts_per_s']:.1f} | {r.get('train_time_ratio', float('nan')):.2f} | "
                     f"{r['generate_posts_per_s']:.1f} | {r.get('generate_time_ratio', float('nan')):.2f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    targets = [f"{name}: epoch time <= {t['train_time_ratio']}x, generation time <= {t['generate_time_ratio']}x BR-EF's"
               + verdict(rows, name, t) for name, t in TARGETS.items()]
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"Settings: {described}\n\n" + "\n".join(lines) + "\n\nTargets: " + "; ".join(targets) + "\n"


def verdict(rows, name, target) -> str:
    row = next((r for r in rows if r["model"] == name), None)
    if row is None or "train_time_ratio" not in row:
        return " (not measured)"
    met = [row[k] <= limit for k, limit in target.items()]
    return f" ({row['train_time_ratio']:.2f}x and {row['generate_time_ratio']:.2f}x: {'met' if all(met) else 'NOT met'})"


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        print("ROW " + json.dumps(measure_one(args.one, args)), flush=True)
        return None
    import torch

    rows = []
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    for name in args.models:
        done = subprocess.run([sys.executable, "-m", "benchmarks.cost", *passed, "--one", name],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the measuring process failed\n{done.stderr[-3000:]}")
        row = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("ROW "))[4:])
        rows.append(row)
        print(f"== {name}: train {row['train_posts_per_s']:.1f} posts/s, generate {row['generate_posts_per_s']:.1f} "
              f"posts/s, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    rows = with_ratios(rows)
    settings = {"corpus": "bundled debtags sample", "train_posts": args.train_posts,
                "generate_posts": args.generate_posts, "max_length": args.max_length, "batch_size": args.batch_size,
                "num_tags": args.num_tags, "encoder": "all-MiniLM-L6-v2 (offline)",
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                           f"{'cuda' if torch.cuda.is_available() else 'cpu'}"}
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    table = markdown(rows, settings)
    results.with_suffix(".md").write_text(table)
    print("\n" + table)
    return rows


if __name__ == "__main__":
    main()
