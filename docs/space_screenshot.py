"""The README's screenshot: a model folder's Space, served by ``sog serve``, on a real post, in headless Chromium.

    python docs/space_screenshot.py outputs/demo docs/space_demo.png

The post is the first test post of the bundled corpus (a real Debian package description). Prints the tags
the page shows next to the gold tags.
"""

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import browser  # noqa: E402


def main(model_folder: str, screenshot: str):
    import train

    test = train.load_corpus(None)["test"]
    post, gold = train.posts_of(test.select(range(1)))[0], test[0]["tags"]
    port = browser.free_port()
    server = browser.start_app(browser.serve_command(model_folder, port), port)
    with tempfile.TemporaryDirectory() as profile:
        driver = browser.browser(profile)
        try:
            rows = browser.suggest_in_page(driver, f"http://127.0.0.1:{port}", post)
            driver.save_screenshot(screenshot)
        finally:
            driver.quit()
            browser.stop_app(server)
    print("page:", ", ".join(f"{tag} ({score})" for tag, score, _ in rows))
    print("gold:", ", ".join(gold))


if __name__ == "__main__":
    main(*sys.argv[1:3])
