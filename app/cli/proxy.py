"""`prunekit proxy`: the pruning proxy in front of any OpenAI-compatible server."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from prunekit.app.cli.common import app
from prunekit.decoding.errors import InvalidRequestError

SHUTDOWN_GRACE_S = 5


@app.command()
def proxy(
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="the upstream's base URL, e.g. http://127.0.0.1:8080/v1")
    ] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default $PRUNEKIT_PROXY_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default 8100)")] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="auto (prune when it pays) | on | off; requests may override")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="pruning threshold (default: the proxy's 0.15)")
    ] = None,
) -> None:
    """Prune the context of OpenAI chat requests for their question, then forward them to --upstream.

    Every option also reads from PRUNEKIT_PROXY_* variables (PRUNEKIT_PROXY_UPSTREAM_KEY, _KEY_MODES, ...)."""
    import uvicorn

    from prunekit.app.proxy import create_proxy_app

    overrides = {"upstream": upstream, "host": host, "port": port, "mode": mode, "threshold": threshold}
    settings = _settings(**{k: v for k, v in overrides.items() if v is not None})
    uvicorn.run(create_proxy_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)  # fmt: skip


def _settings(**overrides: Any) -> Any:
    from prunekit.app.proxy import ProxySettings

    try:
        return ProxySettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise InvalidRequestError(f"invalid proxy setting: {problems}") from exc
