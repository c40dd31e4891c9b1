"""The small-budget recipe: parameter groups with their own rates and no decay where it does harm, a schedule that
follows the budget (steps or time), evaluations spread over it; and train.py using them."""

import math
from types import SimpleNamespace

import pytest
import torch

import train
from modeling_sog import SOGForTagGeneration
from recipe import BudgetProgress, budget_schedule, learning_rate_factor, parameter_groups
from tests.helpers import tiny_config

QUICK = ["--max_train_samples", "40", "--max_validation_samples", "10", "--max_eval_samples", "12", "--max_length", "32",
         "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--report_to", "none"]


def group_of(groups, model, name):
    parameter = dict(model.named_parameters())[name]
    [group] = [g for g in groups if any(p is parameter for p in g["params"])]
    return group["lr"], group["weight_decay"]


def test_parameter_groups_give_new_units_their_rate_and_spare_biases_norms_and_embeddings():
    model = SOGForTagGeneration(tiny_config(lexical_mode="joint"))
    groups = parameter_groups(model, 1e-4, 0.01, head_learning_rate=1e-3, lexical_learning_rate=5e-3,
                              lexical_weight_decay=0.1)
    assert group_of(groups, model, "bert.encoder.layer.0.attention.self.query.weight") == (1e-4, 0.01)
    assert group_of(groups, model, "bert.encoder.layer.0.attention.self.query.bias") == (1e-4, 0.0)
    assert group_of(groups, model, "bert.encoder.layer.0.output.LayerNorm.weight") == (1e-4, 0.0)
    assert group_of(groups, model, "bert.embeddings.word_embeddings.weight") == (1e-4, 0.0)
    assert group_of(groups, model, "tag_head.dense.weight") == (1e-3, 0.01)
    assert group_of(groups, model, "tag_head.bias") == (1e-3, 0.0)
    assert group_of(groups, model, "tag_embeddings.weight") == (1e-3, 0.0)
    assert group_of(groups, model, "marker_embeddings.weight") == (1e-3, 0.0)
    assert group_of(groups, model, "lexical.weight") == (5e-3, 0.1)
    covered = sum(len(g["params"]) for g in groups)
    assert covered == len(list(model.parameters()))                       # every parameter, once
    model.lexical.weight.requires_grad_(False)                             # a frozen (fitted) expert is left out
    assert sum(len(g["params"]) for g in parameter_groups(model, 1e-4)) == covered - 1


@pytest.mark.parametrize("kind,progress,expected", [
    ("constant", 0.05, 0.5), ("constant", 0.5, 1.0), ("linear", 0.1, 1.0), ("linear", 0.55, 0.5),
    ("linear", 1.0, 0.0), ("cosine", 0.55, 0.5), ("cosine", 0.1, 1.0), ("cosine", 1.0, 0.0)])
def test_the_factor_warms_up_then_holds_or_decays_to_zero(kind, progress, expected):
    assert learning_rate_factor(kind, progress, warmup=0.1) == pytest.approx(expected, abs=1e-9)


def test_under_a_time_budget_the_rate_follows_the_clock_not_the_epochs():
    state = SimpleNamespace(completed_steps=0, train_seconds=0.0)
    progress = BudgetProgress(state, total_steps=100_000, budget_seconds=600)   # 100 epochs' worth of steps
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=1.0)
    schedule = budget_schedule(optimizer, "linear", progress, warmup=0.0)
    rates = []
    for seconds in (150, 300, 450, 600):
        state.completed_steps += 10
        state.train_seconds = seconds
        optimizer.step()
        schedule.step()
        rates.append(schedule.get_last_lr()[0])
    assert rates == pytest.approx([0.75, 0.5, 0.25, 0.0], abs=1e-3)


def test_evaluations_are_spread_over_the_budget():
    state = SimpleNamespace(completed_steps=0, train_seconds=0.0, history=[])
    progress = BudgetProgress(state, total_steps=20)
    schedule = train.EvaluationSchedule(SimpleNamespace(eval_steps=None, evaluations=4), progress)
    due = []
    for step in range(1, 21):
        state.completed_steps = step
        if schedule.due_after_step(state):
            due.append(step)
            state.history.append({})
    assert due == [5, 10, 15, 20] and not schedule.at_epoch_ends    # step / 20 >= k / 4
    every = train.EvaluationSchedule(SimpleNamespace(eval_steps=3, evaluations=None), progress)
    assert [s for s in range(1, 10) if every.due_after_step(SimpleNamespace(completed_steps=s))] == [3, 6, 9]


def test_train_py_decays_over_the_time_budget_and_evaluates_inside_the_epoch(tmp_path, tiny_encoder):
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "100",
                                  "--max_train_minutes", "0.05", "--lr_scheduler_type", "linear", "--warmup_ratio",
                                  "0.1", "--head_learning_rate", "1e-3", "--evaluations", "3",
                                  "--output_dir", str(tmp_path)])
    history = summary["history"]
    assert summary["stopped_by"].startswith("time budget")
    assert 3 <= len(history) <= 4 and all(row["completed_steps"] > 0 for row in history)
    rates = [row["learning_rate"] for row in history]
    assert rates[-1] < 0.15 * 1e-3 and max(rates) > rates[-1]            # annealed by the end of the budget
    assert summary["best_step"] in [row["completed_steps"] for row in history]


def test_options_that_contradict_each_other_are_refused(capsys):
    for argv, message in ((["--eval_steps", "5", "--evaluations", "3"], "give one"),
                          (["--warmup_ratio", "1.5"], "--warmup_ratio"),
                          (["--lexical_mode", "prior", "--lexical_folds", "1"], "--lexical_folds"),
                          (["--head_learning_rate", "0"], "must be positive")):
        with pytest.raises(SystemExit):
            train.parse_args(argv)
        assert message in capsys.readouterr().err
    assert math.isclose(train.parse_args([]).learning_rate, train.parse_args([]).learning_rate)


@pytest.mark.parametrize("model", ["br", "br-lf", "ar"])
def test_train_py_trains_every_model_class_with_the_recipe(tmp_path, tiny_encoder, model):
    summary = train.main(QUICK + ["--model_name_or_path", tiny_encoder, "--num_train_epochs", "1", "--model", model,
                                  "--head_learning_rate", "1e-3", "--lr_scheduler_type", "cosine",
                                  "--output_dir", str(tmp_path)])
    assert summary["completed_steps"] > 0 and summary["test"]["n"] == 12
    assert all(isinstance(v, (int, float)) for v in summary["validation"].values())   # scores only
    # the expert (mixed in by default) gets a weight for later steps where there are steps: AR, not BR
    assert ("later_weight" in summary["lexical_expert"]) == (model == "ar")
