"""How time and memory grow with the corpus: building it, train.py's start-up, ``sog suggest``.

    python -m benchmarks.scale                                   # 10k, 100k and 1.26M posts (about 90 minutes)
    python -m benchmarks.scale --sizes 2000 20000 --suggest_sizes 500 --work_dir /tmp/scale   # a quick look

A synthetic corpus of each size is written from the bundled Stack Exchange sites (cooking and biology, 28k real
questions): each synthetic question is a real one (title, HTML body, tags) under a fresh id, so lengths spread as
real questions do, in both layouts users bring: a site's ``Posts.xml`` dump and StackSample's ``Questions.csv`` +
``Tags.csv``. Then, for each size, every stage runs as the command a user runs, in its own process, alone; the
peak resident memory of its whole process tree (workers included) is sampled every 0.2 s, and its anonymous part
(RSS less file-backed pages: memory-mapped Arrow files are not counted):

- ``build``: ``python -m data_builders`` (stackexchange on Posts.xml, stacksample on the CSVs) writing Parquet;
- ``train_startup``: ``train.py`` on the built corpus at ``--max_length 384`` with its defaults, stopped after its
  first optimizer step (``--max_train_minutes``); seconds: to that step (its own clock; the lexical expert's fit,
  on at most 100,000 posts, included and also reported alone), tokenising afresh (``--overwrite_cache``); memory:
  the whole run, and start-up (up to train.py's start-up line);
- ``suggest`` (``--suggest_sizes``): ``sog suggest MODEL --input posts.jsonl`` with a model trained here at 64
  units; seconds for all posts, and posts/s.

Writes benchmarks/results/scale.{json,md,png}; the JSON rows are ``{"stage", "posts", "seconds", "peak_rss_mb"}``
(and the layout, posts/s, seconds per post, ``peak_anon_mb``, ``startup_peak_anon_mb``). Targets: at 1.26M posts,
build peak RSS and train.py's start-up anonymous memory under 4 GB and
seconds per post within 15 % of those at 100k; ``suggest`` memory flat in the number of posts.
"""

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import psutil

from data_builders.stackoverflow import question_text
from hub_folder import TRAIN_SUMMARY

REPO = Path(__file__).resolve().parents[1]
SITES = [REPO / "data" / "stackexchange" / f"{site}.csv.zip" for site in ("cooking", "biology")]
DEFAULT_SIZES = (10_000, 100_000, 1_260_000)
TARGET_RSS_MB = 4096
TARGET_LINEARITY = 0.15


# Each source layout: its builder, which synthetic file it reads, the folder (per size) it builds into.
LAYOUTS = {"Posts.xml": ("stackexchange", "dump", "built_{}"),
           "StackSample CSV": ("stacksample", "stacksample", "built_stacksample_{}")}


def real_questions() -> list[tuple[str, str, list[str]]]:
    """(title, HTML body, tags) of every bundled question."""
    questions = []
    for path in SITES:
        with zipfile.ZipFile(path) as bundle, bundle.open(bundle.namelist()[0]) as raw:
            for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")):
                questions.append((row["title"], row["content"], row["tags"].split()))
    return questions


def synthetic_corpus(folder: Path, posts: int, questions) -> dict:
    """Write ``posts`` synthetic questions in both layouts (once: kept for reruns); returns the paths."""
    dump, stacksample = folder / "dump", folder / "stacksample"
    done = folder / "written"
    if not done.exists():
        dump.mkdir(parents=True, exist_ok=True)
        stacksample.mkdir(parents=True, exist_ok=True)
        with open(dump / "Posts.xml", "w", encoding="utf-8") as xml, \
                open(stacksample / "Questions.csv", "w", encoding="utf-8", newline="") as q, \
                open(stacksample / "Tags.csv", "w", encoding="utf-8", newline="") as t:
            xml.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
            questions_csv, tags_csv = csv.writer(q), csv.writer(t)
            questions_csv.writerow(["Id", "OwnerUserId", "CreationDate", "ClosedDate", "Score", "Title", "Body"])
            tags_csv.writerow(["Id", "Tag"])
            for i in range(posts):
                title, body, tags = questions[i % len(questions)]
                created = f"20{10 + i % 12:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00"
                score = 5 + i % 20   # StackSample's paper recipe keeps Score >= 5
                xml.write(f'  <row Id="{i + 1}" PostTypeId="1" Score="{score}" CreationDate="{created}" '
                          f'Title={quoteattr(title)} Body={quoteattr(body)} Tags={quoteattr("|" + "|".join(tags) + "|")} />\n')
                questions_csv.writerow([i + 1, i % 1000, created + "Z", "NA", score, title, body])
                tags_csv.writerows([i + 1, tag] for tag in tags)
            xml.write("</posts>\n")
        done.touch()
    return {"dump": dump, "stacksample": stacksample}


# train.py logs this at the end of its start-up ("training SOG (...) on N posts = M instances/epoch in ...")
TRAIN_STARTUP_ENDS = " instances/epoch in "


def measure(command: list[str], log: Path, env=None, startup_ends: str | None = None) -> dict:
    """Run a command in its own process; wall seconds and the peak RSS of its process tree (sampled every 0.2 s),
    and the peak of its anonymous memory (RSS less file-backed pages: memory-mapped Arrow files and shared libraries
    are not counted, the heap and tensors are). With ``startup_ends`` (a text the command logs once start-up is
    over), also the anonymous peak up to that line."""
    peak = {"rss": 0, "anon": 0, "startup_anon": 0}
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                                        "PYTHONUNBUFFERED": "1", **(env or {})})   # the marker is seen when logged
        watched = psutil.Process(process.pid)

        def sample():
            in_startup, scanned = startup_ends is not None, 0
            while process.poll() is None:
                try:
                    tree = [watched] + watched.children(recursive=True)
                    readings = [p.memory_info() for p in tree if p.is_running()]
                    anon = sum(m.rss - m.shared for m in readings)   # Linux: shared = file-backed + shmem pages
                    peak["rss"] = max(peak["rss"], sum(m.rss for m in readings))
                    peak["anon"] = max(peak["anon"], anon)
                    if in_startup:   # the log is read after the sample: no marker yet means a start-up sample
                        with open(log, "rb") as text:   # only what was logged since the last look
                            text.seek(max(0, scanned - len(startup_ends)))
                            chunk = text.read()
                        scanned = max(0, scanned - len(startup_ends)) + len(chunk)
                        in_startup = startup_ends.encode() not in chunk
                        if in_startup:
                            peak["startup_anon"] = max(peak["startup_anon"], anon)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        process.wait()
        seconds = time.perf_counter() - start
        sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])}... failed (exit {process.returncode}); see {log}:\n"
                           + log.read_text()[-3000:])
    measured = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak["rss"] / 2**20, 1),
                "peak_anon_mb": round(peak["anon"] / 2**20, 1)}
    if startup_ends is not None:
        measured["startup_peak_anon_mb"] = round(peak["startup_anon"] / 2**20, 1)
    return measured


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    p.add_argument("--suggest_sizes", type=int, nargs="*", default=[10_000, 100_000],
                   help="the sizes sog suggest runs at (given with no size: no suggest rows)")
    p.add_argument("--work_dir", default="outputs/scale", help="synthetic corpora, built folders, runs (kept)")
    p.add_argument("--preprocessing_num_workers", type=int, default=2)
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "scale"))
    p.add_argument("--train_sizes", type=int, nargs="+",
                   help="the sizes train_startup runs at (default: every size; the lexical expert's fit alone takes "
                   "about 3.5 minutes from 100k posts on 2 cores)")
    p.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS),
                   help="the source layouts to build from (train_startup reads the Posts.xml build when it is built)")
    p.add_argument("--reuse_rows", action="store_true",
                   help="keep the rows --results already holds and measure only the missing ones (spread a long run "
                   "over several sittings)")
    args = p.parse_args(argv)
    for name in ("sizes", "suggest_sizes", "train_sizes"):
        if any(size <= 0 for size in getattr(args, name) or ()):
            p.error(f"--{name} must be numbers of posts above 0, got {getattr(args, name)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    questions = real_questions()
    python = sys.executable
    stem = Path(args.results)
    rows = json.loads(stem.with_suffix(".json").read_text())["rows"] if args.reuse_rows and \
        stem.with_suffix(".json").exists() else []
    measured_already = {(r["stage"], r.get("layout"), r["posts"]) for r in rows}

    def record(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(stem, rows, args)

    def suggest_rows():
        """``sog suggest`` on each of --suggest_sizes posts, with a model trained on the smallest corpus."""
        smallest = work / f"built_{min(args.sizes)}"
        model = work / "suggest_model"
        if not (model / "config.json").exists():
            measure([python, "train.py", "--dataset", str(smallest), "--max_length", "64", "--num_train_epochs", "1",
                     "--max_train_minutes", "1", "--max_validation_samples", "100", "--max_eval_samples", "100",
                     "--report_to", "none", "--output_dir", str(model)], work / "suggest_model.log")
        for size in sorted(args.suggest_sizes):
            if ("suggest", None, size) in measured_already:
                continue
            posts = work / f"posts_{size}.jsonl"
            with open(posts, "w", encoding="utf-8") as stream:
                for i in range(size):
                    title, body, _ = questions[i % len(questions)]
                    stream.write(json.dumps({"id": str(i), "text": question_text(title, body)}) + "\n")
            log = work / f"suggest_{size}.log"
            measured = measure([python, "-m", "sog_cli", "suggest", str(model), "--input", str(posts), "--output",
                                str(work / f"tags_{size}.jsonl"), "--batch_size", "64"], log)
            rate = re.search(r"\(([\d.]+) posts/s\)", log.read_text())
            record({"stage": "suggest", "posts": size, **measured,
                    "posts_per_s": float(rate.group(1)) if rate else None})

    for size in sorted(args.sizes):
        sources = synthetic_corpus(work / f"corpus_{size}", size, questions)
        built = work / LAYOUTS["Posts.xml"][2].format(size)   # what train_startup reads
        for layout in args.layouts:
            builder, source, folder = LAYOUTS[layout]
            if ("build", layout, size) in measured_already:
                continue
            measured = measure([python, "-m", "data_builders", builder, "--data_dir", str(sources[source]),
                                "--output_dir", str(work / folder.format(size)), "--cache_dir",
                                str(work / "builder_cache")], work / f"build_{builder}_{size}.log")
            record({"stage": "build", "layout": layout, "posts": size, **measured})
        run = work / f"train_{size}"
        if ("train_startup", None, size) not in measured_already and (built / "README.md").exists() \
                and size in (args.train_sizes or args.sizes):
            measured = measure([python, "train.py", "--dataset", str(built), "--max_length", "384", "--num_train_epochs", "1",
                                "--max_train_minutes", "0.01", "--max_validation_samples", "100", "--max_eval_samples", "100",
                                "--preprocessing_num_workers", str(args.preprocessing_num_workers), "--report_to", "none",
                                # a user's first run tokenises: an earlier run's cache on this corpus would hide it
                                "--overwrite_cache", "--output_dir", str(run)], work / f"train_{size}.log",
                               startup_ends=TRAIN_STARTUP_ENDS)
            summary = json.loads((run / TRAIN_SUMMARY).read_text())
            record({"stage": "train_startup", "posts": size, "seconds": round(summary["seconds_to_first_step"], 1),
                    "peak_rss_mb": measured["peak_rss_mb"], "train_posts": summary["train_posts"],
                    "peak_anon_mb": measured["peak_anon_mb"], "startup_peak_anon_mb": measured["startup_peak_anon_mb"],
                    "expert_seconds": (summary.get("lexical_expert") or {}).get("seconds"),
                    # before the first batch (train.py's own reading): start-up without the step's activations
                    "startup_peak_rss_mb": summary.get("startup_peak_rss_mb"),
                    "run_seconds": measured["seconds"]})
        if size == min(args.sizes) and args.suggest_sizes:   # early: the largest size takes hours
            suggest_rows()

    print("\n" + stem.with_suffix(".md").read_text())
    return rows


def per_post(rows) -> list[dict]:
    for row in rows:
        row["seconds_per_post"] = row["seconds"] / row["posts"]
    return rows


def startup_mb(row, workers: int):
    """train.py's start-up memory: its own peak before the first batch plus its tokenising workers (the largest's peak
    times their number: an upper bound, they run side by side); None for other stages."""
    reading = row.get("startup_peak_rss_mb")
    return round(reading["process"] + max(1, workers) * reading["largest_worker"], 1) if reading else None


def verdicts(rows, workers: int = 2) -> list[str]:
    """Each target, met or missed, with the numbers."""
    lines = []
    for stage, layout in [("build", layout) for layout in LAYOUTS] + [("train_startup", None)]:
        found = {r["posts"]: r for r in rows if r["stage"] == stage and r.get("layout") == layout}
        if not found:
            continue
        largest = found[max(found)]
        name = f"{stage} ({layout})" if layout else stage
        if stage == "train_startup":   # its target is start-up memory (below); the run goes on past start-up
            lines.append(f"{name} at {max(found):,} posts: peak RSS of the whole run (the first step at 384 units, "
                         f"evaluation and save included) {largest['peak_rss_mb']:,.0f} MB")
        else:
            lines.append(f"{name} at {max(found):,} posts: peak RSS {largest['peak_rss_mb']:,.0f} MB "
                         f"({'met' if largest['peak_rss_mb'] < TARGET_RSS_MB else 'NOT met'}: target < {TARGET_RSS_MB} MB)")
        startup = startup_mb(largest, workers)
        if startup is not None:
            lines.append(f"{name} at {max(found):,} posts: start-up RSS (train.py's own reading before the first batch: "
                         f"file-backed pages included, workers bounded from above) {startup:,.0f} MB")
        if largest.get("startup_peak_anon_mb") is not None:
            anon = largest["startup_peak_anon_mb"]
            lines.append(f"{name} at {max(found):,} posts: start-up anonymous memory (heap and tensors of the process "
                         f"tree, memory-mapped Arrow pages not counted) {anon:,.0f} MB "
                         f"({'met' if anon < TARGET_RSS_MB else 'NOT met'}: target < {TARGET_RSS_MB} MB)")
        if len(found) > 1:
            below = found[sorted(found)[-2]]
            ratio = largest["seconds_per_post"] / below["seconds_per_post"]
            lines.append(f"{name}: seconds per post at {max(found):,} are {ratio:.2f}x those at {sorted(found)[-2]:,} "
                         f"({'met' if ratio <= 1 + TARGET_LINEARITY else 'NOT met'}: target at most 15 % more, "
                         "i.e. no worse than linear)")
    suggest = sorted((r for r in rows if r["stage"] == "suggest"), key=lambda r: r["posts"])
    if len(suggest) > 1:
        growth = suggest[-1]["peak_rss_mb"] / suggest[0]["peak_rss_mb"]
        lines.append(f"suggest: peak RSS {suggest[0]['peak_rss_mb']:,.0f} MB at {suggest[0]['posts']:,} posts, "
                     f"{suggest[-1]['peak_rss_mb']:,.0f} MB at {suggest[-1]['posts']:,} ({growth:.2f}x; "
                     f"{'flat' if growth < 1.15 else 'NOT flat'})")
    return lines


STAGE_ORDER = {"build": 0, "train_startup": 1, "suggest": 2}


def write(stem: Path, rows, args):
    # by size, then stage: rows measured in later sittings (--reuse_rows) land where they belong
    rows = sorted(per_post(rows), key=lambda r: (r["posts"], STAGE_ORDER[r["stage"]], r.get("layout") or ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    settings = {"corpus": "bundled Stack Exchange questions (cooking, biology) repeated with fresh ids",
                "max_length": 384, "preprocessing_num_workers": args.preprocessing_num_workers,
                "train_startup_cache": "none (--overwrite_cache: every run tokenises)",
                "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"}
    stem.with_suffix(".json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    lines = ["| stage | layout | posts | seconds | seconds per 1k posts | peak RSS MB | peak anon MB | start-up RSS MB "
             "| start-up anon MB | posts/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    megabytes = lambda value: "-" if value is None else f"{value:,.0f}"
    for r in rows:
        rate = r.get("posts_per_s") or r["posts"] / max(r["seconds"], 1e-9)
        lines.append(f"| {r['stage']} | {r.get('layout', '-')} | {r['posts']:,} | {r['seconds']:,.1f} | "
                     f"{1000 * r['seconds_per_post']:.2f} | {r['peak_rss_mb']:,.0f} | {megabytes(r.get('peak_anon_mb'))} | "
                     f"{megabytes(startup_mb(r, args.preprocessing_num_workers))} | "
                     f"{megabytes(r.get('startup_peak_anon_mb'))} | {rate:,.1f} |")
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    stem.with_suffix(".md").write_text(f"Settings: {described}\n\n" + "\n".join(lines) + "\n\n"
                                       + "\n".join(f"- {line}" for line in verdicts(rows, args.preprocessing_num_workers)) + "\n")
    plot(stem.with_suffix(".png"), rows)


def plot(path: Path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (seconds, memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    series = {}
    for r in rows:
        series.setdefault(f"{r['stage']}" + (f" ({r['layout']})" if r.get("layout") else ""), []).append(r)
    for name, points in series.items():
        points = sorted(points, key=lambda r: r["posts"])
        posts = [r["posts"] for r in points]
        seconds.plot(posts, [r["seconds"] for r in points], marker="o", label=name)
        memory.plot(posts, [r["peak_rss_mb"] for r in points], marker="o", label=name)
    memory.axhline(TARGET_RSS_MB, color="grey", linestyle="--", label="4 GB target")
    for ax, label in ((seconds, "seconds"), (memory, "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("posts")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    seconds.legend(fontsize=8)
    figure.suptitle("sog at scale: time and memory against corpus size (log-log)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
