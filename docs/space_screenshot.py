"""The README's screenshot: a model folder's Space, served by ``sog serve``, on a real post, in headless Chromium.

    python -m docs.space_screenshot outputs/demo docs/space_demo.png

The post is the first test post of the bundled corpus (a real Debian package description). Prints the tags
the page shows next to the gold tags.
"""

import sys
import tempfile

from corpora import Split, load_corpus
from tests import browser


def main(model_folder: str, screenshot: str):
    test = Split.of("test", load_corpus(None)["test"].select(range(1)))
    post, gold = test.posts[0], test.gold[0]
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
