"""The OpenAI-compatible HTTP service: `create_app(settings, model)` builds the FastAPI app (the model, the
router graphs and their resources at start-up, the middleware, the routes of `app.api.routes`); `prunekit serve` runs
it under uvicorn.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from prunekit.app.api.admission import Admission
from prunekit.app.api.errors import install_error_handlers
from prunekit.app.api.limits import BodySizeLimit
from prunekit.app.api.middleware import CatchAll, HostGuard, RateLimit, RequestContext
from prunekit.app.api.routes import api_router
from prunekit.app.api.web import web_router
from prunekit.app.backends import build_chat_model
from prunekit.app.graphs.router import MODEL_ROUTES, RouterResources, build_router_graph
from prunekit.app.settings import Settings
from prunekit.app.threads import open_checkpointer
from prunekit.decoding import ChatModel

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, model: ChatModel | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a model handed in (an embedding application, the tests) serves every route as it is; a model the service
        # builds from the settings gets the SQL-tuned embedded model beside it for the SQL route
        given = getattr(app.state, "model", None) is not None
        if not given:
            app.state.model = await run_in_threadpool(build_chat_model, settings)
        resources = RouterResources.from_settings(settings, app.state.model, tuned_sql=not given)
        app.state.resources = resources
        try:
            with open_checkpointer(settings) as checkpointer:
                app.state.chat_graph = build_router_graph(resources)
                app.state.thread_graph = build_router_graph(resources, checkpointer)
                log.info("serving %s through backend %s", ", ".join(MODEL_ROUTES), app.state.model.name)
                yield
        finally:
            # Requests still running (a stream, a long generation) stop at their next step, so the model can close.
            app.state.admission.cancel_all("the server is shutting down")
            resources.close()

    app = FastAPI(title="prunekit", version="0.1.0", lifespan=lifespan)
    # Outermost last: every request gets an id and a log line, then the Host/Origin check, the rate limit, the body
    # limit.
    app.add_middleware(CatchAll)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute, api_keys=settings.api_keys)
    app.add_middleware(HostGuard, hosts=settings.host_allow_list(), origins=settings.allowed_origins)
    app.add_middleware(RequestContext)
    app.state.model = model
    app.state.settings = settings
    app.state.admission = Admission(
        settings.max_concurrent_requests, settings.max_waiting_requests, settings.queue_timeout_s
    )
    install_error_handlers(app)
    app.include_router(web_router())  # the chat page at /
    app.include_router(api_router)
    return app
