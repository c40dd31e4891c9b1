"""A Gradio Space for the metric (evaluate's stock widget needs Gradio 3, so this is our own small app).

One post per line: tags separated by commas. Run locally with ``python app.py``.
"""

from pathlib import Path

import evaluate

metric = evaluate.load(str(Path(__file__).with_name("precision_at_k.py")))

EXAMPLE_PREDICTIONS = "python, pandas, numpy\ncss"
EXAMPLE_REFERENCES = "pandas, python\nhtml, css"


def parse_tag_lines(text: str, field: str) -> list[list[str]]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{field}: enter one post per line, tags separated by commas")
    return [[tag.strip() for tag in line.split(",") if tag.strip()] for line in lines]


def compute_scores(predictions: str, references: str, ks: str = "1, 3, 5") -> dict:
    """The app's function: text in, the metric's dict out (percentages, rounded to 2 decimals)."""
    try:
        k = [int(v) for v in ks.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"K: expected integers such as '1, 3, 5', got {ks!r}") from None
    scores = metric.compute(predictions=parse_tag_lines(predictions, "predictions"),
                            references=parse_tag_lines(references, "references"), k=k)
    return {name: (value if name == "n" else round(100 * value, 2)) for name, value in scores.items()}


def score_rows(scores: dict) -> list[list]:
    """The scores as table rows (metric, value), in the metric's order."""
    return [[name, value] for name, value in scores.items()]


def build_demo():
    import gradio as gr

    def run(predictions, references, ks):
        try:
            return score_rows(compute_scores(predictions, references, ks))
        except ValueError as error:
            raise gr.Error(str(error))

    card = Path(__file__).with_name("README.md").read_text(encoding="utf-8").split("---", 2)[-1]
    with gr.Blocks(title="Precision At K") as demo:
        gr.Markdown("# Precision At K\nP@K, R@K, F1@K and nDCG@K of ranked tag predictions against gold tag sets.")
        with gr.Row():
            with gr.Column():
                predictions = gr.Textbox(label="Predictions (ranked, one post per line)", lines=6,
                                         value=EXAMPLE_PREDICTIONS, elem_id="predictions")
                references = gr.Textbox(label="References (gold tags, one post per line)", lines=6,
                                        value=EXAMPLE_REFERENCES, elem_id="references")
                ks = gr.Textbox(label="K", value="1, 3, 5", elem_id="ks")
                button = gr.Button("Compute", variant="primary", elem_id="compute")
            scores = gr.Dataframe(headers=["metric", "value (%)"], label="Scores", elem_id="scores",
                                  interactive=False)
        button.click(run, inputs=[predictions, references, ks], outputs=scores, api_name="compute")
        with gr.Accordion("About this metric", open=False):
            gr.Markdown(card)
    return demo


if __name__ == "__main__":
    build_demo().launch()
