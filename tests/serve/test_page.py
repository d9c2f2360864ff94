"""The web page in headless Chromium: an image chosen in the file input shows the same top-5 as the JSON API.

Set CONVLAB_SERVE_SCREENSHOT=docs/images/serve-page.png to save the page after a prediction (the README's picture).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

WAIT_SECONDS = 30


def choose_image(browser, url: str, path: Path) -> str:
    """Open the page, choose ``path`` in its file input and wait until the page is done; returns its state."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def state(driver) -> str:
        return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")

    browser.get(url + "/")
    WebDriverWait(browser, WAIT_SECONDS).until(lambda driver: state(driver) in ("idle", "error"))
    browser.find_element(By.ID, "file-input").send_keys(str(path))
    WebDriverWait(browser, WAIT_SECONDS).until(lambda driver: state(driver) in ("done", "error"))
    return state(browser)


def texts(browser, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_the_page_shows_the_api_top5_and_a_gradcam_overlay(browser, server, samples):
    from selenium.webdriver.common.by import By

    paths, _ = samples
    assert choose_image(browser, server.url, paths[0]) == "done", texts(browser, "#error")
    api = httpx.post(
        server.url + "/predict", files={"file": (paths[0].name, paths[0].read_bytes(), "image/png")}
    )
    expected = api.json()["predictions"]
    assert len(expected) == 5
    assert texts(browser, "#predictions .prediction .label") == [p["label"] for p in expected]
    assert texts(browser, "#predictions .prediction .percent") == [
        f"{100 * p['probability']:.1f}%" for p in expected
    ]
    assert "lenet5" in browser.find_element(By.ID, "model-line").text
    assert "61,706 parameters" in browser.find_element(By.ID, "model-line").text

    overlay = browser.find_element(By.ID, "gradcam")
    assert overlay.is_displayed()
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == 32  # the model's input size
    assert texts(browser, "#gradcam-caption")[0].startswith("Grad-CAM at ")
    assert expected[0]["label"] in texts(browser, "#gradcam-caption")[0]

    # Everything the page loaded came from this server (or is the upload / overlay itself).
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded and all(name.startswith((server.url, "data:", "blob:")) for name in loaded), loaded
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []

    screenshot = os.environ.get("CONVLAB_SERVE_SCREENSHOT")
    if screenshot:
        # The whole page at 1000 px wide, whatever the headless window's own chrome takes off its height.
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(screenshot)
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_page_shows_the_servers_error_for_a_file_that_is_not_an_image(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    assert choose_image(browser, server.url, notes) == "error"
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "notes.txt" in error.text and "image/png" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_an_onnx_model_shows_predictions_and_says_gradcam_is_not_available(browser, onnx_server, samples):
    from selenium.webdriver.common.by import By

    paths, _ = samples
    assert choose_image(browser, onnx_server.url, paths[0]) == "done", texts(browser, "#error")
    api = httpx.post(
        onnx_server.url + "/predict", files={"file": (paths[0].name, paths[0].read_bytes(), "image/png")}
    )
    assert texts(browser, "#predictions .prediction .label") == [
        p["label"] for p in api.json()["predictions"]
    ]
    assert "ONNX" in browser.find_element(By.ID, "model-line").text
    assert not browser.find_element(By.ID, "gradcam").is_displayed()
    assert texts(browser, "#gradcam-caption") == [
        "Grad-CAM is not available for an ONNX model: it needs the PyTorch weights' gradients."
    ]
