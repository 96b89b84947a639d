// prunekit chat page: plain JavaScript, no build step, no dependencies.
//
// It speaks the public API only: GET v1/models, POST v1/chat/completions with "stream": true.
// The stream is read with fetch + ReadableStream (EventSource can neither POST nor send headers).
// Every piece of text from the server goes into the page through textContent or text nodes,
// never innerHTML: model output is data, not markup.
"use strict";

(() => {
  const KEY_STORAGE = "prunekit.apiKey";
  const MODEL_STORAGE = "prunekit.model";
  const PREFERRED_MODEL = "prunekit-chat";

  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"),
    apiKey: $("api-key"),
    maxTokens: $("max-tokens"),
    backend: $("backend"),
    messages: $("messages"),
    composer: $("composer"),
    extras: $("extras"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
    newChat: $("new-chat"),
    status: $("status"),
    progress: $("progress"),
    citations: $("citations"),
    usage: $("usage"),
    savings: $("savings"),
  };

  /** The conversation as the API wants it; the page sends the whole history each turn. */
  let history = [];
  let controller = null;

  // ---------------------------------------------------------------- small helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setState(state, message) {
    document.body.dataset.state = state;
    if (message !== undefined) ui.status.textContent = message;
    const busy = state === "streaming";
    ui.send.disabled = busy || !ui.model.value;
    ui.stop.hidden = !busy;
  }

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const key = ui.apiKey.value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  function formatNumber(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(4)));
  }

  /** Flatten {a: {b: 1}} into [["a.b", 1]] so nested figures render as key: value too. */
  function flatten(object, prefix, out) {
    for (const [key, value] of Object.entries(object)) {
      const name = prefix ? prefix + "." + key : key;
      if (value !== null && typeof value === "object" && !Array.isArray(value)) flatten(value, name, out);
      else out.push([name, value]);
    }
    return out;
  }

  function renderFigures(dl, object) {
    dl.replaceChildren();
    for (const [key, value] of flatten(object, "", [])) {
      const row = el("div", "figure");
      row.dataset.key = key;
      row.append(el("dt", null, key), el("dd", null, Array.isArray(value) ? value.join(", ") : formatNumber(value)));
      dl.append(row);
    }
  }

  /** The message of an OpenAI-style error body, or a fallback when the body is not one. */
  function errorMessage(body, fallback) {
    if (body && typeof body === "object" && body.error) {
      if (typeof body.error === "string") return body.error;
      if (body.error.message) return String(body.error.message);
    }
    return fallback;
  }

  async function readError(response) {
    const fallback = "HTTP " + response.status + " " + (response.statusText || "");
    try {
      return errorMessage(await response.json(), fallback.trim());
    } catch (_) {
      return fallback.trim();
    }
  }

  // ---------------------------------------------------------------- server-sent events

  /**
   * An incremental SSE parser (the WHATWG event-stream format): feed it decoded text as it arrives,
   * it calls onData(data) for every complete "message" event. Lines may end in CRLF, LF or CR, and a
   * chunk may end anywhere, even between the CR and LF of one line ending.
   */
  function sseParser(onData) {
    let buffer = "";
    let data = [];
    let event = "";

    function line(text) {
      if (text === "") {
        if (data.length && (event === "" || event === "message")) onData(data.join("\n"));
        data = [];
        event = "";
        return;
      }
      if (text.startsWith(":")) return; // a comment: keep-alive pings
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }

    return {
      feed(text) {
        buffer += text;
        for (;;) {
          const match = /\r\n|\r|\n/.exec(buffer);
          if (!match) break;
          // A CR at the very end may be half of a CRLF: wait for the next chunk.
          if (match[0] === "\r" && match.index === buffer.length - 1) break;
          const complete = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          line(complete);
        }
      },
      end() {
        if (buffer) line(buffer.replace(/\r$/, ""));
        buffer = "";
        line("");
      },
    };
  }

  // ---------------------------------------------------------------- models and settings

  async function loadModels() {
    ui.model.disabled = true;
    let response;
    try {
      response = await fetch("v1/models", { headers: headers(false) });
    } catch (err) {
      fillModels([], "server unreachable");
      setState("error", "Cannot reach the server: " + err.message);
      return;
    }
    if (!response.ok) {
      const message = await readError(response);
      fillModels([], response.status === 401 ? "enter the API key" : "unavailable");
      const hint = response.status === 401 ? " Enter the API key above." : "";
      setState("error", message + hint);
      return;
    }
    let ids = [];
    try {
      const body = await response.json();
      ids = (body.data || []).map((m) => String(m.id));
    } catch (_) {
      setState("error", "GET v1/models did not answer with a model list");
      return;
    }
    fillModels(ids, "no models");
    setState("idle", ids.length ? "" : "The server lists no models.");
  }

  function fillModels(ids, emptyLabel) {
    const wanted = localStorage.getItem(MODEL_STORAGE) || PREFERRED_MODEL;
    ui.model.replaceChildren();
    if (!ids.length) {
      ui.model.append(el("option", null, "(" + emptyLabel + ")"));
      ui.model.options[0].value = "";
    }
    for (const id of ids) {
      const option = el("option", null, id);
      option.value = id;
      ui.model.append(option);
    }
    if (ids.includes(wanted)) ui.model.value = wanted;
    else if (ids.includes(PREFERRED_MODEL)) ui.model.value = PREFERRED_MODEL;
    ui.model.disabled = !ids.length;
    showExtras();
  }

  async function loadBackend() {
    try {
      const response = await fetch("health");
      if (response.ok) {
        const body = await response.json();
        if (body.backend) ui.backend.textContent = "backend: " + body.backend;
      }
    } catch (_) {
      // the model list reports an unreachable server already
    }
  }

  /** Show only the extension fields of the chosen model. */
  function showExtras() {
    const model = ui.model.value;
    for (const label of ui.extras.querySelectorAll("[data-models]")) {
      label.hidden = !label.dataset.models.split(/\s+/).includes(model);
    }
    ui.extras.hidden = !ui.extras.querySelector("[data-models]:not([hidden])");
    ui.send.disabled = document.body.dataset.state === "streaming" || !model;
  }

  /** The extension fields to send: those shown for the model, when filled in. */
  function extensionFields() {
    const out = {};
    for (const label of ui.extras.querySelectorAll("[data-models]")) {
      if (label.hidden) continue;
      for (const input of label.querySelectorAll("[name]")) {
        const value = input.value.trim();
        if (value) out[input.name] = value;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- the conversation

  function addMessage(role, text) {
    const item = el("li", "msg " + role);
    item.append(el("div", "role", role === "user" ? "you" : role));
    const body = el("div", "text");
    if (text) body.textContent = text;
    item.append(body, el("div", "meta"));
    ui.messages.append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function clearPanel() {
    ui.progress.replaceChildren();
    ui.citations.replaceChildren();
    ui.usage.replaceChildren();
    ui.savings.replaceChildren();
  }

  function showProgress(progress) {
    for (const old of ui.progress.querySelectorAll(".current")) old.classList.remove("current");
    const item = el("li", "current");
    const stage = progress.stage === undefined ? "step" : String(progress.stage);
    item.dataset.stage = stage;
    item.append(el("strong", null, stage));
    const details = flatten(progress, "", [])
      .filter(([key]) => key !== "stage")
      .map(([key, value]) => key + "=" + formatNumber(value));
    if (details.length) item.append(el("span", "muted", " " + details.join(" ")));
    ui.progress.append(item);
    ui.status.textContent = stage + "…";
  }

  function showCitations(citations) {
    ui.citations.replaceChildren();
    for (const c of citations) {
      const item = el("li", "citation");
      const head = el("div", "cite-head");
      head.append(el("span", "source", c.source ?? "?"));
      if (c.chunk !== undefined && c.chunk !== null) head.append(el("span", "muted", " #" + c.chunk));
      if (typeof c.score === "number") head.append(el("span", "score", "score " + formatNumber(c.score)));
      item.append(head);
      if (c.text) {
        const text = String(c.text);
        const quote = el("blockquote", null, text.length > 400 ? text.slice(0, 400) + "…" : text);
        quote.title = text;
        item.append(quote);
      }
      ui.citations.append(item);
    }
  }

  /** Apply one parsed stream chunk to the page (an in-band error ends the turn). */
  function applyChunk(chunk, turn) {
    if (chunk.error) {
      turn.error = errorMessage(chunk, "the stream failed");
      return;
    }
    for (const choice of chunk.choices || []) {
      const content = choice.delta && choice.delta.content;
      if (content) {
        if (turn.firstTokenAt === null) turn.firstTokenAt = performance.now();
        turn.text += content;
        turn.body.append(content); // a text node per delta: escaped by construction
        turn.item.scrollIntoView({ block: "end" });
      }
      if (choice.finish_reason) turn.finish = choice.finish_reason;
    }
    const extra = chunk.prunekit;
    if (extra && typeof extra === "object") {
      if (extra.progress) showProgress(extra.progress);
      if (Array.isArray(extra.citations)) showCitations(extra.citations);
      if (extra.savings && typeof extra.savings === "object") {
        turn.savings = { ...turn.savings, ...extra.savings };
        renderFigures(ui.savings, turn.savings);
      }
    }
    if (chunk.usage) turn.usage = chunk.usage;
  }

  function showUsage(turn) {
    const figures = { ...(turn.usage || {}) };
    const seconds = (performance.now() - turn.startedAt) / 1000;
    figures.seconds = Number(seconds.toFixed(2));
    if (turn.firstTokenAt !== null) figures.first_token_s = Number(((turn.firstTokenAt - turn.startedAt) / 1000).toFixed(2));
    if (turn.usage && turn.usage.completion_tokens && turn.firstTokenAt !== null) {
      const decoding = (performance.now() - turn.firstTokenAt) / 1000;
      if (decoding > 0) figures.tokens_per_s = Number((turn.usage.completion_tokens / decoding).toFixed(1));
    }
    renderFigures(ui.usage, figures);
  }

  async function send(text) {
    const model = ui.model.value;
    const maxTokens = parseInt(ui.maxTokens.value, 10);
    const body = {
      model,
      messages: [...history, { role: "user", content: text }],
      stream: true,
      stream_options: { include_usage: true },
      progress: true,
      ...extensionFields(),
    };
    if (Number.isInteger(maxTokens) && maxTokens > 0) body.max_tokens = maxTokens;

    history.push({ role: "user", content: text });
    const question = addMessage("user", text);
    clearPanel();
    const item = addMessage("assistant", "");
    const turn = {
      question,
      item,
      body: item.querySelector(".text"),
      text: "",
      finish: null,
      usage: null,
      savings: {},
      error: null,
      startedAt: performance.now(),
      firstTokenAt: null,
    };
    controller = new AbortController();
    setState("streaming", "waiting for the model…");

    let done = false;
    try {
      const response = await fetch("v1/chat/completions", {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) {
        turn.error = await readError(response);
      } else {
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = sseParser((data) => {
          if (done || turn.error) return;
          if (data === "[DONE]") {
            done = true;
            return;
          }
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch (_) {
            turn.error = "the server sent a malformed stream event";
            return;
          }
          applyChunk(chunk, turn);
        });
        for (;;) {
          const { value, done: ended } = await reader.read();
          if (ended) break;
          parser.feed(value);
          if (done || turn.error) break;
        }
        parser.end();
        if (done || turn.error) await reader.cancel().catch(() => {});
        if (!done && !turn.error) turn.error = "the stream ended before [DONE]";
      }
    } catch (err) {
      turn.error = err.name === "AbortError" ? null : "request failed: " + err.message;
      if (err.name === "AbortError") turn.finish = "stopped";
    } finally {
      controller = null;
    }
    finishTurn(turn, text);
  }

  function finishTurn(turn, text) {
    const meta = turn.item.querySelector(".meta");
    document.body.dataset.turns = String(Number(document.body.dataset.turns || 0) + 1);
    if (!turn.text && (turn.error || turn.finish === "stopped")) {
      // Nothing came back: drop the unanswered turn and give its text back to edit, so nothing is lost.
      turn.item.remove();
      turn.question.remove();
      history.pop();
      ui.prompt.value = text;
      if (turn.error) {
        addMessage("error", turn.error);
        setState("error", "Error: " + turn.error);
      } else setState("idle", "stopped");
      return;
    }
    history.push({ role: "assistant", content: turn.text });
    showUsage(turn);
    if (turn.error) {
      turn.item.classList.add("failed");
      addMessage("error", turn.error);
      setState("error", "Error: " + turn.error);
      return;
    }
    if (turn.finish) meta.textContent = turn.finish === "stop" ? "" : "finish: " + turn.finish;
    setState("idle", turn.finish === "stopped" ? "stopped" : "done");
  }

  // ---------------------------------------------------------------- wiring

  function submit(event) {
    event.preventDefault();
    const text = ui.prompt.value.trim();
    if (!text || document.body.dataset.state === "streaming" || !ui.model.value) return;
    ui.prompt.value = "";
    send(text);
  }

  ui.composer.addEventListener("submit", submit);
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
  });
  ui.stop.addEventListener("click", () => controller && controller.abort());
  ui.newChat.addEventListener("click", () => {
    if (controller) controller.abort();
    history = [];
    ui.messages.replaceChildren();
    clearPanel();
    setState(ui.model.value ? "idle" : document.body.dataset.state, "");
  });
  ui.model.addEventListener("change", () => {
    localStorage.setItem(MODEL_STORAGE, ui.model.value);
    showExtras();
  });
  ui.apiKey.addEventListener("change", () => {
    const key = ui.apiKey.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    loadModels();
  });

  ui.apiKey.value = localStorage.getItem(KEY_STORAGE) || "";
  loadBackend();
  loadModels();
})();
