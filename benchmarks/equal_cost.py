"""Quality at equal cost: every neural row trained for the same wall-clock budget on this machine, on a whole corpus,
next to Omikuji and TF-IDF + LR on the same split and the same fused text.

    python -m benchmarks.equal_cost --dataset debtags --results benchmarks/results/equal_cost_debtags
    python -m benchmarks.equal_cost --dataset stackexchange --data_dir data/stackexchange/cooking.csv.zip \
        --results benchmarks/results/equal_cost_cooking
    python -m benchmarks.equal_cost --max_train_minutes 2 --max_train_samples 2000 --max_eval_samples 300   # a look
    python -m benchmarks.equal_cost --dataset stackexchange --data_dir data/stackexchange/cooking.csv.zip \
        --max_train_samples 3000 --evaluations 10 --seeds 42 --results benchmarks/results/equal_cost_cooking_3k
                                                              # near convergence: ~10 epochs of a slice

Rows: SOG with train.py's defaults (``"default": true`` in the JSON) and BR-EF with the same defaults (the same
recipe and lexical expert), each over ``--seeds`` (3 by default); SOG and BR-EF as they were before the small-budget
recipe (paper layout, 64 units, batch 32, one constant rate, no expert, an evaluation per epoch), one seed each;
SOG with the expert in ``prior`` mode (its cross-fitted scores added during training too), one seed; BR-EF with
SOG's first-step loss (softmax against the uniform gold distribution) instead of sigmoids, and SOG with its loss
weighted by target count (its first step then ranks by P(tag in gold), as BR's sigmoids), one seed each; SOG with an
independent sigmoid per tag at every step (``--step_loss sigmoid``, BR-EF's objective), over every seed; SOG and
BR-EF with the expert reading words, and both with it reading word pieces and words (``--lexical_units``); SOG
keeping the newest checkpoint unless an earlier one is clearly better on validation (``--best_model_rule latest``),
with either expert; SOG and BR-EF training under bfloat16 autocast (``--mixed_precision bf16``: more steps in the
same minutes) and in float32 (``--mixed_precision no``), over every seed (the default rows take ``train.py``'s
``auto``: bf16 where the machine computes it natively);
Omikuji and TF-IDF + LR. Split: the corpus's train/test split, all test posts; validation carved from train by
group hash (``train.py``'s rule), every carved post. Each neural model trains until ``--max_train_minutes`` of
training time (the lexical expert's fit included, evaluation excluded) run out; its checkpoint and the expert's
first-step weight are chosen on a sample of ``--validation_sample_while_training`` validation posts (its evaluations
run inside the budget), the expert's later-steps weight and the score calibration after training on every validation
post, and the test split is scored once. The models run one after the other, alone on the machine; with
``--reuse_runs`` a stopped run picks up where it stopped. Writes ``--results``.{json,md} after every row; with
``--update`` into the table already there, so rows may gain seeds over several sittings (each row lists its own).
"""

import argparse
from pathlib import Path

from benchmarks.common import (BEFORE_THE_RECIPE, CLASSICAL, REPO, add_run_arguments, measure_rows,
                               prepare_corpus, run_classical, run_neural, write_results)
from evaluation import load_tag_metric

DEFAULT_ROW = "SOG (train.py defaults)"
# The rows "as before": the previous equal-cost table's settings, and how train.py trained then.
BEFORE = ["--max_length", "64", "--per_device_train_batch_size", "32", "--learning_rate", "1e-4",
          "--head_learning_rate", "1e-4", *BEFORE_THE_RECIPE]
NEURAL = {  # row name -> (train.py arguments, several seeds?)
    DEFAULT_ROW: (["--model", "sog"], True),
    "BR-EF (the same defaults: recipe and expert)": (["--model", "br"], True),
    "SOG, prior mode (the defaults otherwise)": (["--model", "sog", "--lexical_mode", "prior"], False),
    # BR-EF trained on SOG's first-step objective (a softmax against the uniform distribution over the gold set)
    # instead of independent sigmoids: it splits a gap between SOG and BR-EF into the loss and the later steps.
    "BR-EF, softmax loss (SOG's first-step objective; the defaults otherwise)":
        (["--model", "br", "--br_loss", "softmax"], False),
    # The converse: SOG with each instance's loss weighted by its number of targets, which makes its first step rank
    # tags by P(tag in gold), the quantity BR-EF's sigmoids estimate, instead of by E[1(tag in gold) / |gold|].
    "SOG, loss weighted by target count (the first step ranks as BR's sigmoids; the defaults otherwise)":
        (["--model", "sog", "--loss_weighting", "target_count"], False),
    # SOG with BR-EF's objective added at the first step alone (benchmarks.first_step_ranking: BR-EF's lead over SOG
    # is its first tag; the later steps hit as often as BR-EF's ranks 2-5), the softmax step loss otherwise.
    "SOG, BR's sigmoid loss added at the first step (the defaults otherwise)":
        (["--model", "sog", "--first_step_sigmoid_weight", "1"], True),
    # BR-EF's head itself inside SOG (train.py --first_tag_head): a sigmoid per tag from the [MASK] given no tag, its own
    # weights, chooses the first tag; the softmax steps choose the rest (on our data they hit as often as BR-EF's ranks
    # 2-5).
    "SOG, BR-EF's head choosing the first tag (the defaults otherwise)": (["--model", "sog", "--first_tag_head"], True),
    # SOG on BR-EF's objective, step by step: an independent sigmoid per tag against whether it is one of the tags
    # not yet given (the softmax of the row above couples the tags; near convergence BR-EF's sigmoids led). Over
    # every seed: it is the candidate for train.py's default.
    "SOG, sigmoid step loss (BR's objective at every step; the defaults otherwise)":
        (["--model", "sog", "--step_loss", "sigmoid"], True),
    # The expert's TF-IDF over the post's words instead of word pieces (benchmarks.expert_features: alone, it led
    # on debtags and trailed on cooking).
    "SOG, expert on words (the defaults otherwise)": (["--model", "sog", "--lexical_units", "words"], True),
    "BR-EF, expert on words (the defaults otherwise)": (["--model", "br", "--lexical_units", "words"], True),
    # Word pieces and words in one bag (alone, it led both on debtags).
    "SOG, expert on word pieces and words (the defaults otherwise)":
        (["--model", "sog", "--lexical_units", "both"], True),
    "BR-EF, expert on word pieces and words (the same defaults otherwise)":
        (["--model", "br", "--lexical_units", "both"], True),
    # The checkpoint a run keeps (train.py --best_model_rule latest): the newest evaluation unless the one kept before
    # beats it by two paired standard errors on validation. Under the highest score, a third of our runs kept an
    # earlier evaluation than the last, on a lead of a few of the 500 validation posts read while training.
    "SOG, the newest checkpoint unless an earlier one is clearly better (the defaults otherwise)":
        (["--model", "sog", "--best_model_rule", "latest"], True),
    "SOG, expert on word pieces and words, the newest checkpoint unless an earlier one is clearly better":
        (["--model", "sog", "--lexical_units", "both", "--best_model_rule", "latest"], True),
    # Training under bfloat16 autocast (train.py --mixed_precision bf16): on this machine's CPU (AVX512-BF16) a step
    # takes about half the time, so the same budget holds about twice the steps; the weights stay float32. Since
    # 2026-12 the default rows take train.py's --mixed_precision auto, which is bf16 on such a CPU (or GPU) and
    # float32 elsewhere: these rows pin each precision, whatever the machine.
    "SOG, bf16 autocast (the defaults otherwise)": (["--model", "sog", "--mixed_precision", "bf16"], True),
    "BR-EF, bf16 autocast (the same defaults otherwise)": (["--model", "br", "--mixed_precision", "bf16"], True),
    "SOG, float32 (no autocast; the defaults otherwise)": (["--model", "sog", "--mixed_precision", "no"], True),
    "BR-EF, float32 (no autocast; the same defaults otherwise)": (["--model", "br", "--mixed_precision", "no"], True),
    "SOG as before (paper layout, no expert)": (["--model", "sog", "--attention_layout", "paper"] + BEFORE, False),
    "BR-EF as before (no expert)": (["--model", "br"] + BEFORE, False),
}
# Every carved validation post for the choices made once, after training; 500 of them for the evaluations inside
# the budget (tables made before 2026-12 handed train.py the 500 alone: --max_validation_samples 500).
BUDGET = {"max_train_minutes": 20.0, "max_train_samples": None, "max_validation_samples": None,
          "validation_sample_while_training": 500, "max_eval_samples": None}
COLUMNS = [("train min", "train_minutes", ".1f"), ("epochs", "epochs_trained", ".2f"),
           ("steps", "train_steps", ".0f"), ("best epoch", "best_epoch", ".2f"),
           ("expert weight", "lexical_weight", ".2f"), ("generate posts/s", "generate_posts_per_s", ".1f")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, BUDGET)
    p.add_argument("--models", nargs="+", choices=list(NEURAL) + list(CLASSICAL[1:]),
                   default=list(NEURAL) + list(CLASSICAL[1:]))
    p.add_argument("--evaluations", type=int,
                   help="validation evaluations over the budget, every neural row but those that pin their own (the "
                        "'as before' rows keep one per epoch; default: train.py's); more of them show where a long "
                        "budget on a small slice peaks")
    p.add_argument("--output_dir", default="outputs/equal_cost")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "equal_cost"))
    return p.parse_args(argv)


def train_budget(args) -> list[str]:
    """train.py arguments every neural row shares: the time budget, the validation sample read inside it (0: none,
    every validation post throughout), and ``--evaluations`` only when given (so runs made without them stay
    reusable: ``--max_validation_samples 500 --validation_sample_while_training 0`` is how the tables before the
    sample were made)."""
    budget = ["--num_train_epochs", "100", "--max_train_minutes", str(args.max_train_minutes)]
    if args.validation_sample_while_training:
        budget += ["--validation_sample_while_training", str(args.validation_sample_while_training)]
    return budget + (["--evaluations", str(args.evaluations)] if args.evaluations is not None else [])


def main(argv=None):
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    splits, corpus_dir, settings = prepare_corpus(args, output_dir)
    settings["max_train_minutes"] = args.max_train_minutes
    if args.validation_sample_while_training:
        settings["validation_sample_while_training"] = args.validation_sample_while_training
    budget = train_budget(args)
    if args.evaluations is not None:
        settings["evaluations"] = args.evaluations
    metric = load_tag_metric()

    def run_one(name, seed):
        if name in NEURAL:
            arguments = NEURAL[name][0]
            row = {**run_neural(name, arguments, args, corpus_dir, seed, output_dir, budget), "arguments": arguments}
        else:
            row = run_classical(name, splits, metric, seed)
        return {**row, "train_minutes": round(row["train_seconds"] / 60, 1)}

    def seeds_of(name):
        return list(args.seeds) if NEURAL.get(name, (None, False))[1] else list(args.seeds[:1])

    def written(rows):
        for row in rows:
            row["default"] = row["model"] == DEFAULT_ROW
        write_results(stem, settings, rows, COLUMNS, args.update)

    stem = Path(args.results)
    rows = measure_rows(args.models, seeds_of, run_one, on_row=written)
    print("\n" + stem.with_suffix(".md").read_text())
    return rows


if __name__ == "__main__":
    main()
