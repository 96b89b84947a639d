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

  // ---------------------------------------------------------------- what the pruning did

  // Bounds of what one answer draws, whatever the server sends (it caps these too).
  const MAX_PASSAGES = 20;
  const MAX_AGENTS = 32;
  const MAX_EDGES = 256;
  const MAX_ROWS = 50;
  const MAX_COLUMNS = 50;
  const MAX_CELL_CHARS = 200;
  const SVG_NS = "http://www.w3.org/2000/svg";
  let graphCount = 0; // each graph's arrowhead needs an id of its own in the document

  function clip(text, max) {
    const s = String(text);
    return s.length > max ? s.slice(0, max) + "…" : s;
  }

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    return node;
  }

  function svgTitle(text) {
    const title = svg("title");
    title.textContent = text;
    return title;
  }

  /** Under the answer: the views its route's details allow (passages, the agent team, the SQL result). */
  function showViews(item, extra) {
    const views = [];
    if (Array.isArray(extra.passages) && extra.passages.length) views.push(passagesView(extra.passages));
    const team = extra.team;
    if (team && typeof team === "object" && Array.isArray(team.agents) && team.agents.length) views.push(teamView(team));
    if (Array.isArray(extra.columns) && extra.columns.length) views.push(tableView(extra));
    if (!views.length) return;
    const box = el("details", "views");
    box.open = true;
    const label = extra.route === "sql" ? "The query's result" : "What the pruning did";
    box.append(el("summary", null, label), ...views);
    item.querySelector(".meta").before(box);
    item.scrollIntoView({ block: "end" });
  }

  /** Each retrieved passage: the sentences the model read highlighted, the dropped ones greyed out. */
  function passagesView(passages) {
    const shown = passages.slice(0, MAX_PASSAGES).filter((p) => p && typeof p === "object");
    const sent = shown.filter((p) => p.used === true).length;
    const section = el("section", "view passages");
    section.append(el("h3", null, "Retrieved passages: " + sent + " of " + shown.length + " sent to the model"));
    const legend = el("p", "legend");
    legend.append(el("mark", "sentence kept", "kept"), " ", el("span", "sentence dropped", "dropped"));
    section.append(legend);
    for (const p of shown) {
      const card = el("article", "passage " + (p.used === true ? "used" : "unused"));
      const head = el("div", "passage-head");
      head.append(el("span", "source", p.source ?? "?"));
      if (p.chunk !== undefined && p.chunk !== null) head.append(el("span", "muted", "#" + p.chunk));
      head.append(el("span", "tag", p.used === true ? "sent" : "not sent"));
      if (typeof p.score === "number") head.append(el("span", "score", "score " + formatNumber(p.score)));
      const body = el("p", "sentences");
      for (const s of Array.isArray(p.sentences) ? p.sentences : []) {
        if (!s || typeof s !== "object") continue;
        if (body.childNodes.length) body.append(" ");
        const kept = s.kept === true;
        const node = el(kept ? "mark" : "span", "sentence " + (kept ? "kept" : "dropped"), s.text ?? "");
        if (typeof s.p === "number") node.title = "keep probability " + formatNumber(s.p);
        body.append(node);
      }
      if (p.truncated === true) body.append(el("span", "muted", " (cut)"));
      card.append(head, body);
      section.append(card);
    }
    return section;
  }

  /** Layers of the agents that ran: an agent sits one column right of the agents it reads (longest path). */
  function layers(kept, edges) {
    const depth = new Map(kept.map((a) => [a.id, 0]));
    for (let pass = 0; pass < kept.length; pass++) {
      let changed = false;
      for (const [u, v] of edges) {
        if (depth.has(u) && depth.has(v) && depth.get(v) < depth.get(u) + 1 && depth.get(u) < kept.length) {
          depth.set(v, depth.get(u) + 1);
          changed = true;
        }
      }
      if (!changed) break;
    }
    const columns = [];
    for (const a of kept) (columns[depth.get(a.id)] ||= []).push(a);
    return columns.filter(Boolean);
  }

  /** Where each agent sits: agents that ran in layers, left to right, the pruned ones in a last column. */
  function teamLayout(team) {
    const agents = team.agents
      .slice(0, MAX_AGENTS)
      .filter((a) => a && typeof a === "object" && Number.isInteger(a.id));
    const byId = new Map(agents.map((a) => [a.id, a]));
    const kept = agents.filter((a) => a.kept === true);
    const pruned = agents.filter((a) => a.kept !== true);
    const edges = (Array.isArray(team.edges) ? team.edges : [])
      .slice(0, MAX_EDGES)
      .map((e, index) => ({ e, index }))
      .filter(({ e }) => Array.isArray(e) && e[0] !== e[1] && byId.has(e[0]) && byId.has(e[1]));
    const columns = layers(kept, edges.map(({ e }) => e));
    if (pruned.length) columns.push(pruned);
    const [dx, dy, r, pad] = [150, 74, 18, 34];
    const tallest = Math.max(1, ...columns.map((c) => c.length));
    const where = new Map();
    columns.forEach((column, i) => {
      column.forEach((a, k) => where.set(a.id, [dx / 2 + i * dx, pad / 2 + r + (k + (tallest - column.length) / 2) * dy]));
    });
    const width = columns.length * dx;
    const height = (tallest - 1) * dy + 2 * r + pad + 16; // room for the last row's labels
    return { agents, byId, kept, pruned, edges, where, r, width, height };
  }

  /** An arrow per edge, from the agent that speaks to the one that reads it; its weight in the tooltip. */
  function drawEdges(graph, layout, weights) {
    const arrow = "arrow-" + ++graphCount;
    const marker = svg("marker", {
      id: arrow, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
    const defs = svg("defs");
    defs.append(marker);
    graph.append(defs);
    const r = layout.r;
    for (const { e: [u, v], index } of layout.edges) {
      const [x1, y1] = layout.where.get(u);
      const [x2, y2] = layout.where.get(v);
      const length = Math.hypot(x2 - x1, y2 - y1) || 1;
      const [ux, uy] = [(x2 - x1) / length, (y2 - y1) / length];
      const line = svg("line", {
        class: "edge", x1: x1 + ux * r, y1: y1 + uy * r, x2: x2 - ux * (r + 2), y2: y2 - uy * (r + 2),
        "marker-end": `url(#${arrow})`,
      });
      const weight = typeof weights[index] === "number" ? ", weight " + formatNumber(weights[index]) : "";
      line.append(svgTitle(String(layout.byId.get(u).name) + " → " + String(layout.byId.get(v).name) + weight));
      graph.append(line);
    }
  }

  /** A circle per agent with its index, its name below: filled when it ran, dashed when pruned. */
  function drawAgents(graph, layout) {
    const r = layout.r;
    for (const a of layout.agents) {
      const [x, y] = layout.where.get(a.id);
      const node = svg("g", { class: "agent " + (a.kept === true ? "kept" : "pruned") });
      node.dataset.agent = String(a.id);
      const calls = Number.isInteger(a.calls) ? a.calls : 0;
      const status = a.kept === true ? calls + " LLM call(s)" : "pruned: never ran";
      node.append(svgTitle(String(a.name ?? "agent " + a.id) + " (" + status + ")"));
      node.append(svg("circle", { cx: x, cy: y, r }));
      const number = svg("text", { x, y: y + 4, class: "agent-id" });
      number.textContent = String(a.id);
      const label = svg("text", { x, y: y + r + 14, class: "agent-name" });
      label.textContent = clip(a.name ?? "agent " + a.id, 20);
      node.append(number, label);
      graph.append(node);
    }
  }

  /** The agent team as a node-link graph (AGP's picture of a pruned team), drawn as inline SVG. */
  function teamView(team) {
    const layout = teamLayout(team);
    const { width, height, kept, pruned, agents } = layout;
    const graph = svg("svg", { class: "team-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
    graph.append(svgTitle(kept.length + " of " + agents.length + " agents ran"));
    drawEdges(graph, layout, Array.isArray(team.weights) ? team.weights : []);
    drawAgents(graph, layout);
    const rounds = Number.isInteger(team.rounds) ? team.rounds : 1;
    let caption = "Agent team: " + kept.length + " of " + agents.length + " agents ran, " + rounds + " round(s)";
    if (pruned.length) caption += "; pruned agents are dashed";
    if (Number.isInteger(team.decision_calls) && team.decision_calls > 0) {
      caption += "; a decision agent combined their answers";
    }
    const wrap = el("div", "graph-wrap");
    wrap.append(graph);
    const figure = el("figure", "view team");
    figure.append(el("figcaption", null, caption), wrap);
    return figure;
  }

  function cellText(value) {
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    return JSON.stringify(value);
  }

  /** The SQL result as a table: its first rows and columns, long values cut (the whole value in the tooltip). */
  function tableView(details) {
    const columns = details.columns.slice(0, MAX_COLUMNS);
    const rows = (Array.isArray(details.rows) ? details.rows : []).slice(0, MAX_ROWS).filter(Array.isArray);
    const total = Number.isInteger(details.rows_total) ? details.rows_total : rows.length;
    let heading = "Result: " + total + " row(s)";
    if (total > rows.length) heading += ", the first " + rows.length + " shown";
    if (Number.isInteger(details.columns_total) && details.columns_total > columns.length) {
      heading += "; " + columns.length + " of " + details.columns_total + " columns";
    }
    const section = el("section", "view sql");
    section.append(el("h3", null, heading));
    const table = el("table", "sql-result");
    const head = table.createTHead().insertRow();
    for (const name of columns) {
      const th = el("th", null, clip(name, MAX_CELL_CHARS));
      th.scope = "col";
      head.append(th);
    }
    const body = table.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (let i = 0; i < columns.length; i++) {
        const value = row[i];
        const td = tr.insertCell();
        if (value === null || value === undefined) {
          td.className = "null";
          td.textContent = "NULL";
          continue;
        }
        const text = cellText(value);
        if (typeof value === "number") td.className = "num";
        td.textContent = clip(text, MAX_CELL_CHARS);
        if (text.length > MAX_CELL_CHARS) td.title = clip(text, 2000);
      }
    }
    const wrap = el("div", "table-wrap");
    wrap.append(table);
    section.append(wrap);
    return section;
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
      if (extra.route !== undefined) showViews(turn.item, extra); // the finish chunk: the route's details
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
