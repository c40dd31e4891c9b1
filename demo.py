"""`make demo`: the main job on the bundled corpus, start to finish, on a CPU in about ten minutes.

1. trains SOG (1-to-M) on the bundled debtags sample with the offline MiniLM encoder (train.py), choosing the
   epoch on a validation split carved from train;
2. prints P@1/3/5 and R@1/3/5 for SOG next to the frequency baseline and TF-IDF + logistic regression (the
   classical tool to beat, its C chosen on the same validation posts), on the same test posts;
3. reloads the saved Hub-ready folder through ``pipeline(model=..., trust_remote_code=True)`` and
   prints the tags it generates for a few real test posts, next to their gold tags, with the words of each post
   that pushed each tag most (the lexical expert's explanation).

The budget (a train subset, short inputs, one epoch) keeps it near ten minutes on 2 cores; `train.py`
with its defaults is the full recipe.
"""

import argparse
import textwrap
import time

from transformers import pipeline

import train
from classical_baselines import FrequencyBaseline, TfidfLogisticBaseline
from corpora import Split, load_corpus
from evaluation import K_VALUES, load_tag_metric, score
from score_tables import score_table

DEMO_TRAINING = ["--max_train_samples", "2000", "--max_validation_samples", "200", "--max_eval_samples", "200",
                 "--max_length", "64",
                 "--num_train_epochs", "1", "--per_device_train_batch_size", "32", "--learning_rate", "1e-4",
                 "--report_to", "none"]
EXAMPLES = 4


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    args = parser.parse_args()

    start = time.perf_counter()
    summary = train.main(DEMO_TRAINING + ["--output_dir", args.output_dir])
    trained = time.perf_counter() - start

    options = train.parse_args(DEMO_TRAINING)
    train_split, validation_split, test_split, _ = train.splits_of(load_corpus(options.dataset), options)
    fitting, validation, test = (Split.of(name, table) for name, table in
                                 (("train", train_split), ("validation", validation_split), ("test", test_split)))
    metric = load_tag_metric()
    scorer = lambda predictions, gold: score(metric, predictions, gold)
    frequency = FrequencyBaseline().fit(fitting.gold).predict(len(test), max(K_VALUES))
    tfidf = TfidfLogisticBaseline().fit(fitting.posts, fitting.gold, validation.posts, validation.gold, scorer)

    print(f"\nbundled debtags sample: {summary['train_posts']} train posts, {len(test)} test posts, epoch chosen on "
          f"{summary['validation_posts']} validation posts (trained in {trained / 60:.1f} min, test scores in %)\n")
    expert = summary.get("lexical_expert") or {}
    print(score_table([(f"SOG 1-to-M, {options.attention_layout} layout (MiniLM)"
                        + (f" + lexical expert (weight {expert['weight']:g})" if "weight" in expert else ""),
                        summary["test"]),
                       ("TF-IDF + LR", scorer(tfidf.predict(test.posts, max(K_VALUES)), test.gold)),
                       ("Frequency", scorer(frequency, test.gold))]))

    tagger = pipeline("tag-generation", model=args.output_dir, trust_remote_code=True)
    posts = test.posts[:EXAMPLES]
    explains = options.lexical_mode != "none"
    print(f"\ntags from the saved folder, reloaded with pipeline(\"tag-generation\", model={args.output_dir!r}, "
          "trust_remote_code=True); score: the estimated probability that the tag is in the post's set:")
    for post, gold, tags in zip(posts, test.gold[:EXAMPLES], tagger(posts, num_tags=5, explain=explains)):
        print("\n" + textwrap.shorten(post["text"], 110) + f"   [section: {post.get('location', '')}]")
        print("  generated: " + ", ".join(f"{t['label']} ({t['score']:.2f})" for t in tags))
        if explains:
            print("  because:   " + "; ".join(f"{t['label']}: {', '.join(t['words'][:3]) or '-'}" for t in tags[:3]))
        print("  gold:      " + ", ".join(gold))
    print(f"\ndone in {(time.perf_counter() - start) / 60:.1f} min; the Hub-ready folder is {args.output_dir}")


if __name__ == "__main__":
    main()
