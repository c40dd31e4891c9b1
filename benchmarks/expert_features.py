"""What the lexical expert reads, alone, on the same validation posts: word pieces (``train.py``'s default), words
(``--lexical_units words``), both in one bag (``--lexical_units both``), and word 1-2 grams (what TF-IDF + LR and
Omikuji read), each fitted the same way (``lexical.fit_logistic``: C from the grid chosen by validation P@1, as ``train.py`` chooses it),
with Omikuji on the same posts as the reference. No encoder: the expert's own quality, which a mix run's encoder
then meets at decoding (``benchmarks.expert_weights --lexical_units words|both`` measures that).

    python -m benchmarks.expert_features --dataset debtags --results benchmarks/results/expert_features_debtags

Validation is every post ``train.py`` carves from the train split (no test post is read). Each row's standard
errors count the posts of one group as one draw, and so does its gain over word pieces (paired, post by post).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from benchmarks.common import GROUPED_MEASURES, REPO, machine, paired_gain
from classical_baselines import OmikujiBaseline, _vectorizer, fused_document
from configuration_sog import SOGConfig
from corpora import DEFAULT_VALIDATION_PERCENTAGE, Split, load_corpus, prepare_splits, tag_vocabulary
from evaluation import K_VALUES, clustered_standard_error, load_tag_metric, per_post_scores
from inputs_sog import post_fields
from lexical import DEFAULT_C_GRID, fit_expert, fit_word_vocabulary, tfidf_rows
from modeling_sog import PostUnits, lexical_input
from recipe import default_encoder_path

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="debtags")
    p.add_argument("--data_dir")
    p.add_argument("--model_name_or_path", help="whose tokenizer cuts word pieces (default: offline MiniLM)")
    p.add_argument("--max_train_samples", type=int, help="a seeded sample of the train split (default: all of it)")
    p.add_argument("--c_grid", type=float, nargs="+", default=list(DEFAULT_C_GRID))
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "expert_features"))
    return p.parse_args(argv)


def ngram_bags(train_posts, posts):
    """Word 1-2 grams as the classical baselines' vectorizer counts them: (bags of the train posts, of ``posts``,
    how many n-grams)."""
    vectorizer = _vectorizer().set_params(use_idf=False, norm=None, sublinear_tf=False)   # raw counts
    counts = [vectorizer.fit_transform([fused_document(p) for p in train_posts]).tocsr(),
              vectorizer.transform([fused_document(p) for p in posts]).tocsr()]
    as_bags = lambda m: [(m.indices[m.indptr[i]:m.indptr[i + 1]].tolist(),
                          m.data[m.indptr[i]:m.indptr[i + 1]].tolist()) for i in range(m.shape[0])]
    return as_bags(counts[0]), as_bags(counts[1]), counts[0].shape[1]


def ranked_tags(expert, bags, tag_names, k: int) -> list[list[str]]:
    logits = tfidf_rows(bags, expert.idf, torch.arange(len(expert.idf))) @ expert.weight + expert.bias
    return [[tag_names[t] for t in row] for row in logits.topk(k, -1).indices.tolist()]


def main(argv=None):
    args = parse_args(argv)
    train_split, validation, _, source = prepare_splits(load_corpus(args.dataset, args.data_dir),
                                                        DEFAULT_VALIDATION_PERCENTAGE, args.max_train_samples)
    train_split, validation = Split.of("train", train_split), Split.of("validation", validation)
    tag_names = tag_vocabulary(train_split.gold, 1)
    tag2id = {tag: i for i, tag in enumerate(tag_names)}
    train_ids = [[tag2id[t] for t in dict.fromkeys(tags) if t in tag2id] for tags in train_split.gold]
    kept = [i for i, ids in enumerate(train_ids) if ids]
    train_posts, train_ids = [train_split.posts[i] for i in kept], [train_ids[i] for i in kept]
    validation_ids = [[tag2id[t] for t in tags if t in tag2id] for tags in validation.gold]
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path or default_encoder_path())
    metric, k = load_tag_metric(), max(K_VALUES)

    words = fit_word_vocabulary(post_fields(p) for p in train_posts)[0]
    kinds = {}
    for name, units in (("word pieces (train.py's default)", "pieces"), ("words (--lexical_units words)", "words"),
                        ("word pieces and words (--lexical_units both)", "both")):
        reads = lexical_input(PostUnits(SOGConfig(vocab_size=len(tokenizer), tag_names=tag_names, lexical_units=units,
                                                  lexical_words=None if units == "pieces" else words,
                                                  mask_token_id=tokenizer.mask_token_id)))
        kinds[name] = (reads.bags(train_posts, tokenizer), reads.bags(validation.posts, tokenizer), reads.rows)
    kinds["word 1-2 grams (what TF-IDF + LR reads)"] = ngram_bags(train_posts, validation.posts)

    predictions, rows = {}, []
    for name, (train_bags, validation_bags, features) in kinds.items():
        expert = fit_expert(train_bags, train_ids, validation_bags, validation_ids, len(tag_names), features,
                            args.c_grid, log=print)
        predictions[name] = ranked_tags(expert, validation_bags, tag_names, k)
        rows.append({"expert": name, "C": expert.c, "validation_P@1_by_C": expert.validation_precision_at_1,
                     "features": int((expert.idf > 0).sum()), "fit_seconds": round(expert.seconds, 1)})
    start = time.perf_counter()
    omikuji = OmikujiBaseline().fit(train_posts, [train_split.gold[i] for i in kept])
    predictions["Omikuji (reference)"] = omikuji.predict(validation.posts, k)
    rows.append({"expert": "Omikuji (reference)", "fit_seconds": round(time.perf_counter() - start, 1)})

    per_post = {row["expert"]: per_post_scores(metric, predictions[row["expert"]], validation.gold, k) for row in rows}
    pieces = per_post[rows[0]["expert"]]
    for row in rows:
        own = per_post[row["expert"]]
        gain = paired_gain(pieces, own, validation.groups)
        for m in GROUPED_MEASURES:
            row[m] = round(100 * float(np.mean(own[m])), 2)
            row[f"{m}_se"] = round(clustered_standard_error(own[m], validation.groups), 2)
            row[f"{m}_gain_over_pieces"], row[f"{m}_gain_se"] = gain[m], gain[f"{m}_se"]
        print(json.dumps(row), flush=True)
    settings = {"dataset": args.dataset + (f" ({Path(args.data_dir).name})" if args.data_dir else ""),
                "train_posts": len(train_posts), "validation_posts": len(validation),
                "validation_groups": len(set(validation.groups)), "validation": source, "words": len(words),
                "machine": machine()}
    stem = Path(args.results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(markdown(settings, rows))
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


def markdown(settings: dict, rows: list[dict]) -> str:
    lines = ["| expert | features | C | validation P@1 (± grouped SE) | validation R@5 (± grouped SE) "
             "| gain over word pieces: P@1 / R@5 (± grouped SE) | fit s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['expert']} | {r.get('features', '-')} | {r['C'] if 'C' in r else '-'} | "
                     f"{r['P@1']:.2f} (± {r['P@1_se']:.2f}) | {r['R@5']:.2f} (± {r['R@5_se']:.2f}) | "
                     f"{r['P@1_gain_over_pieces']:+.2f} (± {r['P@1_gain_se']:.2f}) / "
                     f"{r['R@5_gain_over_pieces']:+.2f} (± {r['R@5_gain_se']:.2f}) | {r['fit_seconds']} |")
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return (f"Settings: {described}; each expert fitted on the train split, its C chosen by validation P@1; no "
            f"test post read.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
