"""``sog``: tag posts, score a model, build corpora, train, and serve the demo, from the command line.

    sog suggest MODEL "How do I merge two dataframes?" "Centering a div"     # posts as arguments
    cat posts.txt | sog suggest MODEL                                        # one post (its text) per line
    sog suggest MODEL --input posts.jsonl --output tags.jsonl               # JSONL: text, image, location, time, id
    sog eval MODEL --dataset debtags --predictions predicted.jsonl          # P/R/F1/nDCG@1,3,5 on a corpus's test split
    sog build debtags --output_dir data/debtags                             # = python -m data_builders ...
    sog train --dataset data/debtags --output_dir outputs/debtags           # = python train.py ...
    sog serve MODEL                                                         # the model's Gradio demo on 127.0.0.1

MODEL is a folder written by ``train.py`` (or a Hub model id). ``suggest`` writes one JSON line per post, in
input order: ``{"id": ..., "tags": [{"label": ..., "score": ...}, ...]}``. A malformed input line is reported
on stderr with its line number and skipped (``--strict``: the run stops there); the summary counts them.

Exit status: 0 done; 1 an error (missing model, unreadable input, a bad line under ``--strict``); 2 bad usage;
3 done, but some input lines were skipped.
"""

import argparse
import json
import os
import sys
import time

from inputs_sog import EMPTY_POST_POLICIES, POST_FIELDS, EmptyPostError, generation_options, time_to_words

EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 1, 2, 3
IGNORED_FIELDS = ("id", "tags", "group")   # the corpus schema's other columns: accepted, not read


class CommandError(Exception):
    """An error the user can fix; printed without a traceback."""


# ----- reading posts ----------------------------------------------------------------------------------------
def post_from_json_line(line: str, number: int):
    """``(id, post)`` from one JSONL line; ``CommandError`` naming the line when it is not a usable post."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise CommandError(f"line {number}: not JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise CommandError(f"line {number}: expected a JSON object with any of {POST_FIELDS}, got "
                           f"{type(row).__name__}")
    unknown = sorted(set(row) - set(POST_FIELDS) - set(IGNORED_FIELDS))
    if unknown:
        raise CommandError(f"line {number}: unknown field(s) {unknown}; a post has any of {POST_FIELDS} (and an id)")
    for field in POST_FIELDS:
        if row.get(field) is not None and not isinstance(row[field], str):
            raise CommandError(f"line {number}: field {field!r} must be a string, got {type(row[field]).__name__}")
    post = {field: row[field] for field in POST_FIELDS if row.get(field)}
    if post.get("time"):
        try:
            time_to_words(post["time"])
        except ValueError as error:
            raise CommandError(f"line {number}: {error}") from None
    return str(row.get("id", number)), post


def read_posts(args, stdin=None):
    """Yield ``(line number or None, id, post)`` or ``(line number, None, error)`` for every input post."""
    if args.posts:
        for number, text in enumerate(args.posts, start=1):
            yield number, str(number), text
        return
    if args.input and args.input != "-":
        if not os.path.isfile(args.input):
            raise CommandError(f"--input {args.input}: no such file")
        stream = open(args.input, encoding="utf-8")
    else:
        stream = stdin or sys.stdin
    jsonl = bool(args.input)
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            if not jsonl:
                yield number, str(number), line.rstrip("\n")
                continue
            try:
                post_id, post = post_from_json_line(line, number)
            except CommandError as error:
                yield number, None, error
                continue
            yield number, post_id, post


def batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ----- the model --------------------------------------------------------------------------------------------
def load_model(location: str):
    """``(model, tokenizer)`` from a folder or Hub id, with an error that says what is wrong with ``location``."""
    from transformers import AutoModel, AutoTokenizer

    looks_local = os.path.sep in location or location.startswith(".") or os.path.exists(location)
    if looks_local and not os.path.isdir(location):
        raise CommandError(f"model folder {location!r} does not exist (give a folder written by train.py, "
                           "or a Hub model id such as user/name)")
    if looks_local and not os.path.isfile(os.path.join(location, "config.json")):
        raise CommandError(f"{location!r} is not a model folder: it has no config.json")
    try:
        model = AutoModel.from_pretrained(location, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=True)
    except OSError as error:
        raise CommandError(f"cannot load the model {location!r}: {str(error).splitlines()[0]}") from None
    if not hasattr(model, "generate_tags"):
        raise CommandError(f"{location!r} holds a {type(model).__name__}, not a SOG tag model")
    return model.eval(), tokenizer


def progress(total=None, unit="post"):
    """A progress bar with posts/s on a terminal; silent when stderr is piped or redirected."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), file=sys.stderr)


# ----- commands ---------------------------------------------------------------------------------------------
def checked_options(**parameters) -> dict:
    """``generation_options``, its complaint about a parameter turned into the command's own error."""
    try:
        return generation_options(**parameters)
    except ValueError as error:
        raise CommandError(str(error)) from None


def suggest(args, stdin=None, stdout=None) -> int:
    options = checked_options(num_tags=args.num_tags, threshold=args.threshold, batch_size=args.batch_size,
                              empty_posts=args.empty_posts, explain=args.explain)
    model, tokenizer = load_model(args.model)
    if args.explain and model.lexical is None:
        raise CommandError(f"--explain needs a model with a lexical expert; {args.model} has none (train one with "
                           "--lexical_mode)")
    output = open(args.output, "w", encoding="utf-8") if args.output else (stdout or sys.stdout)
    skipped = written = 0
    start = time.perf_counter()
    bar = progress()
    try:
        for batch in batches(read_posts(args, stdin), options["batch_size"]):
            good = []
            for number, post_id, post in batch:
                if post_id is None:
                    if args.strict:
                        raise CommandError(f"{post} (--strict: stopped here)")
                    print(f"skipped {post}", file=sys.stderr)
                    skipped += 1
                else:
                    good.append((post_id, post))
            if not good:
                continue
            try:
                generated = model.generate_tags([post for _, post in good], tokenizer, num_tags=options["num_tags"],
                                                threshold=options["threshold"], batch_size=options["batch_size"],
                                                empty_posts=options["empty_posts"] or "prior", explain=args.explain)
            except EmptyPostError as error:   # --empty_posts error: the input's fault, said as such
                raise CommandError(f"{error} (in the batch of input lines from {batch[0][0]})") from None
            for (post_id, _), tags in zip(good, generated):
                output.write(json.dumps({"id": post_id, "tags": [
                    {"label": t["label"], "score": round(t["score"], 6), **({"words": t["words"]} if "words" in t else {})}
                    for t in tags]}, ensure_ascii=False) + "\n")
            output.flush()
            written += len(good)
            bar.update(len(good))
    finally:
        bar.close()
        if args.output:
            output.close()
    seconds = time.perf_counter() - start
    print(f"tagged {written} post(s) in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f} posts/s); "
          f"skipped {skipped} malformed line(s)", file=sys.stderr)
    return EXIT_SKIPPED if skipped else 0


def eval_command(args) -> int:
    from corpora import Split, load_corpus, subset
    from evaluation import load_tag_metric, score
    from score_tables import score_table

    options = checked_options(num_tags=args.num_tags, batch_size=args.batch_size)
    model, tokenizer = load_model(args.model)
    try:
        corpus = load_corpus(args.dataset, args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        raise CommandError(f"--dataset {args.dataset}: {error}") from None
    if args.split not in corpus:
        raise CommandError(f"--dataset {args.dataset} has no {args.split!r} split (it has {sorted(corpus)})")
    split = Split.of(args.split, subset(corpus[args.split], args.max_samples, 42))
    predictions, bar = [], progress(total=len(split))
    start = time.perf_counter()
    for begin in range(0, len(split), options["batch_size"]):
        chunk = split.posts[begin:begin + options["batch_size"]]
        predictions.extend(model.generate_tags(chunk, tokenizer, num_tags=options["num_tags"],
                                               batch_size=options["batch_size"]))
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - start
    scores = score(load_tag_metric(), [[t["label"] for t in row] for row in predictions], split.gold)
    print(f"{args.model} on {args.dataset} ({args.split}, {len(split)} posts, {seconds:.1f} s), scores in %:\n")
    print(score_table([("", scores)], metrics=("precision", "recall", "f1", "ndcg"), by_k=True))
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8") as stream:
            for row, generated, tags in zip(split.data.select_columns(["id"]), predictions, split.gold):
                stream.write(json.dumps({"id": row["id"], "gold": tags, "tags": generated}, ensure_ascii=False) + "\n")
        print(f"\nwrote {len(predictions)} prediction(s) to {args.predictions}")
    return 0


def serve(args) -> int:
    import space_app

    load_model(args.model)   # the same checks and messages as the other commands, before Gradio starts
    space_app.serve(args.model, host=args.host, port=args.port)
    return 0


# ----- arguments --------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    s = commands.add_parser("suggest", help="tag posts with a model")
    s.add_argument("model", help="a model folder or Hub id")
    s.add_argument("posts", nargs="*", help="posts (their text); none: read --input, or stdin one post per line")
    s.add_argument("--input", help="a JSONL file of posts (text, image, location, time; an optional id); - for stdin")
    s.add_argument("--output", help="write the JSONL here (default: stdout)")
    s.add_argument("--num_tags", type=int, help="tags per post (default: the model's)")
    s.add_argument("--threshold", type=float, help="end a post's tags before the first whose score is under this")
    s.add_argument("--batch_size", type=int, default=32)
    s.add_argument("--empty_posts", choices=EMPTY_POST_POLICIES, help="what an empty post gets (default: prior)")
    s.add_argument("--strict", action="store_true", help="stop at the first malformed line instead of skipping it")
    s.add_argument("--explain", action="store_true",
                   help="models with a lexical expert: add to each tag the words of the post that pushed it most")
    e = commands.add_parser("eval", help="score a model on a corpus (P/R/F1/nDCG@1,3,5)")
    e.add_argument("model")
    e.add_argument("--dataset", required=True, help="as train.py --dataset: a builder name, a folder or file, a Hub id")
    e.add_argument("--data_dir", help="raw data of a builder")
    e.add_argument("--split", default="test")
    e.add_argument("--max_samples", type=int, help="a seeded sample of N posts")
    e.add_argument("--num_tags", type=int, default=5)
    e.add_argument("--batch_size", type=int, default=32)
    e.add_argument("--predictions", help="write what was generated, one JSON line per post")
    v = commands.add_parser("serve", help="run the model's Gradio demo locally")
    v.add_argument("model")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, help="default: a free port")
    commands.add_parser("build", help="build a corpus: the flags of python -m data_builders", add_help=False)
    commands.add_parser("train", help="train a model: the flags of train.py", add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # build and train keep their own parsers: everything after the command is theirs.
    if argv[:1] == ["build"]:
        from data_builders.__main__ import main as build_main

        build_main(argv[1:])
        return 0
    if argv[:1] == ["train"]:
        import train

        train.main(argv[1:])
        return 0
    args = parser().parse_args(argv)
    try:
        return {"suggest": suggest, "eval": eval_command, "serve": serve}[args.command](args)
    except CommandError as error:   # only the user's own mistakes: a bug keeps its traceback
        print(f"sog {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def console_main():
    """The ``sog`` console script."""
    raise SystemExit(main())


if __name__ == "__main__":
    console_main()
