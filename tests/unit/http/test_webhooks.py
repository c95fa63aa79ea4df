"""Alert webhooks, without a network: the config, the payload, the retry schedule and the
bounded queue.

Senders run against ``FakeTransport`` (a receiver in memory) with a manual clock whose
fake sleep advances it, so a schedule of minutes takes no time and its waits are read
back exactly.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from textwrap import dedent

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelpool.config import AlertSettings, Config, WebhookSettings
from modelpool.core.testing import ManualClock
from modelpool.errors import ConfigError, ConfigIssue
from modelpool.http.metrics import ServerMetrics
from modelpool.http.webhooks import (
    FakeTransport,
    Outcome,
    Webhooks,
    WebhookSender,
    retry_delays,
)
from modelpool.monitor.alert_payload import alert_payload, alert_text, wanted
from modelpool.monitor.health import Alert, HealthMonitor, Level, Thresholds

WALL = 1_796_000_000.0  # 2026-11-30T00:53:20Z: a wall time the payload must show as ISO 8601
SECRET = "xoxb-secret-token"


def alert(level: Level = Level.CRITICAL, *, resolved: bool = False, **fields: object) -> Alert:
    values: dict[str, object] = {
        "model_id": "smollm2",
        "version": "v2",
        "level": level,
        "metric": "error_rate",
        "value": 0.31,
        "threshold": 0.2,
        "at": 12.5,
        "resolved": resolved,
    }
    values.update(fields)
    return Alert(**values)  # type: ignore[arg-type]


def body(raised: Alert | None = None) -> bytes:
    return json.dumps(alert_payload(raised or alert(), WALL)).encode()


def hook(**fields: object) -> WebhookSettings:
    return WebhookSettings.model_validate({"url": "https://hooks.example:8443/T/B/x", **fields})


class FakeSleep:
    """asyncio.sleep on a manual clock: records each wait and moves the clock by it."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)  # a turn of the loop, as a real sleep would give


class Outcomes(list[tuple[str, Outcome]]):
    """Records each ``(host, outcome)`` a sender reports; ``until`` waits for more."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, host: str, outcome: Outcome) -> None:
        self.append((host, outcome))
        self.changed.set()

    async def until(self, made: WebhookSender, count: int) -> None:
        """Run ``made`` until ``count`` outcomes are in (with a deadline)."""
        running = asyncio.create_task(made.run())
        try:
            async with asyncio.timeout(5):
                while len(self) < count:
                    self.changed.clear()
                    await self.changed.wait()
        finally:
            running.cancel()


def sender(
    transport: FakeTransport, clock: ManualClock, sleep: FakeSleep, **fields: object
) -> tuple[WebhookSender, Outcomes]:
    outcomes = Outcomes()
    made = WebhookSender(hook(**fields), transport, on_outcome=outcomes, wall=clock, sleep=sleep)
    return made, outcomes


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(WALL)


@pytest.fixture
def sleep(clock: ManualClock) -> FakeSleep:
    return FakeSleep(clock)


# --- config -------------------------------------------------------------------------


def config_issues(text: str, environ: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        Config.from_yaml(dedent(text), "pool.yaml", environ)
    return caught.value.issues


def test_the_alerts_section_defaults_and_reads_secrets_from_the_environment() -> None:
    assert Config().alerts == AlertSettings(webhooks=[])
    config = Config.from_yaml(
        dedent("""\
            alerts:
              webhooks:
                - url: ${SLACK_URL}
                - url: http://127.0.0.1:9000/hook
                  headers: {Authorization: "Bearer ${TOKEN}", X-Team: ops}
                  levels: [critical]
                  timeout: 2s
        """),
        environ={"SLACK_URL": "https://hooks.slack.com/services/T0/B0/abc", "TOKEN": SECRET},
    )
    slack, own = config.alerts.webhooks
    assert slack.url.get_secret_value() == "https://hooks.slack.com/services/T0/B0/abc"
    assert slack.levels == ("warning", "critical")
    assert (slack.host, own.host) == ("hooks.slack.com", "127.0.0.1:9000")
    assert own.headers["Authorization"].get_secret_value() == f"Bearer {SECRET}"
    assert own.headers["X-Team"].get_secret_value() == "ops"
    assert (own.levels, own.timeout) == (("critical",), 2.0)
    # Secrets never show in a repr or a JSON dump of the config.
    shown = repr(config) + json.dumps(config.model_dump(mode="json"))
    assert SECRET not in shown
    assert "services/T0" not in shown


def test_an_unset_variable_a_bad_url_and_a_bad_level_are_config_problems() -> None:
    issues = config_issues(
        """\
        alerts:
          webhooks:
            - url: https://ok.example/hook
              headers: {Authorization: "Bearer ${NOT_SET}"}
            - url: ftp://files.example/drop
            - url: ${HOOK_URL}
            - url: https://ok.example/hook
              levels: [ok]
              queue: 0
            - url: https://ok.example/hook
              timout: 3
        """,
        environ={"HOOK_URL": "hooks.example/no-scheme"},
    )
    found = {issue.path: issue for issue in issues}
    header = found["alerts.webhooks.0.headers"]
    assert "header 'Authorization': ${NOT_SET} is not set in the environment" in header.message
    assert header.line == 4
    assert "expected an http:// or https:// URL, got scheme 'ftp'" in (
        found["alerts.webhooks.1.url"].message
    )
    # A URL from the environment is not repeated: it may be a secret.
    no_scheme = found["alerts.webhooks.2.url"].message
    assert "got no scheme" in no_scheme
    assert "hooks.example" not in no_scheme
    assert "'warning' or 'critical'" in found["alerts.webhooks.3.levels.0"].message
    assert "alerts.webhooks.3.queue" in found
    assert "did you mean 'timeout'" in found["alerts.webhooks.4.timout"].message


def test_a_config_read_with_no_environment_cannot_resolve_a_reference() -> None:
    issues = config_issues("alerts: {webhooks: [{url: 'https://x.example/${PATH_PART}'}]}")
    assert [issue.path for issue in issues] == ["alerts.webhooks.0.url"]
    assert "${PATH_PART} is not set" in issues[0].message


# --- payload and text ---------------------------------------------------------------


def test_a_raised_alert_as_text_and_payload() -> None:
    raised = alert()
    assert alert_text(raised) == "CRITICAL: smollm2@v2 error rate 0.31 >= 0.20 (raised)"
    assert alert_payload(raised, WALL) == {
        "text": "CRITICAL: smollm2@v2 error rate 0.31 >= 0.20 (raised)",
        "source": "modelpool",
        "status": "raised",
        "model_id": "smollm2",
        "version": "v2",
        "level": "critical",
        "metric": "error_rate",
        "value": 0.31,
        "threshold": 0.2,
        "resolved": False,
        "at": "2026-11-30T00:53:20Z",
    }


def test_a_resolved_alert_and_a_latency_alert_without_a_version() -> None:
    resolved = alert(Level.WARNING, resolved=True, value=0.02, threshold=0.05)
    assert alert_text(resolved) == "WARNING: smollm2@v2 error rate 0.02, threshold 0.05 (resolved)"
    payload = alert_payload(resolved, WALL)
    assert (payload["status"], payload["resolved"], payload["level"]) == (
        "resolved",
        True,
        "warning",
    )
    slow = alert(Level.WARNING, version=None, metric="p95", value=2.314, threshold=2.0)
    assert alert_text(slow) == "WARNING: smollm2 p95 latency 2.31s >= 2.00s (raised)"
    assert alert_payload(slow, WALL)["version"] is None


def test_levels_filter_raised_and_resolved_alike() -> None:
    critical_only = ("critical",)
    assert wanted(alert(Level.CRITICAL), critical_only)
    assert wanted(alert(Level.CRITICAL, resolved=True), critical_only)
    assert not wanted(alert(Level.WARNING), critical_only)
    assert not wanted(alert(Level.WARNING, resolved=True), critical_only)
    assert wanted(alert(Level.WARNING), ("warning", "critical"))


# --- delivery -----------------------------------------------------------------------


def test_the_retry_schedule_doubles_up_to_its_cap() -> None:
    assert retry_delays(1, 1.0, 60.0) == []
    assert retry_delays(4, 1.0, 60.0) == [1.0, 2.0, 4.0]
    assert retry_delays(6, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_delivery_posts_the_payload_with_its_headers(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    transport = FakeTransport(answers=[204])
    made, outcomes = sender(transport, clock, sleep, headers={"Authorization": "Bearer t"})
    made(alert())
    assert made.queued == 1
    await outcomes.until(made, 1)
    [(url, posted, headers)] = transport.posts
    assert url == "https://hooks.example:8443/T/B/x"
    assert posted == alert_payload(alert(), WALL)
    assert headers == {"Authorization": "Bearer t"}
    assert outcomes == [("hooks.example:8443", "sent")]
    assert sleep.waits == []


async def test_failures_are_retried_on_the_schedule_then_given_up(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    transport = FakeTransport(answers=[503, ConnectionResetError("to https://secret"), 500])
    made, outcomes = sender(transport, clock, sleep, attempts=4, backoff="2s", max_backoff="5s")
    assert await made.deliver(body()) == "failed"
    assert len(transport.posts) == 4
    assert sleep.waits == [2.0, 4.0, 5.0]
    assert clock() == WALL + 11.0
    assert outcomes == [("hooks.example:8443", "failed")]


async def test_a_retry_that_succeeds_and_a_refusal_that_is_not_retried(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    flaky = FakeTransport(answers=[429, 200])
    made, _ = sender(flaky, clock, sleep)
    assert await made.deliver(b"{}") == "sent"
    assert (len(flaky.posts), sleep.waits) == (2, [1.0])
    refused = FakeTransport(answers=[400])
    made, outcomes = sender(refused, clock, sleep)
    assert await made.deliver(b"{}") == "failed"
    assert len(refused.posts) == 1  # the same payload would be refused again
    assert outcomes == [("hooks.example:8443", "failed")]


async def test_a_receiver_that_never_answers_is_cut_off_after_the_timeout(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    hung = FakeTransport(hang=True)
    made, outcomes = sender(hung, clock, sleep, attempts=2, timeout=0.01)
    assert await made.deliver(b"{}") == "failed"
    assert len(hung.posts) == 2
    assert hung.in_flight == 0
    assert outcomes == [("hooks.example:8443", "failed")]


async def test_the_queue_is_bounded_and_drops_the_oldest(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    transport = FakeTransport()
    made, outcomes = sender(transport, clock, sleep, queue=2)
    for value in (0.3, 0.4, 0.5):
        made(alert(value=value))
    assert made.queued == 2
    assert outcomes == [("hooks.example:8443", "dropped")]
    await outcomes.until(made, 3)
    assert [posted["value"] for _, posted, _ in transport.posts] == [0.4, 0.5]


async def test_a_sender_ignores_levels_it_does_not_take(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    made, _ = sender(FakeTransport(), clock, sleep, levels=["critical"])
    made(alert(Level.WARNING))
    made(alert(Level.WARNING, resolved=True))
    assert made.queued == 0
    made(alert(Level.CRITICAL, resolved=True))
    assert made.queued == 1


@pytest.fixture
def hung() -> FakeTransport:
    return FakeTransport(hang=True)


@pytest.fixture
async def hung_webhooks(
    hung: FakeTransport, clock: ManualClock, sleep: FakeSleep
) -> AsyncIterator[Webhooks]:
    settings = AlertSettings(webhooks=[hook(queue=3, attempts=2, timeout=30)])
    webhooks = Webhooks(settings, transport=hung, wall=clock, sleep=sleep)
    yield webhooks
    await webhooks.stop()


async def test_a_hung_receiver_holds_one_post_and_a_bounded_queue(
    hung_webhooks: Webhooks, hung: FakeTransport, clock: ManualClock
) -> None:
    monitor = HealthMonitor(clock, window=60, thresholds=Thresholds(min_requests=1))
    hung_webhooks.start(monitor)
    [made] = hung_webhooks.senders
    transport = hung
    monitor.record("m", "v2", 0.1, ok=False)  # critical: raised
    for _ in range(3):
        await asyncio.sleep(0)  # turns of the loop: the sender takes it, and hangs on it
    assert (len(transport.posts), made.queued) == (1, 0)
    for n in range(1, 20):  # ok, critical, ok...: each record changes the level
        clock.advance(61)
        monitor.record("m", "v2", 0.1, ok=n % 2 == 1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.most_in_flight == 1
    assert len(transport.posts) == 1
    assert made.queued == 3
    assert made.counts == {"sent": 0, "failed": 0, "dropped": 19 - 3}


async def test_stop_cuts_off_a_post_and_drops_what_waits(
    hung_webhooks: Webhooks, hung: FakeTransport, clock: ManualClock
) -> None:
    monitor = HealthMonitor(clock, window=60, thresholds=Thresholds(min_requests=1))
    hung_webhooks.start(monitor)
    [made] = hung_webhooks.senders
    made(alert())
    made(alert(resolved=True))
    await asyncio.sleep(0)
    assert made.queued == 1
    await hung_webhooks.stop()
    assert made.counts == {"sent": 0, "failed": 0, "dropped": 1}
    assert hung.closed
    assert hung.in_flight == 0
    made(alert())  # heard after the stop: ignored
    assert made.queued == 0


async def test_an_alert_from_another_thread_reaches_the_senders_loop(
    clock: ManualClock, sleep: FakeSleep
) -> None:
    transport = FakeTransport()
    delivered: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    made = WebhookSender(
        hook(),
        transport,
        on_outcome=lambda host, outcome: delivered.set_result(outcome),
        wall=clock,
        sleep=sleep,
    )
    running = asyncio.create_task(made.run())
    await asyncio.sleep(0)  # the task starts and learns its loop
    thread = threading.Thread(target=made, args=(alert(),))
    thread.start()
    thread.join()
    try:
        assert await asyncio.wait_for(delivered, 5) == "sent"
    finally:
        running.cancel()
    assert len(transport.posts) == 1


def test_the_counter_is_labelled_by_host_and_outcome_only() -> None:
    metrics = ServerMetrics()
    metrics.add_webhooks(["hooks.slack.com"])
    metrics.observe_webhook("hooks.slack.com", "sent")
    metrics.observe_webhook("hooks.slack.com", "dropped")
    status = {
        "model_resources": {},
        "memory_info": {},
        "warm_memory": {"budget": 0, "committed": 0, "reserved": 0},
        "queue": {"waiting": 0, "max": 1},
    }
    samples = {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics.render(status).decode())
        if family.name == "modelpool_webhook_deliveries"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert samples == {"sent": 1.0, "failed": 0.0, "dropped": 1.0}
