"""The web chat page in headless Chromium, driven over the Chrome DevTools Protocol.

No browser-automation package: Chromium's own DevTools websocket is enough (the `websockets` client).
One test runs the page against the real service on the embedded model; one runs the RAG, agents and SQL routes
of the real service (real store, context pruner, graph pruner and SQLite; a scripted LLM, for speed) and checks
what the page draws of their pruning; one runs it against a scripted server that emits every part of the stream
contract (progress, citations, savings, usage, in-band and HTTP errors, markup in the answer and the details)
and records what the page sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from prunekit.app.api.web import web_router
from tests.conftest import SERVICE_KEY, LiveServer, skip_or_fail

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """PRUNEKIT_CHROMIUM, else the first Chromium-family browser on PATH."""
    given = os.environ.get("PRUNEKIT_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class Page:
    """One browser tab over CDP: commands by id, events kept for the console-error check."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        status = self.evaluate("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {expression!r}; the page says {status!r}")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && document.body.dataset.state !== 'loading'")

    def type_into(self, selector: str, text: str) -> None:
        """Focus and type as a user would (input events fire), replacing what was there."""
        self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = ''; e.focus(); }})()"
        )
        self.send("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = {json.dumps(value)};"
            " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def console_errors(self, allowed_network: tuple[str, ...] = ()) -> list[str]:
        """JS exceptions, console.error calls and browser error logs (CSP, failed loads) seen so far.

        `allowed_network`: failed loads the test provoked on purpose, as 'STATUS PATH' fragments.
        """
        try:  # collect what arrived since the last command
            while True:
                self.events.append(json.loads(self.socket.recv(timeout=0.2)))
        except TimeoutError:
            pass
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                text = f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                if entry.get("source") == "network" and any(
                    f"status of {a.split()[0]}" in text and a.split()[1] in text for a in allowed_network
                ):
                    continue
                errors.append(text)
        return errors


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with one tab; skipped without a browser (a failure under CI=true)."""
    binary = find_chromium()
    if binary is None:
        skip_or_fail(f"no Chromium found (tried {', '.join(BROWSERS)}, PRUNEKIT_CHROMIUM): apt-get install chromium")
    try:
        from websockets.sync.client import connect
    except ImportError:
        skip_or_fail("the 'websockets' package is missing (pip install websockets)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "about:blank",
    ]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, text=True
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"Chromium did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        tabs = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        tab = next(t for t in tabs if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as socket:
            page = Page(socket)
            for domain in ("Page", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            yield page
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the group this fixture started: Chromium and its helpers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture()
def page(browser):
    """The shared tab, on a clean origin state: no saved key or model, no events from earlier tests."""
    browser.send("Page.navigate", url="about:blank")
    browser.events.clear()
    return browser


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path)
    if target := os.environ.get("PRUNEKIT_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank image
    return path


def figures(page: Page, panel: str) -> dict[str, str]:
    """The key: value rows of a figures panel (#usage or #savings), as shown."""
    return page.evaluate(
        f"Object.fromEntries([...document.querySelectorAll('{panel} .figure')]"
        ".map((f) => [f.dataset.key, f.querySelector('dd').textContent]))"
    )


# ------------------------------------------------------------------------------------------ no browser needed


@pytest.fixture(scope="module")
def page_server():
    app = FastAPI()
    app.include_router(web_router())
    with LiveServer(app) as server:
        yield server


def test_page_and_static_files_are_served_offline_only(page_server):
    index = httpx.get(f"{page_server.url}/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "http://" not in index.text and "https://" not in index.text  # nothing from a CDN
    for name, kind in (("chat.js", "javascript"), ("chat.css", "text/css")):
        response = httpx.get(f"{page_server.url}/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert f'static/{name}"' in index.text
    script = httpx.get(f"{page_server.url}/static/chat.js").text
    assert not any(sink in script for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"))


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../web.py", "/static/%2e%2e/web.py", "/static/"])
def test_static_paths_outside_the_folder_are_404(page_server, path):
    import http.client

    # http.client sends the path as written (httpx would normalise the `..` away before sending it)
    connection = http.client.HTTPConnection("127.0.0.1", page_server.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 404
    assert "does not exist" in body["error"]["message"]


# ------------------------------------------------------------------------------------------ the real service


def test_chat_end_to_end_on_the_embedded_model(page, embedded_model, tmp_path):
    from prunekit.app.api.service import create_app
    from prunekit.app.settings import Settings
    from prunekit.decoding import GenerationParams

    question = "What is 2+2?"
    settings = Settings(api_keys=[SERVICE_KEY], data_dir=tmp_path / "data", rate_limit_per_minute=0)
    # The key is in localStorage before the page's scripts run, as a returning user's would be.
    script = f"localStorage.setItem('prunekit.apiKey', {json.dumps(SERVICE_KEY)})"
    added = page.send("Page.addScriptToEvaluateOnNewDocument", source=script)
    try:
        with LiveServer(create_app(settings, model=embedded_model)) as server:
            page.open(f"{server.url}/")
            page.wait_for("document.querySelectorAll('#model option[value=\"prunekit-chat\"]').length === 1")
            page.choose("#model", "prunekit-chat")
            assert page.evaluate("document.getElementById('extras').hidden") is True  # no extension fields
            page.type_into("#max-tokens", "16")
            page.type_into("#prompt", question)
            # Count text insertions into the answer: tokens must appear one delta at a time.
            page.evaluate(
                "window.__deltas = 0; new MutationObserver((records) => { for (const r of records)"
                " if (r.target.closest && r.target.closest('.msg.assistant'))"
                " window.__deltas += r.addedNodes.length; })"
                ".observe(document.getElementById('messages'), {childList: true, subtree: true})"
            )
            page.evaluate("document.getElementById('send').click()")
            page.wait_for("document.body.dataset.turns === '1'", timeout=120)
            shown = page.evaluate("document.querySelector('.msg.assistant .text').textContent")
            usage = {key: float(value) for key, value in figures(page, "#usage").items()}
            assert page.evaluate("document.body.dataset.state") == "idle"
            deltas = page.evaluate("window.__deltas")
            save_screenshot(page, tmp_path, "chat-embedded.png")
            errors = page.console_errors()
    finally:
        page.send("Page.removeScriptToEvaluateOnNewDocument", identifier=added["identifier"])

    guarded = GenerationParams(max_tokens=16, repetition_penalty=settings.repetition_penalty)  # chat's loop guard
    expected = embedded_model.chat([{"role": "user", "content": question}], guarded)
    assert shown == expected.text  # greedy: the page shows exactly the model's answer, nothing dropped or mangled
    assert deltas > 1
    assert usage["completion_tokens"] == expected.usage.completion_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert usage["seconds"] > 0
    assert errors == []


# ------------------------------------------------------------------------------------------ what the pruning did

HOSTILE = '<img src=x onerror="window.__pwned=1">'
NOTES = {
    "eiffel.txt": (
        "The Eiffel Tower was completed in 1889 as the entrance to the World Fair. "
        "It is named after the engineer Gustave Eiffel. "
        f"The stock market fell sharply on Monday after weak earnings reports {HOSTILE}."
    ),
    "nile.txt": "The Nile is a long river in Africa. It flows into the Mediterranean Sea.",
    "bananas.txt": "Bananas are rich in potassium. They grow in tropical climates.",
}


def scripted_reply(messages: list[dict], params: object) -> str:
    """The LLM's part, scripted: the routes' own machinery (retrieval, pruning, teams, SQL execution) is real."""
    prompt = "\n".join(m["content"] for m in messages)
    if "Passages:" in prompt:
        return "It was completed in 1889."
    if "SQL" in prompt or "sql" in prompt:
        return "SELECT id, title FROM notes ORDER BY id"
    return "The answer is 42."


@pytest.fixture(scope="module")
def routes_service(tmp_path_factory):
    """The real service with a collection of notes and a database whose values carry markup."""
    from prunekit.app.api.service import create_app
    from prunekit.app.rag.documents import Chunk
    from prunekit.app.rag.store import VectorStore
    from prunekit.app.settings import Settings
    from prunekit.decoding.backends.embeddings import load_embedder
    from tests.nl2sql.fakes import ScriptedModel

    root = tmp_path_factory.mktemp("routes-page")
    db = root / "notes.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT)")
        titles = ["plain", HOSTILE, "<b>bold</b>", None, "x" * 300]
        connection.executemany("INSERT INTO notes VALUES (?, ?)", list(enumerate(titles, 1)))
    connection.close()
    settings = Settings(
        api_keys=[SERVICE_KEY], data_dir=root / "data", rate_limit_per_minute=0, sql_databases=f"notes={db}"
    )
    store = VectorStore(load_embedder(), **settings.vector_store_location())
    store.add("notes", [Chunk(text=t, source=name, index=0, title=name.split(".")[0]) for name, t in NOTES.items()])
    store.close()  # local Qdrant locks its folder: the service opens it on first use
    with LiveServer(create_app(settings, model=ScriptedModel(scripted_reply))) as server:
        yield server


def ask_on_page(page: Page, model: str, question: str, turn: int, **fields: str) -> None:
    page.choose("#model", model)
    for name, value in fields.items():
        if name == "domain":
            page.choose("#domain", value)
        else:
            page.type_into(f"#{name}", value)
    page.type_into("#prompt", question)
    page.evaluate("document.getElementById('send').click()")
    page.wait_for(f"document.body.dataset.turns === '{turn}'", timeout=180)
    assert page.evaluate("document.body.dataset.state") == "idle", page.evaluate("document.body.textContent")


def last_answer(selector: str) -> str:
    """The elements matching `selector` inside the last answer, as an array expression."""
    return f"[...[...document.querySelectorAll('.msg.assistant')].at(-1).querySelectorAll('{selector}')]"


def test_page_draws_the_passages_the_team_and_the_table_of_the_real_routes(page, routes_service, tmp_path):
    script = f"localStorage.setItem('prunekit.apiKey', {json.dumps(SERVICE_KEY)})"
    added = page.send("Page.addScriptToEvaluateOnNewDocument", source=script)
    try:
        page.open(f"{routes_service.url}/")
        page.wait_for("document.querySelectorAll('#model option[value=\"prunekit-rag\"]').length === 1")

        # RAG: every retrieved passage, the sentences the model read highlighted, the rest greyed out.
        ask_on_page(page, "prunekit-rag", "When was the Eiffel Tower completed?", 1, collection="notes")
        passages = page.evaluate(last_answer(".passage") + ".length")
        kept = page.evaluate(last_answer(".passage mark.sentence.kept") + ".map((m) => m.textContent)")
        dropped = page.evaluate(last_answer(".passage .sentence.dropped") + ".map((m) => m.textContent)")
        cited = page.evaluate("[...document.querySelectorAll('#citations blockquote')].map((q) => q.textContent)")
        savings = figures(page, "#savings")
        assert passages == int(savings["passages_retrieved"]) == len(NOTES)
        assert page.evaluate(last_answer(".passage.used") + ".length") == int(savings["passages_kept"]) >= 1
        assert kept == cited and "The Eiffel Tower was completed in 1889 as the entrance to the World Fair." in kept
        assert "Bananas are rich in potassium." in dropped  # an off-topic passage, greyed out
        shown = page.evaluate(last_answer(".passage .sentence") + ".map((m) => m.textContent)")
        assert any(HOSTILE in text for text in shown)  # markup in a passage stays text
        save_screenshot(page, tmp_path, "chat-rag-passages.png")

        # Agents: the team as a graph, one node per agent of the pool, the pruned ones marked.
        ask_on_page(page, "prunekit-agents", "What is 40 plus 2?", 2, domain="math")
        savings = figures(page, "#savings")
        nodes = page.evaluate(last_answer("svg.team-graph g.agent") + ".length")
        ran = page.evaluate(last_answer("svg.team-graph g.agent.kept") + ".length")
        assert nodes == int(savings["agents_total"]) >= 2 and ran == int(savings["agents_kept"]) >= 1
        assert page.evaluate(last_answer("svg.team-graph g.agent.pruned") + ".length") == nodes - ran
        names = page.evaluate(last_answer("svg.team-graph .agent-name") + ".map((t) => t.textContent)")
        assert "Math Solver" in names
        save_screenshot(page, tmp_path, "chat-agents-team.png")

        # SQL: the result as a table, every value as text.
        ask_on_page(page, "prunekit-sql", "List the notes.", 3, database="notes")
        header = page.evaluate(last_answer("table.sql-result th") + ".map((th) => th.textContent)")
        cells = page.evaluate(
            last_answer("table.sql-result tbody tr") + ".map((tr) => [...tr.cells].map((td) => td.textContent))"
        )
        assert header == ["id", "title"]
        assert [row[1] for row in cells[:4]] == ["plain", HOSTILE, "<b>bold</b>", "NULL"]
        assert cells[4][1] == "x" * 200 + "…"  # a long value is cut on the page
        save_screenshot(page, tmp_path, "chat-sql-table.png")

        assert page.evaluate("document.querySelectorAll('#messages img, #messages b').length") == 0
        assert page.evaluate("window.__pwned === undefined") is True
        assert page.console_errors() == []
    finally:
        page.send("Page.removeScriptToEvaluateOnNewDocument", identifier=added["identifier"])


# ------------------------------------------------------------------------------------------ the stream contract

KEY = "k1"
ANSWER_PARTS = ["It is <b>here</b> ", '& <img src=x onerror="window.__pwned=1">', " done."]


def sse(events: list[Any]) -> list[bytes]:
    """The events as an event stream with CRLF line ends, cut into awkward pieces: mid-line and mid-CRLF."""
    text = ": ping\r\n\r\n" + "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\r\n\r\n" for e in events)
    raw = text.encode()
    cuts = sorted({i + 1 for i, byte in enumerate(raw) if byte == ord("\r")} | set(range(0, len(raw), 23)))
    return [raw[a:b] for a, b in zip(cuts, [*cuts[1:], len(raw)], strict=True) if raw[a:b]]


def chunk(**fields: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "m", **fields}


def delta(text: str | None = None, finish: str | None = None, role: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if role:
        d["role"] = role
    if text is not None:
        d["content"] = text
    return chunk(choices=[{"index": 0, "delta": d, "finish_reason": finish}])


def rag_stream() -> list[Any]:
    return [
        chunk(choices=[], prunekit={"progress": {"stage": "retrieve", "k": 8}}),
        chunk(choices=[], prunekit={"progress": {"stage": "prune", "kept": 3}}),
        delta("", role="assistant"),
        *(delta(p) for p in ANSWER_PARTS),
        chunk(
            choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}],
            prunekit={
                "route": "rag",
                "passages": [
                    {
                        "source": "notes/<script>.md",
                        "chunk": 2,
                        "score": 0.8123,
                        "used": True,
                        "sentences": [
                            {"text": "The tower is here.", "kept": True, "p": 0.91},
                            {"text": "<i>Nothing</i> else.", "kept": False, "p": 0.02},
                        ],
                    },
                    {"source": "b.md", "used": False, "sentences": [{"text": "Off topic.", "kept": False}, "junk"]},
                ],
                "citations": [
                    {"source": "notes/<script>.md", "chunk": 2, "text": "The tower is here.", "score": 0.8123}
                ],
                "savings": {"context_tokens_before": 120, "context_tokens_after": 30, "new_stage_metric": 0.25},
            },
        ),
        chunk(choices=[], usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
        "[DONE]",
    ]


TEAM = {
    "agents": [
        {"id": 0, "name": "Solver", "kept": True, "calls": 1},
        {"id": 1, "name": "Analyst", "kept": True, "calls": 1},
        {"id": 2, "name": "<b>Coder</b>", "kept": True, "calls": 1},
        {"id": 3, "name": "Inspector", "kept": True, "calls": 1},
        {"id": 4, "name": "Idle", "kept": False, "calls": 0},
        {"id": "x", "name": "not an agent"},
    ],
    "edges": [[0, 1], [0, 2], [1, 3], [2, 3], [0, 99], [3, 3]],  # the last two join nothing the page can draw
    "weights": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
    "rounds": 1,
    "decision_calls": 1,
}


def team_stream() -> list[Any]:
    finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    return [
        delta("", role="assistant"),
        delta("42"),
        chunk(choices=[finish], prunekit={"route": "agents", "team": TEAM}),
        "[DONE]",
    ]


def agents_stream() -> list[Any]:
    return [
        delta("", role="assistant"),
        delta("Partial"),
        {"error": {"message": "backend went away", "type": "backend_error"}},
        "[DONE]",
    ]


@pytest.fixture()
def scripted_server():
    """A server with the page and a scripted API that records every chat request it gets."""
    app = FastAPI()
    app.include_router(web_router())
    app.state.requests = []

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {KEY}"

    def unauthorized() -> JSONResponse:
        return JSONResponse({"error": {"message": "missing or invalid API key", "type": "auth"}}, status_code=401)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "backend": "scripted"}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        ids = ["prunekit-chat", "prunekit-rag", "prunekit-sql", "prunekit-agents"]
        return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        if not authorized(request):
            return unauthorized()
        body = await request.json()
        app.state.requests.append(body)
        if body["model"] == "prunekit-sql" and not body.get("database"):
            return JSONResponse({"error": {"message": "database is required", "type": "invalid"}}, status_code=400)
        if body["model"] == "prunekit-rag":
            events = rag_stream()
        else:
            events = team_stream() if body.get("domain") == "math" else agents_stream()

        async def produce():
            for piece in sse(events):
                yield piece
                await asyncio.sleep(0.005)

        return StreamingResponse(produce(), media_type="text/event-stream")

    with LiveServer(app) as server:
        server.app = app
        yield server


def _check_the_rag_turn(page, sent):
    """The first turn of `test_page_follows_the_stream_contract`: what was sent, and what the page shows."""
    assert sent["model"] == "prunekit-rag" and sent["collection"] == "notes"
    assert "database" not in sent and "domain" not in sent
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["progress"] is True
    assert sent["messages"] == [{"role": "user", "content": "Where is the tower?"}]
    assert page.evaluate("document.querySelector('.msg.assistant .text').textContent") == "".join(ANSWER_PARTS)
    # markup in the answer (and in a citation's source) stayed text
    assert page.evaluate("document.querySelectorAll('#messages b, #messages img, #citations script').length") == 0
    kept = "[...document.querySelectorAll('.passage mark.sentence.kept')].map((m) => m.textContent)"
    dropped = "[...document.querySelectorAll('.passage .sentence.dropped')].map((m) => m.textContent)"
    assert page.evaluate(kept) == ["The tower is here."]
    assert page.evaluate(dropped) == ["<i>Nothing</i> else.", "Off topic."]  # markup stayed text, junk was skipped
    assert page.evaluate("document.querySelectorAll('.passage.used').length") == 1
    assert page.evaluate("document.querySelector('.passage .source').textContent") == "notes/<script>.md"
    assert page.evaluate("window.__pwned === undefined") is True
    stages = page.evaluate("[...document.querySelectorAll('#progress li')].map((li) => li.textContent)")
    assert stages == ["retrieve k=8", "prune kept=3"]
    citation = page.evaluate("document.querySelector('#citations li').textContent")
    assert (
        "notes/<script>.md" in citation
        and "#2" in citation
        and "0.8123" in citation
        and "The tower is here." in citation
    )
    assert figures(page, "#savings") == {
        "context_tokens_before": "120",
        "context_tokens_after": "30",
        "new_stage_metric": "0.25",  # a key the page has never heard of, shown as it came
    }
    usage = figures(page, "#usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == ("10", "5", "15")


def test_page_follows_the_stream_contract(page, scripted_server, tmp_path):
    url, app = scripted_server.url, scripted_server.app
    page.open(f"{url}/")
    # No key yet: the model list is refused and the page says what to do.
    page.wait_for("document.body.dataset.state === 'error'")
    assert "API key" in page.evaluate("document.getElementById('status').textContent")

    page.type_into("#api-key", KEY)
    page.evaluate("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    page.wait_for("document.querySelectorAll('#model option').length === 4")
    page.open(f"{url}/")  # the key survives a reload
    page.wait_for("document.querySelectorAll('#model option').length === 4")
    assert page.evaluate("document.getElementById('api-key').value") == KEY
    assert page.evaluate("document.getElementById('model').value") == "prunekit-chat"

    # prunekit-rag: only the collection field shows, and it is sent.
    page.choose("#model", "prunekit-rag")
    visible = (
        "[...document.querySelectorAll('#extras [data-models]')].filter((e) => !e.hidden).map((e) => e.dataset.models)"
    )
    assert page.evaluate(visible) == ["prunekit-rag"]
    page.type_into("#collection", "notes")
    page.type_into("#prompt", "Where is the tower?")
    page.evaluate("document.getElementById('send').click()")
    page.wait_for("document.body.dataset.turns === '1'")

    _check_the_rag_turn(page, app.state.requests[0])
    save_screenshot(page, tmp_path, "chat-contract.png")

    # prunekit-agents: the domain goes along, the history too; an error mid-stream is shown, the partial answer kept.
    page.choose("#model", "prunekit-agents")
    page.choose("#domain", "code")
    page.type_into("#prompt", "Write it.")
    page.evaluate("document.getElementById('send').click()")
    page.wait_for("document.body.dataset.turns === '2'")
    sent = app.state.requests[1]
    assert sent["domain"] == "code" and "collection" not in sent
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == "".join(ANSWER_PARTS)
    assert page.evaluate("document.body.dataset.state") == "error"
    assert page.evaluate("document.querySelector('.msg.error:last-child .text').textContent") == "backend went away"
    assert page.evaluate("document.querySelectorAll('.msg.assistant')[1].textContent").endswith("Partial")

    # prunekit-sql without a database: the HTTP 400's message is shown and the question is given back to edit.
    page.choose("#model", "prunekit-sql")
    page.type_into("#prompt", "How many users?")
    page.evaluate("document.getElementById('send').click()")
    page.wait_for("document.body.dataset.turns === '3'")
    assert page.evaluate("document.querySelector('.msg.error:last-child .text').textContent") == "database is required"
    assert page.evaluate("document.getElementById('prompt').value") == "How many users?"
    assert page.evaluate("document.querySelectorAll('.msg.user').length") == 2  # the refused question is not kept

    assert page.console_errors(allowed_network=("401 /v1/models", "400 /v1/chat/completions")) == []


def test_the_team_graph_draws_layers_and_skips_what_it_cannot_draw(page, scripted_server, tmp_path):
    added = page.send(
        "Page.addScriptToEvaluateOnNewDocument", source=f"localStorage.setItem('prunekit.apiKey', '{KEY}')"
    )
    try:
        page.open(f"{scripted_server.url}/")
        page.wait_for("document.querySelectorAll('#model option').length === 4")
        page.choose("#model", "prunekit-agents")
        page.choose("#domain", "math")
        page.type_into("#prompt", "What is 40 plus 2?")
        page.evaluate("document.getElementById('send').click()")
        page.wait_for("document.body.dataset.turns === '1'")
        assert page.evaluate("document.body.dataset.state") == "idle"
    finally:
        page.send("Page.removeScriptToEvaluateOnNewDocument", identifier=added["identifier"])
    graph = "document.querySelector('svg.team-graph')"
    assert page.evaluate(f"{graph}.querySelectorAll('g.agent').length") == 5  # the one without an integer id: out
    assert page.evaluate(f"{graph}.querySelectorAll('g.agent.pruned').length") == 1
    assert page.evaluate(f"{graph}.querySelectorAll('line.edge').length") == 4
    x = page.evaluate(
        f"Object.fromEntries([...{graph}.querySelectorAll('g.agent')]"
        ".map((g) => [g.dataset.agent, Number(g.querySelector('circle').getAttribute('cx'))]))"
    )
    assert x["0"] < x["1"] == x["2"] < x["3"] < x["4"]  # layers left to right, the pruned agent last
    names = page.evaluate(f"[...{graph}.querySelectorAll('.agent-name')].map((t) => t.textContent)")
    assert "<b>Coder</b>" in names and page.evaluate("document.querySelectorAll('#messages b').length") == 0
    caption = page.evaluate("document.querySelector('.team figcaption').textContent")
    assert caption.startswith("Agent team: 4 of 5 agents ran")
    save_screenshot(page, tmp_path, "chat-team-layers.png")
    assert page.console_errors() == []
