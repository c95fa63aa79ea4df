"""The pool on Ray Serve: the pool deployment, the OpenAI ingress, and ``serve_on_ray``.

Two deployments make the application:

* ``ModelPool``: ``cluster.replicas`` replicas of ``PoolReplica`` (one pool each, over
  the resources ``cluster`` asks Ray for), routed by ``ModelPoolRouter``;
* ``OpenAI``: the ingress (FastAPI on Ray Serve's HTTP proxy). ``/v1/...`` goes to a
  pool replica through the deployment's handle, with the request's model as its
  multiplexed model id, which is what the router ranks by; the replica's answer
  (streams included) comes back part by part. ``/admin/status`` shows every replica
  (its node, devices' memory, models and queue, as last reported: at most
  ``cluster.stats_period`` old). ``/v1`` requests go on with their headers, and the
  replica's own server checks their keys and limits (``http.security.Guard``);
  ``/admin/status`` is answered here, so its admin key is checked here. Every other
  ``/admin`` route (and ``/admin/status`` in full) acts on one replica's own pool:
  ``?replica=<id>`` names it, and the router sends the call there only.

When no replica can take a request the ingress answers, never hangs and never 500s: a
model no replica has (not in the config under any name) is a 404 in the server's own
shape, without a replica; a request no replica took within ``cluster.queue_timeout``
(every one at ``max_ongoing_requests``, or none up) or that Ray refused is a 503 with
Retry-After.
"""

import asyncio
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from modelpool.config import ClusterSettings, Config
from modelpool.errors import UnknownModel
from modelpool.http.errors import SERVER_ERROR, error_response, from_pool_error
from modelpool.ray import admin_key
from modelpool.ray.asgi import HttpCall, HttpHead
from modelpool.ray.registry import live_routers
from modelpool.ray.replica import SUMMARY_KEY, ConfigText, PoolReplica
from modelpool.ray.router import ModelPoolRouter, target

log = logging.getLogger("modelpool.ray")

APP_NAME = "modelpool"
POOL_DEPLOYMENT = "ModelPool"
INGRESS_DEPLOYMENT = "OpenAI"
STATUS_WAIT = 5.0
"""Seconds ``/admin/status`` waits for the first reports of a router just made."""
RETRY_AFTER = 1
"""Seconds a client is told to wait before it retries a request no replica took."""
REPLICA_PARAM = "replica"
"""The query parameter that names the replica an ``/admin`` route acts on."""
INGRESS_HEADROOM = 64
"""Requests the ingress takes beyond what every pool replica together takes: room for
``/admin/status`` and for the 503s it answers while every replica is full."""


class PoolDeployment(PoolReplica):
    """``PoolReplica`` as a Ray Serve deployment: named by its replica tag, stopped
    with the replica."""

    async def __init__(self, config: ConfigText) -> None:  # type: ignore[misc]
        await super().__init__(config, serve.get_replica_context().replica_tag)
        self.ray_node = ray.get_runtime_context().get_node_id()
        """The Ray node it runs on (several may share a host name)."""

    async def status(self) -> dict[str, Any]:
        return {**await super().status(), "ray_node": self.ray_node}

    async def record_routing_stats(self) -> dict[str, Any]:
        report = await super().record_routing_stats()
        report[SUMMARY_KEY]["ray_node"] = self.ray_node
        return report

    async def __del__(self) -> None:
        await self.stop()


def model_names(config: Config) -> dict[str, str]:
    """Every name a request may give (ids and aliases) and the model id it means: the
    router ranks replicas for the id, whatever name the client used."""
    names = {}
    for model_id, spec in config.models.items():
        names[model_id] = model_id
        for alias in spec.aliases:
            names.setdefault(alias, model_id)
    return names


async def _body(parts: DeploymentResponseGenerator[Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in parts:
            yield chunk
    finally:
        parts.cancel()  # type: ignore[no-untyped-call]  # the client left: the replica's ends


async def taken(parts: DeploymentResponseGenerator[Any]) -> None:
    """Until a replica has taken the request (Ray's router found one with room); what
    Ray raises when it will not (back-pressure). Ray 2.60 (pinned by the ``ray``
    extra) keeps this step behind a private method; the ingress's 503 tests cover it."""
    await parts._fetch_future_result_async()


def unavailable(message: str) -> Response:
    """503 with Retry-After: no replica can take the request now."""
    return error_response(
        503, message, kind=SERVER_ERROR, code="replica_unavailable", retry_after=RETRY_AFTER
    )


# ``serve.ingress`` copies the app when it decorates: everything its routes use must
# be defined above the class.
ingress_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name=INGRESS_DEPLOYMENT)
@serve.ingress(ingress_app)
class OpenAIIngress:
    """The OpenAI-compatible front of the pool replicas."""

    def __init__(
        self,
        pool: DeploymentHandle[Any],
        names: dict[str, str],
        admin_keys: list[str],
        queue_timeout: float = 30.0,
    ) -> None:
        self.pool = pool
        self.names = names
        self.admin_keys = [key.encode() for key in admin_keys]
        self.queue_timeout = queue_timeout

    @ingress_app.get("/admin/status")
    async def cluster_status(self, request: Request) -> Response:
        refused = admin_key.refusal(request.headers.raw, self.admin_keys)
        if refused is not None:
            return refused
        if REPLICA_PARAM in request.query_params:  # one replica's own, in full
            return await self.one_replica(request)
        return JSONResponse({"replicas": await self.replica_summaries()})

    @ingress_app.api_route("/admin/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def admin(self, request: Request) -> Response:
        refused = admin_key.refusal(request.headers.raw, self.admin_keys)
        if refused is not None:
            return refused
        return await self.one_replica(request)

    @ingress_app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def v1(self, request: Request) -> Response:
        body = await request.body()
        model_id = self.model_of(body) if request.method == "POST" else ""
        if model_id and not self.known(model_id):
            error = UnknownModel(model_id, sorted(set(self.names.values())))
            return from_pool_error(error).response()
        call = HttpCall(
            request.method,
            request.url.path,
            request.url.query.encode(),
            list(request.headers.raw),
            body,
        )
        return await self.forward(call, model_id)

    async def one_replica(self, request: Request) -> Response:
        """An ``/admin`` route of one replica's own server, named by ``?replica=``
        (the rest of the query goes along): each replica has its own pool."""
        query = parse_qsl(request.url.query, keep_blank_values=True)
        wanted = [value for key, value in query if key == REPLICA_PARAM]
        known = sorted(str(s["replica"]) for s in await self.replica_summaries())
        where = f"{request.method} {request.url.path}"
        if len(wanted) != 1:
            return error_response(
                400,
                f"{where} acts on one replica's pool: add ?{REPLICA_PARAM}=<id>, one of "
                f"{', '.join(known) or '(none reporting yet)'} (GET /admin/status lists them)",
                param=REPLICA_PARAM,
            )
        if wanted[0] not in known:
            return error_response(
                404,
                f"No pool replica {wanted[0]!r}; the replicas: {', '.join(known) or 'none yet'}",
                code="replica_not_found",
                param=REPLICA_PARAM,
            )
        rest = urlencode([(key, value) for key, value in query if key != REPLICA_PARAM])
        call = HttpCall(
            request.method,
            request.url.path,
            rest.encode(),
            list(request.headers.raw),
            await request.body(),
        )
        return await self.forward(call, target(wanted[0]))

    async def forward(self, call: HttpCall, multiplexed_id: str) -> Response:
        """``call`` to the pool replica the router picks for ``multiplexed_id`` (a
        model id, ``router.target``'s replica, or "" for any), its answer streamed back;
        a 503 when none takes it in ``queue_timeout``."""
        handle = self.pool.options(stream=True, multiplexed_model_id=multiplexed_id)
        parts = handle.http.remote(call)
        assert isinstance(parts, DeploymentResponseGenerator)  # stream=True
        try:
            async with asyncio.timeout(self.queue_timeout):
                await taken(parts)
        except TimeoutError:
            parts.cancel()  # type: ignore[no-untyped-call]  # not to be sent on later
            log.warning("%s %s: no pool replica took it in %g s", call.method,
                        call.path, self.queue_timeout)  # fmt: skip
            return unavailable(
                f"No pool replica took the request within {self.queue_timeout:g} s "
                "(every replica busy, or none up); retry shortly"
            )
        except Exception:  # Ray's: it refused the request (back-pressure, no deployment)
            log.exception("%s %s: no pool replica could take it", call.method, call.path)
            return unavailable("No pool replica could take the request; retry shortly")
        try:
            head = await parts.__anext__()
        except StopAsyncIteration:
            return error_response(502, "The pool replica sent no answer", kind=SERVER_ERROR)
        except Exception:  # Ray's: the replica died before it answered
            log.exception("%s %s: no answer from a pool replica", call.method, call.path)
            return unavailable("The pool replica ended before it answered; retry shortly")
        assert isinstance(head, HttpHead)
        response = StreamingResponse(_body(parts), status_code=head.status)
        response.raw_headers = [(k, v) for k, v in head.headers if k.lower() != b"content-length"]
        return response

    def known(self, model_id: str) -> bool:
        """Whether some replica may serve ``model_id``: a configured name, or one of its
        versions (``chat@v2``: the replica says whether that version exists)."""
        return model_id in self.names or model_id.partition("@")[0] in self.names

    def model_of(self, body: bytes) -> str:
        """The model id a request body names (its alias resolved), else "" (the
        replica then answers the error ``modelpool serve`` would)."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return ""
        name = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(name, str):
            return ""
        return self.names.get(name, name)

    async def replica_summaries(self) -> list[dict[str, Any]]:
        """What each pool replica last reported, by replica id."""
        deadline = time.monotonic() + STATUS_WAIT
        poke: asyncio.Future[Any] | None = None
        try:
            while True:
                routers = list(live_routers())
                reports = [r for router in routers for r in router.reports()]
                summaries = [r[SUMMARY_KEY] for r in reports if SUMMARY_KEY in r]
                if summaries or time.monotonic() > deadline:
                    return sorted(summaries, key=lambda s: str(s["replica"]))
                if not routers and poke is None:
                    # No router is made before the first call through the handle: one
                    # call makes it (Ray sends it once awaited). Awaited aside: every
                    # replica may be busy (it would wait for a slot), and the reports
                    # are what is wanted.
                    poke = asyncio.ensure_future(self.pool.status.remote())
                await asyncio.sleep(0.1)
        finally:
            if poke is not None:
                poke.cancel()  # done, or no longer needed


def build_app(config: ConfigText, loaded: Config | None = None) -> Application:
    """The application: the ingress bound to ``cluster.replicas`` pool replicas."""
    loaded = loaded if loaded is not None else config.load()
    cluster = loaded.cluster
    pool = cast(Deployment, serve.deployment(PoolDeployment)).options(
        name=POOL_DEPLOYMENT,
        num_replicas=cluster.replicas,
        ray_actor_options=cluster.actor_options(),
        max_ongoing_requests=cluster.max_ongoing_requests,
        request_router_config=router_config(cluster),
    )
    ingress = cast(Deployment, OpenAIIngress).options(
        # It holds each request while a replica serves it: never the narrower of the two.
        max_ongoing_requests=cluster.max_ongoing_requests * cluster.replicas + INGRESS_HEADROOM,
        ray_actor_options={"num_cpus": 0},  # it only forwards: the CPUs are the pools'
    )
    server = loaded.server
    admin_keys = server.admin_keys or server.api_keys
    app: Application = ingress.bind(
        pool.bind(config), model_names(loaded), admin_keys, cluster.queue_timeout
    )
    return app


def app_builder(args: dict[str, str]) -> Application:
    """The application for Ray's own tools: ``serve run
    modelpool.ray.deployment:app_builder config=modelpool.yaml``, or a KubeRay
    ``RayService``'s ``import_path`` with ``args: {config: /etc/modelpool.yaml}``
    (no ``config``: the embedded default)."""
    return build_app(ConfigText.of_file(args.get("config")))


def router_config(cluster: ClusterSettings) -> RequestRouterConfig:
    fields: dict[str, Any] = {  # Ray's pydantic-1 style model types its fields loosely
        "request_router_class": ModelPoolRouter,
        "request_router_kwargs": {"hint_seconds": cluster.route_hint_seconds},
        "request_routing_stats_period_s": cluster.stats_period,
        "request_routing_stats_timeout_s": max(1.0, 3 * cluster.stats_period),
    }
    return RequestRouterConfig(**fields)


def deploy(
    config: ConfigText,
    *,
    address: str | None = None,
    host: str | None = None,
    port: int | None = None,
    proxy_location: str | None = None,
) -> DeploymentHandle[Any]:
    """Deploy the application on the cluster at ``address`` (``auto``: the running
    one; ``ray://host:10001``: a remote one; None: a local Ray started here, unless
    this process is connected already). Ray Serve's HTTP proxy listens on ``host`` and
    ``port`` (default: the config's ``cluster.http_host`` and ``http_port``), on every
    node unless ``proxy_location`` says otherwise (``HeadOnly``: several Ray nodes on
    one host cannot all listen on one port)."""
    loaded = config.load()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    cluster = loaded.cluster
    listen = {
        "host": cluster.http_host if host is None else host,
        "port": cluster.http_port if port is None else port,
    }
    serve.start(http_options=listen, proxy_location=proxy_location)
    app = build_app(config, loaded)
    handle: DeploymentHandle[Any] = serve.run(app, name=APP_NAME, route_prefix="/")
    log.info(
        "serving on Ray at http://%s:%d (%d pool replicas)",
        listen["host"],
        listen["port"],
        cluster.replicas,
    )
    return handle


def serve_on_ray(
    config: ConfigText,
    *,
    address: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """``modelpool serve --ray``: deploy, then serve until Ctrl-C (or SIGTERM), then
    delete the application: its replicas stop their pools, ending their model servers."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    # Ctrl-C or SIGTERM from here on, even while the deployment is still settling (its
    # HTTP proxy may answer before ``serve.run`` returns): stop once deployed, cleanly.
    handlers = {
        number: signal.signal(number, lambda *_: stop.set())
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        deploy(config, address=address, host=host, port=port)
        while not stop.wait(1.0):
            pass
    finally:
        for number, previous in handlers.items():
            signal.signal(number, previous)
        log.info("stopping: deleting the application (every pool replica stops)")
        serve.delete(APP_NAME)
