"""Model selection on validation only, the test split scored once; the paper's 1-to-1 (fixed order) and BR
(softmax); scores that mean the same for every model."""

import json
import math
import random

import datasets
import pytest
import torch

import train
from calibration import fit_score_calibration
from corpora import MIN_VALIDATION_POSTS, Split, carve_validation, tag_vocabulary
from data_builders import split_of, validation_rank
from modeling_br import BRForTagRanking
from modeling_sog import SetDecoder, SOGForTagGeneration, calibrated_scores
from tests.helpers import TAGS, labels_of, tiny_config
from training_instances import expand_post

QUICK = ["--max_train_samples", "40", "--max_validation_samples", "10", "--max_eval_samples", "12", "--max_length", "32",
         "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--report_to", "none"]


def grouped_split(posts_per_group=3, groups=800):
    ids = [f"p{g}-{i}" for g in range(groups) for i in range(posts_per_group)]
    return datasets.Dataset.from_dict({"id": ids, "group": [i.split("-")[0] for i in ids],
                                       "text": ["x"] * len(ids), "tags": [["a"]] * len(ids)})


def test_validation_is_carved_by_group_and_keeps_siblings_together():
    table = grouped_split()
    kept, validation = carve_validation(table, 5.0)
    assert len(kept) + len(validation) == len(table)
    held, trained = set(validation["group"]), set(kept["group"])
    assert held and not held & trained                           # no group straddles the two
    # 5 % of 2,400 is 120: raised to the minimum, overshooting by less than one group
    assert MIN_VALIDATION_POSTS <= len(validation) < MIN_VALIDATION_POSTS + 3
    assert held == {g for g in sorted(set(table["group"]), key=validation_rank)[:len(held)]}
    again, _ = carve_validation(table, 5.0)
    assert again["id"] == kept["id"]                              # stable
    small = grouped_split(1, 50)
    _, validation = carve_validation(small, 5.0)
    assert len(validation) == 10                                  # the minimum never takes over 20 % of train


def test_validation_ignores_the_digit_that_chose_the_test_split():
    groups = [f"g{i}" for i in range(4000)]
    train_groups = [g for g in groups if split_of(g) == "train"]
    first = sorted(train_groups, key=validation_rank)[:400]
    # the test split holds 1 in 10 groups; the first validation groups should be a fair slice of the rest
    assert 0.7 < sum(int(g[1:]) < 2000 for g in first) / 400 * 2 < 1.3


def test_a_corpus_with_its_own_validation_split_uses_it(tmp_path):
    rows = lambda n, tag: {"id": [f"{tag}{i}" for i in range(n)], "text": ["x"] * n, "tags": [[tag]] * n}
    corpus = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(30, "a")),
                                   "validation": datasets.Dataset.from_dict(rows(7, "v")),
                                   "test": datasets.Dataset.from_dict(rows(5, "a"))})
    args = train.parse_args(["--report_to", "none"])
    train_split, validation, test, source = train.splits_of(corpus, args)
    assert (len(train_split), len(validation), len(test)) == (30, 7, 5) and source == "the corpus's validation split"
    # tags seen only in validation never enter the vocabulary
    assert tag_vocabulary(train_split["tags"], 1) == ["a"]


def recorded_scoring(monkeypatch, scripted_split: str, precisions: list) -> list:
    """train.py's scoring, recorded call by call (split, posts, a checksum of the weights, predictions, gold,
    scores), with the P@1 of ``scripted_split`` replaced by ``precisions`` in turn: a choice made on it cannot
    hold by accident."""
    calls, scripted = [], iter(precisions)
    real = train.generate_and_score

    def recording(accelerator, model, tokenizer, split, *rest):
        scores, predictions = real(accelerator, model, tokenizer, split, *rest)
        with torch.no_grad():
            checksum = sum(p.double().sum() for p in accelerator.unwrap_model(model).parameters()).item()
        if split.name == scripted_split:
            scores = {**scores, "precision@1": next(scripted)}
        calls.append({"split": split.name, "posts": len(split), "checksum": checksum, "predictions": predictions,
                      "gold": split.gold, "scores": scores})
        return scores, predictions

    monkeypatch.setattr(train, "generate_and_score", recording)
    return calls


def test_the_epoch_is_chosen_on_validation_and_test_is_scored_once(tmp_path, tiny_encoder, monkeypatch):
    """Validation scores are scripted (epoch 2 best, then worse), so the choice cannot hold by accident; the test
    split must then be scored with epoch 2's weights and the calibration fitted on epoch 2's validation tags."""
    calls = recorded_scoring(monkeypatch, "validation", [10.0, 30.0, 20.0])
    # no lexical expert: its weight is fitted by generating on validation again, which is not an epoch's score
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "3",
                                  "--learning_rate", "1e-3", "--lexical_mode", "none", "--output_dir", str(tmp_path)])
    assert [(c["split"], c["posts"]) for c in calls] == [("validation", 10)] * 3 + [("test", 12)]
    assert summary["best_epoch"] == 2 and summary["validation"]["precision@1"] == 30.0
    epoch_two, epoch_three, test = calls[1], calls[2], calls[3]
    assert epoch_two["checksum"] != epoch_three["checksum"]                  # the weights did move
    assert test["checksum"] == pytest.approx(epoch_two["checksum"], rel=1e-12)  # test saw the chosen epoch
    calibration = summary["score_calibration"]
    assert calibration["posts"] == 10 and calibration["fitted_on"] == "validation"
    assert calibration == fit_score_calibration(epoch_two["predictions"], epoch_two["gold"])
    assert calibration != fit_score_calibration(epoch_three["predictions"], epoch_three["gold"])
    assert summary["test"]["n"] == 12 and summary["validation_posts"] == 10
    assert summary["validation_source"].startswith("carved from train by group hash (")
    saved = json.loads((tmp_path / "train_summary.json").read_text())
    assert saved["best_epoch"] == 2 and set(saved["validation"]) == set(saved["test"])
    card = (tmp_path / "README.md").read_text()
    assert "| K | validation P@K | validation R@K | test P@K | test R@K |" in card
    assert "| 1 | 30.00 |" in card                                            # the chosen epoch's validation score
    assert len((tmp_path / "eval_predictions.jsonl").read_text().splitlines()) == 12


def test_the_evaluations_read_a_validation_sample_and_the_chosen_model_the_whole_split(tmp_path, tiny_encoder,
                                                                                      monkeypatch):
    """--validation_sample_while_training: the checkpoint is chosen on the sample (scripted: epoch 2), then the
    chosen weights read every validation post once; the calibration, the reported validation scores and the saved
    validation predictions are of the whole split."""
    calls = recorded_scoring(monkeypatch, "validation sample", [10.0, 30.0, 20.0])
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "3", "--learning_rate",
                                  "1e-3", "--lexical_mode", "none", "--validation_sample_while_training", "4",
                                  "--output_dir", str(tmp_path)])
    assert [(c["split"], c["posts"]) for c in calls] == [("validation sample", 4)] * 3 + [("validation", 10),
                                                                                          ("test", 12)]
    whole = calls[3]
    assert whole["checksum"] == pytest.approx(calls[1]["checksum"], rel=1e-12)   # the chosen epoch read it
    assert summary["best_epoch"] == 2 and summary["validation"] == whole["scores"] and summary["validation"]["n"] == 10
    assert (summary["validation_posts"], summary["validation_sample_posts"]) == (10, 4)
    assert summary["score_calibration"] == fit_score_calibration(whole["predictions"], whole["gold"])
    assert len((tmp_path / train.VALIDATION_PREDICTIONS).read_text().splitlines()) == 10
    # the sample is seeded, and a sample as large as the split is the split
    args = train.parse_args(["--validation_sample_while_training", "4"])
    split = Split.of("validation", datasets.Dataset.from_dict({"id": [str(i) for i in range(10)], "tags": [["a"]] * 10}))
    assert train.validation_sample(split, args).data["id"] == train.validation_sample(split, args).data["id"]
    args.validation_sample_while_training = 10
    assert train.validation_sample(split, args) is split


def test_early_stopping_follows_validation(tmp_path, tiny_encoder):
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "6",
                                  "--learning_rate", "0", "--early_stopping_patience", "2",
                                  "--output_dir", str(tmp_path)])
    # nothing is learned, so nothing beats epoch 1: two more epochs, then stop
    assert len(summary["history"]) == 3 and summary["best_epoch"] == 1
    assert summary["stopped_by"].startswith("early stopping")


def test_a_time_budget_ends_training_after_the_step_where_it_runs_out(tmp_path, tiny_encoder):
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "5",
                                  "--max_train_minutes", "0.00001", "--output_dir", str(tmp_path)])
    assert summary["completed_steps"] == 1 and len(summary["history"]) == 1
    assert summary["history"][0]["completed_steps"] == 1 and summary["history"][0]["epoch"] < 1   # cut short
    assert summary["stopped_by"].startswith("time budget") and summary["test"]["n"] == 12


def test_tag_order_fixed_keeps_the_corpus_order_and_is_the_one_to_one_default():
    rng = random.Random(0)
    fixed = expand_post(0, [5, 2, 9], "1-to-1", rng, "fixed")
    assert [inst.target for inst in fixed] == [(5,), (2,), (9,)]
    shuffled = {tuple(i.target[0] for i in expand_post(0, list(range(6)), "1-to-1", rng, "shuffled")) for _ in range(5)}
    assert len(shuffled) > 1
    assert train.parse_args(["--scheme", "1-to-1"]).tag_order == "fixed"
    assert train.parse_args(["--scheme", "1-to-M"]).tag_order == "shuffled"
    assert train.parse_args(["--scheme", "1-to-M", "--tag_order", "fixed"]).tag_order == "fixed"


def test_option_combinations_that_mean_nothing_are_refused(capsys):
    for argv, message in ((["--model", "br", "--tag_order", "fixed"], "apply to generators"),
                          (["--model", "sog", "--br_loss", "softmax"], "--br_loss applies to ranking models"),
                          (["--model", "br", "--attention_layout", "one-pass"], "applies to --model sog only"),
                          (["--max_train_minutes", "0"], "must be positive")):
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err


def test_the_papers_br_learns_a_softmax_against_the_uniform_gold_distribution(tokenizer):
    torch.manual_seed(0)
    model = BRForTagRanking(tiny_config(ranking_loss="softmax")).eval()
    batch = model.build_inputs(model.encode_contexts(["pandas"], tokenizer), [[]], tokenizer)
    labels = torch.zeros(1, len(TAGS))
    labels[0, [1, 3]] = 1
    out = model(**batch, labels=labels)
    log_p = torch.log_softmax(out.logits, -1)[0]
    expected = 0.5 * (math.log(0.5) - log_p[1].item()) + 0.5 * (math.log(0.5) - log_p[3].item())
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    [tags] = model.generate_tags(["pandas"], tokenizer, num_tags=len(TAGS))
    assert sum(tag["step_probability"] for tag in tags) == pytest.approx(1.0, abs=1e-5)   # one softmax
    model.init_from_training_tags([[0, 1], [0]])
    assert torch.softmax(model.classifier.bias, -1)[0] > torch.softmax(model.classifier.bias, -1)[1]


# ----- scores ------------------------------------------------------------------------------------------
def test_a_calibration_fitted_on_known_data_recovers_its_parameters():
    rng = random.Random(0)
    truth = {"slope": 1.5, "step_slope": -0.8, "intercept": 0.7}
    predictions, gold = [], []
    for post in range(3000):
        generated, tags = [], []
        for step in range(1, 4):
            p = rng.uniform(0.02, 0.9)
            score = calibrated_scores(torch.tensor([p]), step, truth).item()
            generated.append({"label": f"t{post}-{step}", "score": p, "step_probability": p})
            if rng.random() < score:
                tags.append(f"t{post}-{step}")
        predictions.append(generated)
        gold.append(tags)
    fitted = fit_score_calibration(predictions, gold)
    for key, value in truth.items():
        assert fitted[key] == pytest.approx(value, abs=0.15), key
    assert fit_score_calibration(predictions, [[t["label"] for t in row] for row in predictions]) is None


def test_scores_and_threshold_when_step_probabilities_are_not_monotone():
    """Step 1 has a flat softmax (best 0.4), step 2 a sharp one (best 0.9): a calibration that knows the
    first tag is usually right scores it above the second; the threshold reads scores, not step probabilities."""
    first = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    second = torch.log(torch.tensor([[0.0, 0.9, 0.05, 0.05]]).clamp(min=1e-9))
    step_logits = lambda active, chosen: first if not chosen[0] else second
    calibration = {"slope": 1.0, "step_slope": -5.0, "intercept": 2.0}
    [[(tag1, score1, p1), (tag2, score2, p2)]] = SetDecoder(2, None, calibration).greedy(step_logits, 1)
    assert (tag1, tag2) == (0, 1) and p1 == pytest.approx(0.4) and p2 == pytest.approx(0.9, abs=1e-6)
    assert score1 > score2                                        # not monotone the same way as p
    assert score1 == pytest.approx(1 / (1 + math.exp(-(math.log(0.4 / 0.6) + 2.0))), rel=1e-6)
    between = (score1 + score2) / 2
    [kept] = SetDecoder(2, between, calibration).greedy(step_logits, 1)
    assert [t for t, _, _ in kept] == [0]                         # p2 = 0.9 > threshold, but its score is not
    [uncalibrated] = SetDecoder(2, 0.5, None).greedy(step_logits, 1)
    assert uncalibrated == []                                     # without calibration the score is p: 0.4 < 0.5


def test_a_saved_calibration_makes_generate_tags_report_calibrated_scores(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = SOGForTagGeneration(tiny_config()).eval()
    raw = model.generate_tags(["pandas"], tokenizer, num_tags=3)[0]
    model.config.score_calibration = {"slope": 1.0, "step_slope": 0.0, "intercept": 3.0}
    model.save_pretrained(tmp_path)
    reloaded = SOGForTagGeneration.from_pretrained(tmp_path).eval()
    calibrated = reloaded.generate_tags(["pandas"], tokenizer, num_tags=3)[0]
    assert labels_of(calibrated) == labels_of(raw)
    for before, after in zip(raw, calibrated):
        assert after["step_probability"] == pytest.approx(before["step_probability"], abs=1e-6)
        odds = before["step_probability"] / (1 - before["step_probability"]) * math.exp(3.0)
        assert after["score"] == pytest.approx(odds / (1 + odds), rel=1e-5)


def test_the_latest_rule_keeps_the_newer_evaluation_unless_the_kept_one_is_clearly_ahead():
    """--best_model_rule latest: a tie (under two standard errors of the paired difference) goes to the newer
    weights, where highest keeps the earlier on any lead, even a tie; a kept evaluation clearly ahead stays."""
    groups = [f"g{i}" for i in range(20)]
    kept, one_less = [1.0] * 10 + [0.0] * 10, [1.0] * 9 + [0.0] * 11      # 50 against 45: one post apart
    assert not train.replaces_kept("highest", False, kept, one_less, groups)
    assert train.replaces_kept("latest", False, kept, one_less, groups)     # 5 ± 5 points: a tie, the newer wins
    assert train.replaces_kept("latest", False, kept, kept, groups)
    worse = [0.0] * 20                                                        # 50 points behind, every post agreeing
    assert not train.replaces_kept("latest", False, kept, worse, groups)
    assert train.replaces_kept("latest", False, kept, worse, ["one"] * 20)  # one group: no evidence, the newer wins
    assert train.replaces_kept("latest", False, None, worse, groups)        # nothing kept post by post: resumed
    assert train.replaces_kept("highest", True, None, None, groups)
    assert train.per_post_metric("precision@1") == ("P@1", 1) and train.per_post_metric("recall@5") == ("R@5", 5)
    assert train.per_post_metric("ndcg@3") is None and train.per_post_metric("precision@3") is None


def test_the_latest_rule_needs_a_metric_scored_post_by_post(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--best_model_rule", "latest", "--metric_for_best_model", "f1@3"])
    assert "--metric_for_best_model f1@3 is not scored" in capsys.readouterr().err
    assert train.parse_args(["--best_model_rule", "latest", "--metric_for_best_model", "recall@5"]).best_model_rule


def test_under_the_latest_rule_a_tied_later_evaluation_is_the_one_tested(tmp_path, tiny_encoder, monkeypatch):
    """The scripted run of the test above, epoch 2 highest by P@1 (30 against 20) but one validation post of ten
    apart from epoch 3 (per-post values scripted too): a tie, so epoch 3's weights are the ones tested."""
    calls = recorded_scoring(monkeypatch, "validation", [10.0, 30.0, 20.0])
    per_post = iter([[1.0] * 2 + [0.0] * 8, [1.0] * 3 + [0.0] * 7, [1.0] * 2 + [0.0] * 8])
    monkeypatch.setattr(train, "validation_per_post", lambda run, predictions: next(per_post))
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "3",
                                  "--learning_rate", "1e-3", "--lexical_mode", "none", "--best_model_rule", "latest",
                                  "--output_dir", str(tmp_path)])
    assert summary["best_epoch"] == 3 and summary["validation"]["precision@1"] == 20.0
    assert calls[3]["split"] == "test" and calls[3]["checksum"] == pytest.approx(calls[2]["checksum"], rel=1e-12)


def test_patience_counts_evaluations_without_a_higher_score_under_either_rule(tmp_path, tiny_encoder, monkeypatch):
    """Under latest, tied evaluations replace the kept weights, yet a plateau is still a plateau: scripted P@1 30,
    20, 20 with patience 2 stops after the third evaluation, and the third's weights are kept (each a tie)."""
    recorded_scoring(monkeypatch, "validation", [30.0, 20.0, 20.0, 40.0])
    per_post = iter([[1.0] * 3 + [0.0] * 7, [1.0] * 2 + [0.0] * 8, [1.0] * 2 + [0.0] * 8])
    monkeypatch.setattr(train, "validation_per_post", lambda run, predictions: next(per_post))
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "4",
                                  "--learning_rate", "1e-3", "--lexical_mode", "none", "--best_model_rule", "latest",
                                  "--early_stopping_patience", "2", "--output_dir", str(tmp_path)])
    assert len(summary["history"]) == 3 and summary["stopped_by"].startswith("early stopping")
    assert summary["best_epoch"] == 3
