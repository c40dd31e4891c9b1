"""The Gradio demo of a SOG tag model: ``app.py`` of the Space that ``train.py`` writes into every model folder
(``space/``), and what ``sog serve MODEL`` runs locally. Imports only gradio, transformers and the stdlib.

A text box plus an optional image description, location and time; the tags come back as a bar chart of their
scores and as a table in generation order (with a lexical expert, with the words of the post behind each tag);
the model card's widget examples are clickable examples.

The model it serves: the ``SOG_MODEL`` environment variable, else the first of ``models:`` in the Space card's
front matter (``README.md`` next to this file: the Hub repo the folder was trained for, which also links the
Space to the model on the Hub), else the folder above this file's (the model folder itself, run from ``space/``).
"""

import json
import os
import socket
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE_CARD = "README.md"
EXAMPLES_FILE = "examples.json"
TABLE_HEADERS = ["tag", "score", "step probability"]
WORDS_HEADER = "words of the post behind it"


def card_model_id(card: Path = HERE / SPACE_CARD) -> str | None:
    """The first entry of ``models:`` in the Space card's front matter, if the card names one."""
    if not card.is_file():
        return None
    from huggingface_hub import metadata_load

    models = (metadata_load(card) or {}).get("models") or []
    return models[0] if models else None


def model_location() -> str:
    return os.environ.get("SOG_MODEL") or card_model_id() or str(HERE.parent)


def load(location: str):
    from transformers import AutoModel, AutoTokenizer

    return (AutoModel.from_pretrained(location, trust_remote_code=True).eval(),
            AutoTokenizer.from_pretrained(location, trust_remote_code=True))


def example_posts(location: str) -> list[dict]:
    """The widget examples: next to this file in a Space, in the model folder's ``space/`` otherwise."""
    for folder in (HERE, Path(location) / "space"):
        if (folder / EXAMPLES_FILE).is_file():
            return json.loads((folder / EXAMPLES_FILE).read_text(encoding="utf-8"))
    return []


def explains(model) -> bool:
    """Whether the model has a lexical expert, which can say which words of a post pushed each tag."""
    return getattr(model, "lexical", None) is not None


def suggest(model, tokenizer, text, image, location, time, num_tags, threshold):
    """The button's function: (scores by tag for the bar chart, rows for the table in generation order)."""
    post = {name: value.strip() for name, value in (("text", text), ("image", image), ("location", location),
                                                     ("time", time)) if value and value.strip()}
    [tags] = model.generate_tags([post], tokenizer, num_tags=int(num_tags), threshold=float(threshold) or None,
                                 explain=explains(model))
    return ({tag["label"]: tag["score"] for tag in tags},
            [[tag["label"], round(tag["score"], 4), round(tag["step_probability"], 4)]
             + ([", ".join(tag["words"])] if explains(model) else []) for tag in tags])


def build_demo(location: str | None = None):
    import gradio as gr

    location = location or model_location()
    model, tokenizer = load(location)
    name = Path(location).name if os.path.isdir(location) else location

    def run(*inputs):
        try:
            return suggest(model, tokenizer, *inputs)
        except (ValueError, TypeError) as error:   # a bad time stamp, say: shown to the user, not a crash
            raise gr.Error(str(error))

    with gr.Blocks(title=f"{name}: tag suggestions") as demo:
        gr.Markdown(f"# {name}\nSuggests a **set** of tags for a post (sequence-oblivious generation, SOG). "
                    "`score`: the estimated probability that the tag belongs to the post's set.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Post", lines=6, elem_id="post-text")
                image = gr.Textbox(label="Image description (optional)", elem_id="post-image")
                where = gr.Textbox(label="Location (optional)", elem_id="post-location")
                when = gr.Textbox(label="Time, ISO-8601 (optional)", placeholder="2021-07-01T20:10:00",
                                  elem_id="post-time")
                num_tags = gr.Slider(1, min(20, model.config.num_tags), value=min(model.config.num_tags_to_generate,
                                                                                   model.config.num_tags),
                                     step=1, label="Tags at most")
                threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Score threshold")
                button = gr.Button("Suggest tags", variant="primary", elem_id="suggest")
            with gr.Column():
                chart = gr.Label(label="Tags by score", num_top_classes=20, elem_id="tag-chart")
                table = gr.Dataframe(headers=TABLE_HEADERS + ([WORDS_HEADER] if explains(model) else []),
                                     label="In generation order", elem_id="tag-table", interactive=False)
        examples = [[post.get("text", ""), post.get("image", ""), post.get("location", ""), post.get("time", "")]
                    for post in example_posts(location)]
        if examples:
            gr.Examples(examples=examples, inputs=[text, image, where, when], label="Examples from the model card")
        button.click(run, inputs=[text, image, where, when, num_tags, threshold], outputs=[chart, table],
                     api_name="suggest")
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve(location: str, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Run the demo on ``host:port`` (a free port by default); returns the URL when ``block`` is false."""
    demo = build_demo(location)
    port = port or free_port(host)
    print(f"serving {location} at http://{host}:{port}", flush=True)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True, quiet=True)
    return f"http://{host}:{port}"


if __name__ == "__main__":
    build_demo().launch()
