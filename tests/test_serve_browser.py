"""The draw-a-digit page in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

Strokes are drawn with WebDriver pointer actions (mouse and touch), which the browser
turns into the pointer events the page listens to. The model is 784-16-16-10 trained on
real MNIST for a few epochs with the numba backend, once per session.

Skips where Chromium, chromedriver or Selenium are missing, except under CI=true, where
that is a failure (.ci/run installs them). With FASTMLP_README_SCREENSHOT=1 the
screenshot also replaces docs/images/serve.png, the README's picture of the page.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmlp import MLP
from fastmlp.serve import start

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FASTMLP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FASTMLP_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1240",
]


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: the browser tests must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist_model(tmp_path_factory, mnist):
    """A 784-16-16-10 ReLU model trained on MNIST (numba backend), and its test set."""
    train_x, train_y, test_x, test_y = mnist
    model = MLP([784, 16, 16, 10], seed=0)
    model.fit(train_x, train_y, epochs=8, batch_size=32, lr=0.2, weight_decay=2e-4,
              lr_schedule="onecycle", progress=False)  # fmt: skip
    assert model.evaluate(test_x, test_y)["accuracy"] > 0.9
    path = tmp_path_factory.mktemp("serve-browser") / "mnist-784-16-16-10.safetensors"
    model.save(path)
    return path, test_x, test_y


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            _missing(f"{path} is not installed (apt-get install chromium chromium-driver)")

    profile = tempfile.mkdtemp(prefix="fastmlp-chromium-")  # a fresh profile every run
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser, mnist_model):
    """The page, freshly loaded from a server for the trained model."""
    server = start(mnist_model[0])
    browser.get(server.url)
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    yield browser
    server.shutdown()
    server.server_close()


def wait_for(driver, script: str, timeout: float = 20.0, *args):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script, *args))


def answers(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.answers || 0"))


def wait_for_answer(driver, before: int) -> str:
    wait_for(driver, "return Number(document.body.dataset.answers || 0) > arguments[0]", 20, before)
    return driver.find_element("id", "digit").text


def preview_pixels(driver) -> np.ndarray:
    """The preview canvas as the browser drew it: 28x28 gray levels, read at each cell's centre."""
    values = driver.execute_script(
        """
        const c = document.getElementById('preview');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const cell = c.width / 28, out = [];
        for (let r = 0; r < 28; r++) for (let k = 0; k < 28; k++) {
          const x = Math.floor((k + 0.5) * cell), y = Math.floor((r + 0.5) * cell);
          out.push(data[4 * (y * c.width + x)]);
        }
        return out;
        """
    )
    return np.array(values, np.int64).reshape(28, 28)


def draw(driver, points, kind: str = "mouse") -> None:
    """One stroke through ``points`` (pad pixels from its top-left) with a mouse, pen or finger."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    width = pad.size["width"]
    kinds = {
        "mouse": interaction.POINTER_MOUSE,
        "pen": interaction.POINTER_PEN,
        "touch": interaction.POINTER_TOUCH,
    }
    actions = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind), duration=10)
    # WebDriver offsets are from the element's centre.
    centred = [(round(x - width / 2), round(y - width / 2)) for x, y in points]
    actions.pointer_action.move_to(pad, *centred[0])
    actions.pointer_action.pointer_down()
    for x, y in centred[1:]:
        actions.pointer_action.move_to(pad, x, y)
    actions.pointer_action.pointer_up()
    actions.perform()


def clear(driver) -> None:
    driver.find_element("id", "clear").click()
    wait_for(driver, "return document.getElementById('digit').textContent === '?'")


def severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_page_describes_the_model_and_shows_its_first_layer(page, mnist_model):
    info = page.find_element("id", "model-info").text
    assert mnist_model[0].name in info and "784-16-16-10" in info and "relu" in info
    wait_for(
        page,
        "const i = document.getElementById('weights'); return i.complete && i.naturalWidth > 0",
    )
    assert len(page.find_elements("css selector", "#bars li")) == 10
    assert severe_console_messages(page) == []  # no CSP violation, no failed fetch


def test_a_vertical_stroke_with_the_mouse_is_a_one(page, tmp_path):
    clear(page)
    blank = preview_pixels(page)
    assert blank.max() == 0
    before = answers(page)
    draw(page, [(140, 50 + 9 * i) for i in range(21)], kind="mouse")
    assert wait_for_answer(page, before) == "1"
    seen = preview_pixels(page)
    # The preview changed to a centred vertical bar: ink in the middle columns only.
    assert seen.max() > 200 and (seen > 0).sum() > 20
    columns = np.flatnonzero(seen.max(axis=0) > 64)
    assert columns.min() >= 9 and columns.max() <= 18, columns
    top = page.find_element("css selector", "#bars li.top")
    assert top.get_attribute("data-digit") == "1"
    page.save_screenshot(str(tmp_path / "serve-one.png"))


@pytest.mark.parametrize("kind", ["touch", "pen"])
def test_a_loop_drawn_with_a_finger_or_pen_is_a_zero(page, tmp_path, kind):
    clear(page)
    before = answers(page)
    angles = np.linspace(0, 2 * np.pi, 40)
    loop = [(140 + 55 * np.sin(a), 140 - 85 * np.cos(a)) for a in angles]
    draw(page, loop, kind=kind)
    assert wait_for_answer(page, before) == "0"
    seen = preview_pixels(page)
    assert seen[14, 14] < 64 and seen.max() > 200  # a ring: dark in the middle
    shot = tmp_path / "serve.png"
    page.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 500
    if kind == "touch" and os.environ.get("FASTMLP_README_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "images" / "serve.png")


def test_clear_empties_the_answer_and_the_preview(page):
    before = answers(page)
    draw(page, [(140, 60 + 10 * i) for i in range(17)])
    wait_for_answer(page, before)
    clear(page)
    assert preview_pixels(page).max() == 0
    assert page.find_element("id", "status").text == "Draw a digit."


def _fastmlp_predict(model_path, images):
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "predict", str(model_path), *map(str, images)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return [int(line.rsplit(": ", 1)[1].split()[0]) for line in result.stdout.splitlines()]


def test_mnist_test_images_opened_or_dropped_match_fastmlp_predict(page, mnist_model, tmp_path):
    model_path, test_x, test_y = mnist_model
    images = []
    for i in (0, 1, 2, 3, 4, 7):
        path = tmp_path / f"mnist-test-{i}-label-{test_y[i]}.png"
        Image.fromarray(test_x[i].reshape(28, 28)).save(path)
        images.append(path)
    expected = _fastmlp_predict(model_path, images)

    shown = []
    for n, path in enumerate(images):
        clear(page)
        before = answers(page)
        if n % 2 == 0:  # through the file picker
            page.find_element("id", "file").send_keys(str(path))
        else:  # dropped on the pad, as a drag from the desktop delivers it
            page.execute_script(
                """
                const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
                const file = new File([bytes], arguments[1], { type: 'image/png' });
                const transfer = new DataTransfer();
                transfer.items.add(file);
                const zone = document.getElementById('drop-zone');
                zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
                zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
                """,
                base64.b64encode(path.read_bytes()).decode(),
                path.name,
            )
        shown.append(int(wait_for_answer(page, before)))
        assert preview_pixels(page).max() > 200
    assert shown == expected
    assert sum(s == y for s, y in zip(shown, test_y[[0, 1, 2, 3, 4, 7]], strict=True)) >= 5


def test_a_file_that_is_not_an_image_shows_the_servers_error(page, tmp_path):
    clear(page)
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    before = answers(page)
    page.find_element("id", "file").send_keys(str(path))
    assert wait_for_answer(page, before) == "?"
    status = page.find_element("id", "status")
    assert "not an image" in status.text and "error" in status.get_attribute("class")
