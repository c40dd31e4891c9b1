"""The two Gradio apps, used in headless Chromium as a person would: type, press the button, read the page.

Skipped, with the install command, where no browser is installed; ``.ci/run`` installs one, so CI runs them."""

import importlib.util
import json
import sys

import pytest

from tests import browser
from tests.helpers import EXAMPLE_POSTS
from modeling_sog import SOGForTagGeneration

pytestmark = pytest.mark.skipif(browser.missing_browser() is not None, reason=str(browser.missing_browser()))

POST = {"text": EXAMPLE_POSTS[0], "location": "python"}


def test_the_model_folder_carries_a_space_that_does_not_touch_the_model_card(tiny_model_folder):
    space = tiny_model_folder / "space"
    card = (space / "README.md").read_text()
    assert "sdk: gradio" in card and "app_file: app.py" in card
    assert "sdk: gradio" not in (tiny_model_folder / "README.md").read_text()       # the model card stays a model card
    assert json.loads((space / "examples.json").read_text())[0]["text"] == POST["text"]
    assert (space / "app.py").read_text() == (browser.REPO / "space_app.py").read_text()   # a file, not generated
    assert "models:" not in card                           # no Hub id known: the app serves the folder above it


def test_the_tag_demo_shows_what_generate_tags_gives(tiny_model_folder, tmp_path, tokenizer):
    port = browser.free_port()
    server = browser.start_app(browser.serve_command(tiny_model_folder, port), port)
    driver = browser.browser(tmp_path / "profile")
    try:
        rows = browser.suggest_in_page(driver, f"http://127.0.0.1:{port}", POST)
        driver.save_screenshot(str(tmp_path / "tag-demo.png"))
        page = driver.page_source
    finally:
        driver.quit()
        browser.stop_app(server)
    model = SOGForTagGeneration.from_pretrained(tiny_model_folder).eval()
    [expected] = model.generate_tags([POST], tokenizer, num_tags=model.config.num_tags_to_generate)
    assert [row[0] for row in rows] == [tag["label"] for tag in expected]
    assert [float(row[1]) for row in rows] == pytest.approx([tag["score"] for tag in expected], abs=1e-3)
    assert "Examples from the model card" in page and (tmp_path / "tag-demo.png").stat().st_size > 10_000


def test_the_metric_space_scores_what_the_metric_scores(tmp_path):
    from selenium.webdriver.common.by import By

    app_path = browser.REPO / "evaluate_metrics" / "precision_at_k" / "app.py"
    spec = importlib.util.spec_from_file_location("metric_space_app", app_path)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)

    port = browser.free_port()
    server = browser.start_app([sys.executable, str(browser.REPO / "evaluate_metrics" / "precision_at_k" / "app.py")],
                               port, env={"GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"})
    driver = browser.browser(tmp_path / "profile")
    try:
        driver.get(f"http://127.0.0.1:{port}")
        browser.wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#predictions"))
        browser.type_into(driver, "predictions", "python, pandas\ncss, html, js")
        browser.type_into(driver, "references", "pandas\nhtml")
        browser.type_into(driver, "ks", "1, 2")
        driver.find_element(By.CSS_SELECTOR, "#compute").click()
        expected = app.compute_scores("python, pandas\ncss, html, js", "pandas\nhtml", "1, 2")
        # the table first shows the example's scores: wait until it shows these K
        rows = browser.wait_for(driver, lambda d: [r for r in browser.table_rows(d, "scores")
                                                   if r[0] == "precision@2"] and browser.table_rows(d, "scores"))
        driver.save_screenshot(str(tmp_path / "metric.png"))
    finally:
        driver.quit()
        browser.stop_app(server)
    shown = {name: float(value) for name, value in rows}
    assert shown == pytest.approx({name: float(value) for name, value in expected.items()}, abs=1e-2)
