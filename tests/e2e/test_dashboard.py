"""The dashboard at ``/ui`` in headless Chromium against a real server of fake models
(and two real model server processes, ``tiny_server.py``, for chat traffic).

Playwright (sync API) drives the system Chromium: it never downloads a browser. Every
wait is Playwright's auto-waiting ``expect``, no sleeps. The server is a real subprocess
(``running_server``): one for the module, reset before each test (every model
unloaded), plus one for each test that needs its own settings or stops it. One browser
serves the whole module, a fresh context (own ``sessionStorage``) each test.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
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
TINY = str(Path(__file__).parents[1] / "integration" / "servers" / "tiny_server.py")
SEVERAL = re.compile(r"^([2-9]|\d\d+)$")


def tiny(name: str, *flags: str) -> dict[str, Any]:
    """A real model server process (it answers chat) of 50 MB."""
    command = [sys.executable, TINY, "--port", "${PORT}", "--name", name, *flags]
    return {"backend": "process", "command": command, "memory": "50MB", "device": "cpu"}


CONFIG: dict[str, Any] = {
    "pool": {
        "strategy": "lru",
        "budgets": {"cpu": "10GB"},
        "probe": "system",
        "warm_budget": "2GB",
    },
    "health": {"interval": "0.2s", "thresholds": {"min_requests": 3}},
    "models": {
        "chatty": tiny("chatty"),
        "flaky": tiny("flaky", "--fail-requests", "1"),
        "gamma": {
            "backend": "fake",
            "memory": "1GB",
            "device": "cpu",
            "load_seconds": 0.1,
            "versions": {"v2": {"author": "bo"}},
        },
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


def chart(page: Page, name: str) -> Locator:
    return page.locator(f'figure[data-chart="{name}"]')


def version_card(page: Page, model_id: str) -> Locator:
    return page.locator(f'article.versioned[data-model="{model_id}"]')


def chat(server: Server, model: str, times: int) -> None:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    for _ in range(times):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def admin(server: Server, path: str, method: str = "GET", status: int = 200, **kw: Any) -> Any:
    answer = httpx.request(method, f"{server.url}/admin/{path}", timeout=30, **kw)
    assert answer.status_code == status, answer.text
    return answer.json()


def switch(server: Server, target: str, strategy: str, **settings: Any) -> str:
    """Starts a rollout of gamma; its operation id."""
    body = {"model": "gamma", "target_version": target, "strategy": strategy, "config": settings}
    return str(admin(server, "rollouts", "POST", status=202, json=body)["operation_id"])


def until_status(server: Server, operation_id: str, *statuses: str) -> None:
    deadline = time.monotonic() + 30
    while (op := admin(server, f"rollouts/{operation_id}"))["status"] not in statuses:
        assert time.monotonic() < deadline, op
        time.sleep(0.05)  # polling the API as an operator would


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
        # A fresh server: every panel says in words that there is nothing yet.
        expect(page.locator("#alerts-empty")).to_be_visible()
        expect(chart(page, "rps").locator("svg")).to_contain_text("No requests")
        expect(chart(page, "loads").locator("svg")).to_contain_text("No loads")
        expect(version_card(page, "gamma")).to_contain_text("No rollout running.")
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
        "pool": {**CONFIG["pool"], "strategy": "auto", "auto_options": {"interval": "0.3s"}},
        "models": {model: CONFIG["models"][model] for model in ("alpha", "beta")},
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


def test_the_charts_draw_the_pool_and_the_request_rate_moves_with_traffic(
    page: Page, server: Server
) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"{server.url}/ui")
    rates = chart(page, "rps")
    # Two samples of the status at least, and no traffic yet: nothing to draw.
    expect(rates).to_have_attribute("data-samples", SEVERAL)
    expect(rates.locator('path[data-series="chatty"]')).to_have_count(0)
    expect(rates.locator("svg")).to_contain_text("No requests")
    expect(chart(page, "memory").locator("svg")).to_have_count(2)  # cpu, and the warm tier
    expect(page.locator('figure[data-device="warm"]')).to_contain_text("Warm tier")

    chat(server, "chatty", 12)  # loads it, then twelve answers

    line = rates.locator('path[data-series="chatty"]')
    expect(line).to_have_count(1)
    assert float(line.get_attribute("data-peak") or 0) > 0
    assert (line.get_attribute("d") or "").count("L") >= 1, "a line, not one point"
    expect(rates.locator('.legend li[data-series="chatty"]')).to_be_visible()
    # The same traffic shows in the other charts: its memory on cpu, its load's time.
    cpu = page.locator('figure[data-chart="memory"][data-device="cpu"]')
    expect(cpu.locator('path[data-series="chatty"]')).to_have_count(1)
    expect(cpu.locator(".legend")).to_contain_text("chatty")
    expect(chart(page, "loads").locator('rect[data-series="chatty"]')).to_have_count(1)
    expect(rates.locator("svg")).to_have_attribute("aria-label", re.compile(r"chatty \d"))
    # Drawn by the page itself: nothing was fetched from anywhere but the server.
    assert asked
    assert [url for url in asked if not url.startswith(server.url + "/")] == []


def test_the_versions_panel_rolls_back_and_aborts_through_the_rollout_routes(
    page: Page, server: Server
) -> None:
    until_status(server, switch(server, "v2", "immediate"), "completed")
    page.goto(f"{server.url}/ui")
    card = version_card(page, "gamma")
    expect(card).to_contain_text("serving v2")
    expect(card.locator('tr[data-version="v2"]')).to_have_attribute("data-share", "1")
    expect(card.locator('tr[data-version="v1"]')).to_have_attribute("data-share", "0")
    expect(card.locator('tr[data-version="v2"]')).to_contain_text("by bo")
    expect(button(page, "Abort the rollout of gamma")).to_be_disabled()  # none running

    button(page, "Roll back gamma").click()  # undoes the switch: back to v1 at once

    expect(card).to_contain_text("serving v1")
    expect(card.locator('tr[data-version="v1"]')).to_have_attribute("data-share", "1")
    rolled_back = admin(server, "rollouts?model=gamma")["operations"][0]
    assert (rolled_back["source"], rolled_back["target"]) == ("v2", "v1")

    canary = switch(server, "v2", "canary", initial_percentage=25, period="10m")
    expect(card).to_have_attribute("data-rollout", "running")
    expect(card.locator('.steps li[aria-current="step"]')).to_have_text("25 %")
    expect(card.locator(".rollout")).to_contain_text("canary rollout v1 → v2")
    expect(card.locator('tr[data-version="v2"]')).to_have_attribute("data-share", "0.25")

    button(page, "Abort the rollout of gamma").click()

    expect(card).to_have_attribute("data-rollout", "none")
    expect(card.locator('tr[data-version="v1"]')).to_have_attribute("data-share", "1")
    assert admin(server, f"rollouts/{canary}")["status"] == "aborted"
    expect(page.locator("#notice")).to_be_hidden()


def test_an_active_alert_shows_with_its_model_and_metric(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/ui")
    history_shown(page)
    for _ in range(3):  # health.thresholds.min_requests: then it is judged
        with pytest.raises(openai.InternalServerError):
            chat(server, "flaky", 1)

    alert = page.locator('#alerts li[data-model="flaky"]')
    expect(alert).to_have_attribute("data-level", "critical")
    expect(alert).to_contain_text("error rate 100.0 %")
    expect(page.locator("#alert-count")).not_to_have_text("0")
    expect(page.locator("#alerts-empty")).to_be_hidden()


def test_a_model_with_copies_says_how_many_are_up_and_where(page: Page) -> None:
    config = {
        "pool": {"strategy": "lru", "budgets": {"cpu": "4GB"}, "probe": "static"},
        "models": {
            "duo": {"backend": "fake", "memory": "1GB", "device": "cpu", "replicas": 2},
        },
    }
    with running_server(config) as server:
        page.goto(f"{server.url}/ui")
        row = model_row(page, "duo")
        expect(row.locator(".copies")).to_have_text("0 of 2 copies")
        button(page, "Load duo").click()
        expect(row.locator(".copies")).to_have_text("2 of 2 copies")
        expect(row.locator("td").nth(2)).to_have_text("cpu, cpu")
