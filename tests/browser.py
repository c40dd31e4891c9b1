"""Driving the Gradio apps in headless Chromium as a person would (tests and the README screenshot share this).

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``) and the Python
packages ``selenium`` and ``gradio`` (``pip install -e ".[dev]"``).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1400,1000"]
INSTALL_HINT = ("install a browser to run it: apt-get install chromium chromium-driver, and "
                "pip install selenium gradio (pip install -e '.[dev]')")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (with how to fix it), or None."""
    for program in ("chromium", "chromedriver"):
        if not shutil.which(program):
            return f"{program} not found; {INSTALL_HINT}"
    for module in ("selenium", "gradio"):
        try:
            __import__(module)
        except ImportError:
            return f"the Python package {module} is not installed; {INSTALL_HINT}"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(command: list[str], port: int, env=None, timeout: float = 240) -> subprocess.Popen:
    """Start a server process and wait until its port answers."""
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED":
                                                       "False", **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited with {process.returncode}:\n{process.stdout.read()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{command} did not answer on port {port} within {timeout} s")


def stop_app(process: subprocess.Popen):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def browser(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def type_into(driver, elem_id: str, text: str):
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
    field.clear()
    field.send_keys(text)


def wait_for(driver, condition, timeout: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(lambda d: condition(d))


def table_rows(driver, elem_id: str) -> list[list[str]]:
    """The body cells of a Gradio Dataframe, row by row (Gradio 6 draws them as ARIA grid rows of divs)."""
    from selenium.webdriver.common.by import By

    rows = []
    for row in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} div[role='row']"):
        cells = [cell.text.strip() for cell in row.find_elements(By.CSS_SELECTOR, "[role='gridcell']")]
        if any(cells):
            rows.append(cells)
    return rows


def suggest_in_page(driver, url: str, post: dict, timeout: float = 120) -> list[list[str]]:
    """Open the tag demo, fill in the post, press the button, return the table's rows (tag, score, step p)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#suggest"), timeout)
    for field, elem_id in (("text", "post-text"), ("image", "post-image"), ("location", "post-location"),
                           ("time", "post-time")):
        if post.get(field):
            type_into(driver, elem_id, post[field])
    driver.find_element(By.CSS_SELECTOR, "#suggest").click()
    return wait_for(driver, lambda d: table_rows(d, "tag-table") or None, timeout)


def serve_command(model_folder, port: int) -> list[str]:
    return [sys.executable, "-m", "sog_cli", "serve", str(model_folder), "--port", str(port)]
