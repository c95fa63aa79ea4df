"""The dashboard at ``/ui`` in headless Chromium against a real server of fake models.

Playwright (sync API) drives the system Chromium: it never downloads a browser. Every
wait is Playwright's auto-waiting ``expect``, no sleeps. The server is a real subprocess
(``running_server``): one for the module, reset before each test (every model
unloaded), plus one for each test that needs its own settings or stops it. One browser
serves the whole module, a fresh context (own ``sessionStorage``) each test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from server_process import Server, running_server, stop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CLOCK_TIME = re.compile(r"^\d\d:\d\d:\d\d$")
HOSTILE = "out of memory <img src=x onerror=\"document.title='owned'\">"
"""A load error that would run script if the page set it as HTML."""

CONFIG: dict[str, Any] = {
    "pool": {"strategy": "lru", "budgets": {"cpu": "10GB"}, "probe": "system"},
    "models": {
        "alpha": {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 0.3},
        "beta": {"backend": "fake", "memory": "4GB", "device": "cpu", "load_seconds": 0.3},
        "broken": {
            "backend": "fake",
            "memory": "1GB",
            "device": "cpu",
            "fail_loads": 1000,
            "fail_message": HOSTILE,
        },
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: install it with `apt-get install chromium` (make test does)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[Server]:
    with running_server(CONFIG) as server:
        yield server


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The module's server with every model unloaded: each test starts from scratch."""
    models = httpx.get(f"{shared_server.url}/admin/models", timeout=10).json()["models"]
    for model in models:
        if model["status"] not in ("unloaded", "failed"):  # an unload leaves failed as is
            answer = httpx.post(
                f"{shared_server.url}/admin/models/{model['id']}/unload", timeout=10
            )
            assert answer.json()["status"] == "unloaded", answer.text
    return shared_server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()  # before the server stops: the page's event stream ends with it
    assert not errors, f"script errors on the page: {errors}"


def model_row(page: Page, model_id: str) -> Locator:
    return page.locator(f'tr[data-model="{model_id}"]')


def button(page: Page, name: str) -> Locator:
    return page.get_by_role("button", name=name, exact=True)


def events_of(page: Page, kind: str, model_id: str) -> Locator:
    return page.locator(f'#events li[data-kind="{kind}"]').filter(has_text=model_id)


def history_shown(page: Page) -> None:
    """Waits until the page shows the event history and listens to the live stream."""
    expect(page.locator("#stream")).to_have_attribute("data-stream", "live")
    expect(page.locator("#events")).to_have_attribute("aria-busy", "false")


def test_load_and_unload_from_the_dashboard(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    expect(model_row(page, "alpha")).to_have_attribute("data-state", "unloaded")
    expect(model_row(page, "beta")).to_have_attribute("data-state", "unloaded")
    expect(page.locator("#strategy")).to_have_text("lru")
    cpu = page.locator('[data-device="cpu"]')
    expect(cpu.locator('[data-value="committed"]')).to_have_text("0 B")
    history_shown(page)
    loaded = events_of(page, "loaded", "alpha").count()  # earlier tests may have some

    button(page, "Load alpha").click()

    expect(model_row(page, "alpha")).to_have_attribute("data-state", "ready")
    expect(events_of(page, "loaded", "alpha")).to_have_count(loaded + 1)
    expect(cpu.locator('[data-value="committed"]')).to_have_text("4 GB")
    expect(cpu.locator(".mem-sum")).to_have_text("4 GB of 10 GB")
    # 4 GB of 10 GB: the committed segment is 40 % of the bar (its final width: the
    # drawn width eases towards it), and the bar is on screen.
    expect(cpu.locator('[data-part="committed"]')).to_have_attribute("style", "width: 40%;")
    expect(cpu.locator(".bar").first).to_be_visible()
    expect(model_row(page, "beta")).to_have_attribute("data-state", "unloaded")
    expect(button(page, "Load alpha")).to_be_disabled()
    expect(page.locator("#banner")).to_be_hidden()


def test_unload_returns_the_model_to_unloaded(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    button(page, "Load alpha").click()
    expect(model_row(page, "alpha")).to_have_attribute("data-state", "ready")
    history_shown(page)
    unloaded = events_of(page, "unloaded", "alpha").count()

    button(page, "Unload alpha").click()

    expect(model_row(page, "alpha")).to_have_attribute("data-state", "unloaded")
    expect(events_of(page, "unloaded", "alpha")).to_have_count(unloaded + 1)
    expect(page.locator('[data-device="cpu"] [data-value="committed"]')).to_have_text("0 B")
    expect(button(page, "Unload alpha")).to_be_disabled()
    expect(button(page, "Load alpha")).to_be_enabled()


def test_asks_for_the_api_key_and_retries_with_it(page: Page) -> None:
    with running_server(CONFIG, env={"MODELPOOL_API_KEYS": "k1"}, api_key="k1") as server:
        page.goto(f"{server.url}/ui")
        key = page.get_by_label("API key", exact=True)
        expect(key).to_be_visible()
        expect(model_row(page, "alpha")).to_have_count(0)

        key.fill("wrong")
        button(page, "Use key").click()
        expect(page.locator("#auth-message")).to_contain_text("refused")
        expect(model_row(page, "alpha")).to_have_count(0)

        key.fill("k1")
        button(page, "Use key").click()

        expect(model_row(page, "alpha")).to_have_attribute("data-state", "unloaded")
        expect(model_row(page, "beta")).to_have_attribute("data-state", "unloaded")
        expect(key).to_be_hidden()
        history_shown(page)  # the event stream carries the key too
        button(page, "Load beta").click()  # and so do the actions
        expect(model_row(page, "beta")).to_have_attribute("data-state", "ready")
        expect(events_of(page, "loaded", "beta")).to_have_count(1)
        page.context.close()  # before the server stops


def test_changes_made_elsewhere_arrive_through_the_event_stream(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    expect(model_row(page, "beta")).to_have_attribute("data-state", "unloaded")
    # From here on only the stream brings events: the history is fetched once per
    # connection, and the 5 s fallback poll refreshes states, never events.
    history_shown(page)
    loaded = events_of(page, "loaded", "beta").count()

    answer = httpx.post(f"{server.url}/admin/models/beta/load", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ready"

    # Well under the 5 s poll: the stream, not the poll, brought the change.
    expect(events_of(page, "loaded", "beta")).to_have_count(loaded + 1, timeout=3000)
    expect(model_row(page, "beta")).to_have_attribute("data-state", "ready", timeout=3000)
    expect(page.locator('[data-device="cpu"] [data-value="committed"]')).to_have_text("4 GB")
    # A live event tells the page the pool's clock: event times turn into wall-clock time.
    expect(page.locator("#events li .time").first).to_have_text(CLOCK_TIME)


def test_server_text_is_shown_as_text(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    button(page, "Load broken").click()

    expect(model_row(page, "broken")).to_have_attribute("data-state", "failed")
    expect(model_row(page, "broken")).to_contain_text("<img src=x")
    expect(events_of(page, "load_failed", "broken").first).to_contain_text("<img src=x")
    expect(page.locator("img")).to_have_count(0)
    assert page.title() == "modelpool"


def test_a_server_that_stops_answering_shows_a_banner(page: Page) -> None:
    with running_server(CONFIG) as server:
        page.goto(f"{server.url}/ui")
        expect(model_row(page, "alpha")).to_have_attribute("data-state", "unloaded")
        history_shown(page)
        expect(page.locator("#banner")).to_be_hidden()

        stop(server)  # its exit code is test_server.py's business

        # The event stream drops at once; the page notices when it fails to reconnect.
        expect(page.locator("#banner")).to_contain_text("Connection lost")
        expect(page.locator("#stream")).to_have_attribute("data-stream", "down")
        expect(model_row(page, "alpha")).to_be_visible()  # the last picture stays


def test_strategy_auto_shows_as_such_with_its_last_table_on_hover(page: Page) -> None:
    auto = {
        **CONFIG,
        "pool": {**CONFIG["pool"], "strategy": "auto", "auto_options": {"interval": "0.3s"}},
    }
    with running_server(auto) as server:
        for model in ("alpha", "beta", "alpha"):  # two models: something to compare
            httpx.post(f"{server.url}/admin/models/{model}/load", timeout=30)
            httpx.post(f"{server.v1}/embeddings", json={"model": model, "input": "x"}, timeout=30)
        page.goto(f"{server.url}/ui")
        expect(page.locator("#strategy")).to_have_text(re.compile(r"^\w+ \(auto\)$"))
        # each evaluation is an event, and an event refreshes the page: the title follows
        expect(page.locator("#strategy")).to_have_attribute(
            "title", re.compile(r"cost_aware: [\d.]+ s waited, \d+ cold loads")
        )
