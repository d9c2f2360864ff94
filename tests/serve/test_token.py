"""The optional bearer token of `convlab serve`: 401 without the right one on everything but /health and the page,
read from --token or CONVLAB_SERVE_TOKEN, never printed, passed to every worker; and the warning when a server
that other machines may reach has none. Every server here listens on 127.0.0.1."""

from __future__ import annotations

import os
import re

import httpx
import pytest

from convlab.errors import ConvlabError
from convlab.serve.startup import TOKEN_VARIABLE, network_warning, resolve_token
from tests.helpers import serving

TOKEN = "tok-5Jq2-x9ZrB7mKp_w3"  # what `secrets.token_urlsafe` gives, shorter
WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def guarded(server_thread, checkpoint):
    """The service for the trained checkpoint with a token, on a loopback port."""
    from convlab.serve import create_app

    with server_thread(create_app(checkpoint, device="cpu", token=TOKEN)) as running:
        yield running


def upload(path) -> dict:
    return {"file": (path.name, path.read_bytes(), "image/png")}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_predict_needs_the_right_token(guarded, samples):
    paths, _ = samples
    missing = httpx.post(guarded.url + "/predict", files=upload(paths[0]))
    wrong = httpx.post(guarded.url + "/predict", files=upload(paths[0]), headers=bearer(TOKEN + "x"))
    prefix = httpx.post(guarded.url + "/predict", files=upload(paths[0]), headers=bearer(TOKEN[:-1]))
    basic = httpx.post(
        guarded.url + "/predict", files=upload(paths[0]), headers={"Authorization": f"Basic {TOKEN}"}
    )
    right = httpx.post(guarded.url + "/predict", files=upload(paths[0]), headers=bearer(TOKEN))
    for refused in (missing, wrong, prefix, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert list(refused.json()) == ["error"] and TOKEN not in refused.text
    assert "Authorization: Bearer <token>" in missing.json()["error"]
    assert "invalid_token" in wrong.headers["www-authenticate"]
    assert right.status_code == 200 and right.json()["predictions"][0]["label"] == "Ankle boot"
    # the scheme is case-insensitive (RFC 7235)
    lower = httpx.post(
        guarded.url + "/predict", files=upload(paths[0]), headers={"authorization": f"bearer {TOKEN}"}
    )
    assert lower.status_code == 200


def test_every_endpoint_but_health_and_the_page_needs_the_token(guarded, samples):
    paths, _ = samples
    for method, path in [
        ("POST", "/gradcam"),
        ("GET", "/model"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/no-such-page"),
    ]:
        files = upload(paths[0]) if method == "POST" else None
        refused = httpx.request(method, guarded.url + path, files=files)
        assert refused.status_code == 401, path
        allowed = httpx.request(method, guarded.url + path, files=files, headers=bearer(TOKEN))
        assert allowed.status_code == (404 if path == "/no-such-page" else 200), path
    # Open: liveness for load balancers, and the page, its script and its style (no secret in them).
    assert httpx.get(guarded.url + "/health").json() == {"status": "ok"}
    for path in ("/", "/static/app.js", "/static/style.css"):
        assert httpx.get(guarded.url + path).status_code == 200, path


def test_the_token_comes_from_the_option_else_the_environment_and_is_never_repeated():
    assert resolve_token(None, {}) is None
    assert resolve_token(None, {TOKEN_VARIABLE: TOKEN}) == TOKEN
    assert resolve_token("from-the-option", {TOKEN_VARIABLE: TOKEN}) == "from-the-option"  # --token wins
    with pytest.raises(ConvlabError, match=f"{TOKEN_VARIABLE} is empty") as empty:
        resolve_token(None, {TOKEN_VARIABLE: ""})  # set but empty: refused, never read as "no token"
    assert "unset it" in str(empty.value)
    for bad in ("two words", "naïve-secret", "tab\there"):
        with pytest.raises(ConvlabError, match="--token holds a space, a control or a non-ASCII") as refused:
            resolve_token(bad, {})
        assert bad not in str(refused.value)


class Bound:
    """A socket's address without a socket: no test listens beyond 127.0.0.1."""

    def __init__(self, host: str, port: int = 8000) -> None:
        self.address = (host, port) if ":" not in host else (host, port, 0, 0)

    def getsockname(self):
        return self.address


def test_a_server_other_machines_may_reach_warns_without_a_token():
    for host in ("127.0.0.1", "127.0.0.2", "::1"):
        assert network_warning(Bound(host), None) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "fe80::1%eth0"):
        line = network_warning(Bound(host), None)
        assert line.startswith(f"Warning: listening on {host} port 8000") and TOKEN_VARIABLE in line
        assert network_warning(Bound(host), TOKEN) is None


@pytest.mark.slow  # three processes start torch: the supervisor checks the model, then each worker loads it
def test_the_environment_token_reaches_every_worker_and_is_never_printed(checkpoint, samples):
    paths, _ = samples
    environment = {**os.environ, TOKEN_VARIABLE: TOKEN}
    arguments = (str(checkpoint), "--port", "0", "--device", "cpu", "--workers", "2")
    with serving(*arguments, env=environment) as (process, lines):
        ready = lines.get(timeout=120)
        assert ready is not None, process.stderr.read()
        match = re.fullmatch(
            r"Serving lenet5 .* at (http://127\.0\.0\.1:\d+) \(bearer token required; Ctrl\+C to stop\)\n",
            ready,
        )
        assert match, ready
        url = match[1]
        statuses = set()
        # New connections each time, so that both workers answer (the kernel spreads them over the processes).
        for _ in range(12):
            statuses.add(
                httpx.post(url + "/predict", files=upload(paths[0]), headers=bearer(TOKEN)).status_code
            )
            statuses.add(-httpx.post(url + "/predict", files=upload(paths[0])).status_code)
        assert statuses == {200, -401}
        assert httpx.get(url + "/health").status_code == 200
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    printed = ready + "".join(rest) + process.stderr.read()
    assert TOKEN not in printed
    assert "Warning" not in printed  # on 127.0.0.1: no warning


def test_the_page_asks_for_the_token_once_and_then_works(browser, guarded, samples):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def state(driver) -> str:
        return driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")

    def wait_for(*states: str) -> str:
        WebDriverWait(browser, WAIT_SECONDS).until(lambda driver: state(driver) in states)
        return state(browser)

    def enter(token: str) -> None:
        field = browser.find_element(By.ID, "token-input")
        field.send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#token-form button").click()

    paths, _ = samples
    browser.get(guarded.url + "/")
    assert wait_for("token", "idle", "error") == "token"
    assert "needs an access token" in browser.find_element(By.ID, "token-message").text
    enter("not-the-token")
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda driver: "refused" in driver.find_element(By.ID, "token-message").text
    )
    assert state(browser) == "token"
    enter(TOKEN)
    assert wait_for("idle", "error", "token") == "idle"
    assert not browser.find_element(By.ID, "token-form").is_displayed()
    assert "lenet5" in browser.find_element(By.ID, "model-line").text
    browser.find_element(By.ID, "file-input").send_keys(str(paths[0]))
    assert wait_for("done", "error", "token") == "done"
    assert browser.find_element(By.CSS_SELECTOR, "#predictions .prediction .label").text == "Ankle boot"
    # Asked once: a reload in the same tab keeps the token (sessionStorage), and it is never in the URL.
    browser.refresh()
    assert wait_for("idle", "error", "token") == "idle"
    assert TOKEN not in browser.current_url
    browser.get_log("browser")  # the 401s above are logged as errors; leave none for the next page test
