"""Turn a trained model into a Hub-ready folder (weights, code, tokenizer, handler, model card) and push it."""

import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCardData

from evaluation import K_VALUES
from recipe import default_encoder_path
from score_tables import score_table

REPO = Path(__file__).resolve().parent
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Written next to the model by train.py but not part of the model repo: checkpoints and logs, and the run's own
# records (predictions on the corpus's posts, the training summary), which are data about the run, not the model.
VALIDATION_PREDICTIONS = "validation_predictions.jsonl"
TEST_PREDICTIONS = "eval_predictions.jsonl"
TRAIN_SUMMARY = "train_summary.json"   # written last: a folder without it is not a finished run
RUN_RECORDS = (TEST_PREDICTIONS, VALIDATION_PREDICTIONS, TRAIN_SUMMARY)
NOT_UPLOADED = ["checkpoints/*", "checkpoints/**", "runs/*", "runs/**", *RUN_RECORDS]
WIDGET_TEXT_CHARS = 400
SPACE_GRADIO_VERSION = "6.31.0"


def base_model_id(encoder: str | None) -> str | None:
    if not encoder or os.path.abspath(encoder) == os.path.abspath(default_encoder_path()):
        return DEFAULT_ENCODER_ID
    return encoder if HUB_ID.fullmatch(encoder) and not os.path.exists(encoder) else None


def widget_examples(model, tokenizer, posts) -> list[dict]:
    """Widget entries whose ``output`` is what this model generates for exactly that text."""
    examples = []
    for i, post in enumerate(posts):
        text = (post.get("text") if isinstance(post, dict) else post or "")[:WIDGET_TEXT_CHARS].strip()
        if not text:
            continue
        [tags] = model.generate_tags([text], tokenizer)
        examples.append({"text": text, "example_title": f"Example {i + 1}",
                         "output": [{"label": tag["label"], "score": round(tag["score"], 4)} for tag in tags]})
    return examples


def model_card(model, scores: dict, settings: dict, examples: list[dict], name: str) -> str:
    """``scores``: ``{"validation": {...}, "test": {...}}`` in %, the chosen epoch's validation scores and the
    test scores of that model (``model-index`` reports test). ``settings``: ``dataset``, ``encoder``,
    ``hub_model_id`` and the ``training`` settings to quote (train.py's ``card_settings``)."""
    config = model.config
    test = scores["test"]
    dataset = settings.get("dataset") or "debtags (bundled sample)"
    dataset_type = dataset if HUB_ID.fullmatch(dataset) else re.sub(r"[^\w.-]+", "-", Path(dataset).name).strip("-")
    results = [EvalResult(task_type="text-classification", task_name="Tag recommendation", dataset_type=dataset_type,
                          dataset_name=dataset, dataset_split="test", metric_type=metric, metric_name=label,
                          metric_value=round(test[metric], 2))
               for k in K_VALUES for metric, label in ((f"precision@{k}", f"P@{k}"), (f"recall@{k}", f"R@{k}"))]
    where = settings.get("hub_model_id") or "path/to/this/folder"
    data = ModelCardData(
        # No pipeline_tag: the Hub's tasks have none for "generate a set of labels", and the closest one
        # (text-classification) would send users to a pipeline that cannot load this model.
        library_name="transformers", license="apache-2.0",
        tags=["custom_code", "tag-generation", "tag-recommendation", "set-generation", "sog"],
        base_model=base_model_id(settings.get("encoder")),
        datasets=[dataset] if HUB_ID.fullmatch(dataset) and not os.path.exists(dataset) else None,
        metrics=["precision@k", "recall@k"], model_name=name, eval_results=results,
        widget=examples)
    table = score_table([("validation", scores["validation"]), ("test", scores["test"])], by_k=True)
    calibration = config.score_calibration
    scores_mean = ("`score` is the estimated probability that the tag belongs to the post's tag set, calibrated on "
                   f"the validation split ({calibration['tags']} generated tags)" if calibration else
                   "`score` is the model's step probability (no validation split was available to calibrate it)")
    layout = LAYOUT_LINES.get(model.layout.name) if model.reads_tags_in_encoder else None
    layout_line = f"- Attention layout: {layout} (`config.attention_layout`).\n" if layout else ""
    if model.lexical is not None:
        later = "" if config.lexical_later_weight is None else f" ({config.lexical_later_weight:g} after the first tag)"
        layout_line += (f"- Lexical expert: `{config.lexical_mode}`, a TF-IDF map from the whole post's "
                        f"{model.lexical_input.description} to "
                        f"the tags, weight {config.lexical_weight:g}{later} (chosen on validation); `explain=True` "
                        "gives each tag the post's words that pushed it most.\n")
    return f"""---
{data.to_yaml()}
---

# {name}: {model.display_name} tag recommendation

Generates a **set** of tags for a post with sequence-oblivious generation (SOG): a BERT encoder reads
`[CLS] context [SEP] tag_1 ... tag_(i-1) [MASK]` and predicts tag *i* at `[MASK]`; the tags given share
one position, so their order does not matter, and decoding never repeats a tag. The context fuses a
post's fields as text: `[IMG]` image description, `[LOC]` location, `[TIME]` time as words, then the text.

- Tags: {config.num_tags} (`config.tag_names`); training scheme: {config.scheme}; inputs up to
  {config.max_input_length} units; {config.num_tags_to_generate} tags by default.
{layout_line}- Trained on: {dataset}. Settings: `{json.dumps(settings.get("training", {}))}`.

## Evaluation (in %)

The epoch was chosen on the validation split; the test split was scored once, on that model.

{table}

## How to use

```python
from transformers import pipeline

tagger = pipeline("tag-generation", model="{where}", trust_remote_code=True)   # pin revision=<commit>
tagger("How do I merge two dataframes?", num_tags=5)
tagger({{"text": "Sunset walk", "image": "a beach at dusk", "location": "Nice", "time": "2021-07-01T20:10:00"}})
# [{{'label': ..., 'score': ..., 'step_probability': ...}}, ...] in generation order
```

{scores_mean}; `step_probability` is the model's probability for the tag at the step it was chosen.
`threshold=0.5` ends a post's tags before the first whose `score` is under 0.5; `num_tags` (or `top_k`)
caps them.

or with the model itself:

```python
from transformers import AutoModel, AutoTokenizer

model = AutoModel.from_pretrained("{where}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{where}", trust_remote_code=True)   # see below
model.generate_tags(["How do I merge two dataframes?"], tokenizer, num_tags=5, threshold=0.3)
```

The tokenizer is BERT's own, but transformers reads this folder's config (custom code) before any tokenizer,
so `AutoTokenizer` needs `trust_remote_code=True` too; without it, it asks before reading the config.

An Inference Endpoint runs `handler.py`: send `{{"inputs": "...", "parameters": {{"num_tags": 5}}}}`.
A Gradio demo lies in `space/`: `sog serve <this folder>` runs it locally; pushed as a Space, it serves this
model (see `space/README.md`).
The model is custom code (`trust_remote_code=True`), so the Hub shows the widget examples above with
their recorded outputs rather than a live widget.
"""


LAYOUT_LINES = {"paper": "the paper's: every unit attends to every unit, so each step re-encodes the post",
                "one-pass": "one-pass: the context attends to the context only and each `[MASK]` to the context and "
                            "its own tags, so the context is encoded once per post"}


def gradio_version() -> str:
    """The Gradio the app was tested with: the installed one, else the version the project pins for Spaces."""
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        return SPACE_GRADIO_VERSION


def space_card(name: str, hub_model_id: str | None) -> str:
    """The Space's own README front matter (in ``space/``, so the model card stays the model's)."""
    models = f"models:\n- {hub_model_id}\n" if hub_model_id else ""
    return f"""---
title: {name[:60]} tags
emoji: 🏷️
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {gradio_version()}
app_file: app.py
pinned: false
{models}---

# {name}: tag suggestions

The demo of the tag model `{hub_model_id or name}`: push this folder as a Space
(`huggingface-cli upload --repo-type space USER/SPACE {Path("space")}`), or run it locally with
`sog serve MODEL_FOLDER`. `SOG_MODEL` (an environment variable or Space secret) overrides the model it serves.
"""


def write_space(folder: Path, name: str, hub_model_id: str | None, examples: list[dict]):
    """``space/``: the Gradio app (``space_app.py`` as it is; it reads the model it serves from the Space card's
    ``models:``), its card, requirements and the model card's widget examples."""
    space = folder / "space"
    space.mkdir(exist_ok=True)
    shutil.copy(REPO / "space_app.py", space / "app.py")
    (space / "README.md").write_text(space_card(name, hub_model_id), encoding="utf-8")
    (space / "requirements.txt").write_text("torch\ntransformers>=5,<6\n", encoding="utf-8")
    (space / "examples.json").write_text(json.dumps([{"text": e["text"]} for e in examples], indent=1,
                                                    ensure_ascii=False), encoding="utf-8")


def write_hub_folder(model, tokenizer, folder, scores: dict, settings: dict | None = None, example_posts=()):
    """The model, tokenizer, handler, model card and Space in ``folder``; ``settings`` as ``model_card`` takes."""
    settings = settings or {}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(REPO / "handler.py", folder / "handler.py")
    hub_model_id = settings.get("hub_model_id")
    name = hub_model_id or folder.resolve().name
    examples = widget_examples(model, tokenizer, list(example_posts))
    (folder / "README.md").write_text(model_card(model, scores, settings, examples, name), encoding="utf-8")
    write_space(folder, name, hub_model_id, examples)


def uploadable_files(folder) -> list[Path]:
    """What ``push_hub_folder`` uploads: the folder minus NOT_UPLOADED (the same patterns the upload is given)."""
    folder = Path(folder)
    return sorted(relative for relative in (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
                  if not any(fnmatch.fnmatch(relative.as_posix(), pattern) for pattern in NOT_UPLOADED))


def push_hub_folder(folder, repo_id: str | None, dry_run: bool = False):
    files = uploadable_files(folder)
    if dry_run:
        print(f"dry run: would upload {len(files)} files to {repo_id or '<--hub_model_id>'}:")
        for path in files:
            print(f"  {path}  ({(Path(folder) / path).stat().st_size:,} bytes)")
        return files
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=NOT_UPLOADED,
                      commit_message="Upload SOG tag model")
    print(f"pushed {len(files)} files to {repo_id}")
    return files
