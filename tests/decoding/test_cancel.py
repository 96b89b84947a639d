"""Cancel tokens: they reach the threads a request's work runs in, and stop the embedded model within a step."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from prunekit.decoding import GenerationParams
from prunekit.decoding.cancel import CancelToken, RequestCancelledError, cancellable, check_cancelled, current_token


def test_no_token_outside_a_request_never_cancels():
    assert current_token() is None
    check_cancelled()


def test_callbacks_run_once_at_cancel_and_at_once_when_late():
    token = CancelToken()
    calls: list[str] = []
    forget = token.on_cancel(lambda: calls.append("a"))
    token.on_cancel(lambda: calls.append("b"))
    forget()
    token.cancel("first")
    token.cancel("second")  # a second cancel changes nothing
    assert calls == ["b"] and token.reason == "first"
    token.on_cancel(lambda: calls.append("late"))
    assert calls == ["b", "late"]


def test_the_token_reaches_a_thread_started_with_a_copy_of_the_context():
    token = CancelToken()
    seen: list[CancelToken | None] = []
    with cancellable(token), ThreadPoolExecutor(1) as pool:
        pool.submit(copy_context().run, lambda: seen.append(current_token())).result()
    assert seen == [token]
    assert current_token() is None  # the block restores what was there


class _State(TypedDict, total=False):
    seen: list[bool]


def test_langgraph_parallel_nodes_see_the_token_and_stop():
    """Two nodes of one superstep run in LangGraph's worker threads: both find the request's token."""
    started = threading.Barrier(3)

    def node(_: _State) -> dict:
        started.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            check_cancelled()
            time.sleep(0.01)
        return {}

    graph = StateGraph(_State)
    graph.add_node("a", node)
    graph.add_node("b", node)
    graph.add_edge(START, "a")
    graph.add_edge(START, "b")
    graph.add_edge(["a", "b"], END)
    compiled = graph.compile()
    token = CancelToken()
    errors: list[BaseException] = []

    def run() -> None:
        with cancellable(token):
            try:
                compiled.invoke({})
            except BaseException as exc:
                errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    started.wait(timeout=5)
    cancelled_at = time.monotonic()
    token.cancel("test")
    worker.join(timeout=5)
    assert not worker.is_alive() and time.monotonic() - cancelled_at < 1.0
    assert errors and isinstance(errors[0], RequestCancelledError)


@pytest.mark.slow
def test_the_embedded_model_stops_a_cancelled_request_within_a_step(embedded_model):
    """A long answer of the real model, cancelled from another thread, ends at once with the cancel error, and the
    model serves the next request."""
    embedded_model.chat([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=2))  # first use builds a lot
    token = CancelToken()
    outcome: list[BaseException | str] = []
    params = GenerationParams(max_tokens=1500)

    def run() -> None:
        with cancellable(token):
            try:
                outcome.append(
                    embedded_model.chat([{"role": "user", "content": "Tell a very long story."}], params).text
                )
            except RequestCancelledError as exc:
                outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    cancelled_at = time.monotonic()
    token.cancel("the client disconnected")
    worker.join(timeout=10)
    assert time.monotonic() - cancelled_at < 1.0
    assert isinstance(outcome[0], RequestCancelledError) and "client disconnected" in str(outcome[0])
    assert embedded_model.chat([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=4)).text
