"""`prunekit serve` and `prunekit chat`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from prunekit.app.cli.common import (
    BackendOption,
    RepetitionPenaltyOption,
    app,
    load_model,
    settings_for,
    stderr,
    stdout,
)

if TYPE_CHECKING:
    from prunekit.app.settings import Settings
    from prunekit.decoding import ChatModel, GenerationParams

SHUTDOWN_GRACE_S = 5


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default $PRUNEKIT_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default $PRUNEKIT_PORT or 8000)")] = None,
    backend: BackendOption = None,
) -> None:
    """Run the OpenAI-compatible service."""
    import uvicorn

    from prunekit.app.api.service import create_app

    settings = settings_for(backend)
    if host:
        settings.host = host
    if port:
        settings.port = port
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish for a few seconds, then cancels them (their
    # work stops at its next step, `app.api.admission`): the server is gone within 10 s even under load.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


@app.command()
def chat(
    question: Annotated[str | None, typer.Argument(help="ask once and exit; omit for an interactive session")] = None,
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=8192)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    frequency_penalty: Annotated[
        float, typer.Option(min=-2.0, max=2.0, help="lower a token's logit per earlier use in the answer")
    ] = 0.0,
    presence_penalty: Annotated[
        float, typer.Option(min=-2.0, max=2.0, help="lower a token's logit once it was used in the answer")
    ] = 0.0,
    repetition_penalty: RepetitionPenaltyOption = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="a format the answer must follow, e.g. 'pivot:<free>The answer is <int>'"),
    ] = None,
    format_method: Annotated[str, typer.Option("--format-method", help="decog | decog_pruned | hard_mask")] = "decog",
    backend: BackendOption = None,
) -> None:
    """Chat with the configured model (streams the answer)."""
    settings = settings_for(backend)
    params = _chat_params(settings, repetition_penalty, format, format_method, max_tokens=max_tokens,
                          temperature=temperature, frequency_penalty=frequency_penalty,
                          presence_penalty=presence_penalty)  # fmt: skip
    model = load_model(settings)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    if question is not None:
        if not question.strip():
            raise typer.BadParameter("the question is empty", param_hint="QUESTION")
        _ask(model, history, params, question)
        return
    stderr.print("interactive chat: empty line or Ctrl-D to quit")
    while True:
        try:
            text = input("> ")
        except EOFError:
            break
        if not text.strip():
            break
        _ask(model, history, params, text)


def _chat_params(
    settings: Settings,
    repetition_penalty: float | None,
    format_spec: str | None,
    format_method: str,
    *,
    max_tokens: int,
    temperature: float,
    frequency_penalty: float,
    presence_penalty: float,
) -> GenerationParams:
    """The generation parameters of a chat, with the loop guard as chat runs it; a bad format spec fails here,
    before the model loads."""
    from prunekit.app.backends import chat_repetition_penalty
    from prunekit.decoding import GenerationParams

    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=temperature,
        frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty,
        repetition_penalty=chat_repetition_penalty(settings, repetition_penalty, format_spec),
        format=format_spec,
        format_method=format_method,
    )
    if format_spec is not None:
        from prunekit.decoding.decog import parse_format

        parse_format(format_spec)
    return params


def _ask(model: ChatModel, history: list[dict[str, str]], params: GenerationParams, text: str) -> None:
    """Stream the answer to `text` to stdout; both join `history`."""
    history.append({"role": "user", "content": text})
    parts = []
    for chunk in model.stream(history, params):
        parts.append(chunk.text)
        stdout.print(chunk.text, end="", markup=False, highlight=False)
    stdout.print()
    history.append({"role": "assistant", "content": "".join(parts)})
