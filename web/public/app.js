// The chat page of `astrid web`: one conversation per tab, replies streamed over the tab's WebSocket. Model text
// is only ever put in the page as markdown rendered by marked (raw HTML in it escaped) and then sanitised by
// DOMPurify, or as textContent; never as innerHTML of the raw text.
"use strict";

(function main() {
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const promptBox = $("prompt");
  const sendButton = $("send");
  const banner = $("banner");

  // One session per tab, kept across reloads of that tab (sessionStorage is per tab).
  let session = sessionStorage.getItem("astrid-session");
  if (!session || !/^[A-Za-z0-9-]{8,64}$/.test(session)) {
    session = crypto.randomUUID();
    sessionStorage.setItem("astrid-session", session);
  }
  $("session-label").textContent = `session ${session.slice(0, 8)}`;

  const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const md = new marked.Marked({ gfm: true, breaks: true });
  // Raw HTML in model text is shown as text, not interpreted.
  md.use({ renderer: { html: (token) => escapeHtml(token.text) } });
  const render = (text) => DOMPurify.sanitize(md.parse(text), { USE_PROFILES: { html: true } });

  let socket = null;
  let maxPromptBytes = 1024 * 1024;
  let daemonUp = false;
  let waiting = false;
  let retryMs = 250;
  let socketUp = false;
  const turns = new Map(); // turn number -> { el, text }

  function scroll() {
    messages.scrollTop = messages.scrollHeight;
  }

  function addMessage(kind, text) {
    const el = document.createElement("div");
    el.className = `msg ${kind}`;
    if (text !== undefined) el.textContent = text;
    messages.appendChild(el);
    scroll();
    return el;
  }

  function showError(code, message) {
    const el = addMessage("error");
    const strong = document.createElement("strong");
    strong.textContent = code;
    el.append(strong, document.createTextNode(` ${message}`));
  }

  function setBanner(text) {
    banner.hidden = !text;
    banner.textContent = text || "";
  }

  function updateBanner() {
    if (!socketUp) setBanner("Lost the connection to astrid web — reconnecting…");
    else if (!daemonUp) setBanner("The Astrid daemon is not reachable — reconnecting…");
    else setBanner("");
    sendButton.disabled = waiting || !socketUp || !daemonUp;
  }

  function setWaiting(on) {
    waiting = on;
    updateBanner();
  }

  function assistant(turn) {
    let t = turns.get(turn);
    if (!t) {
      t = { el: addMessage("assistant streaming"), text: "" };
      t.el.dataset.turn = String(turn);
      turns.set(turn, t);
    }
    return t;
  }

  function showPanel(panel) {
    $("st-state").textContent = panel.daemon === "up" ? "running" : "not reachable";
    $("st-version").textContent = panel.version || "–";
    $("st-uptime").textContent = panel.uptime_secs === undefined ? "–" : `${panel.uptime_secs} s`;
    $("st-clients").textContent = panel.connected_clients === undefined ? "–" : String(panel.connected_clients);
    const problem = $("panel-problem");
    problem.hidden = !panel.problem;
    problem.textContent = panel.problem || "";
    const list = $("capsules");
    list.replaceChildren(...(panel.capsules || []).map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      return li;
    }));
  }

  function askApproval(m) {
    const dialog = $("approval");
    $("approval-capsule").textContent = m.capsule ? `from capsule ${m.capsule}` : "";
    $("approval-action").textContent = m.action;
    $("approval-resource").textContent = m.resource;
    $("approval-reason").textContent = m.reason;
    const labels = { approve: "Approve once", approve_session: "Approve for this session", approve_always: "Always approve", deny: "Deny" };
    $("approval-options").replaceChildren(...m.options.map((option) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.decision = option;
      b.textContent = labels[option] || option;
      b.addEventListener("click", () => {
        send({ type: "approval", request_id: m.request_id, decision: option });
        dialog.close();
      });
      return b;
    }));
    if (!dialog.open) dialog.showModal();
  }

  function askElicit(m) {
    const dialog = $("elicit");
    const field = m.field || {};
    $("elicit-capsule").textContent = `from capsule ${m.capsule_id}`;
    $("elicit-label").textContent = field.description || field.key || "value";
    let input;
    if (field.type === "select" && Array.isArray(field.options)) {
      input = document.createElement("select");
      for (const o of field.options) {
        const opt = document.createElement("option");
        opt.value = opt.textContent = String(o);
        input.appendChild(opt);
      }
    } else if (field.type === "array") {
      input = document.createElement("textarea");
      input.placeholder = "one value per line";
    } else {
      input = document.createElement("input");
      input.type = field.type === "secret" ? "password" : "text";
    }
    input.id = "elicit-input";
    if (typeof field.default === "string") input.value = field.default;
    $("elicit-field").replaceChildren(input);
    const form = $("elicit-form");
    form.onsubmit = (ev) => {
      const cancelled = ev.submitter && ev.submitter.value === "cancel";
      const answer = { type: "elicit", request_id: m.request_id };
      if (!cancelled) {
        if (field.type === "array") answer.values = input.value.split("\n").map((s) => s.trim()).filter(Boolean);
        else answer.value = input.value;
      }
      send(answer);
    };
    if (!dialog.open) dialog.showModal();
  }

  function onServerMessage(m) {
    switch (m.type) {
      case "ready":
        maxPromptBytes = m.max_prompt_bytes;
        daemonUp = m.daemon === "up";
        updateBanner();
        break;
      case "daemon":
        daemonUp = m.state === "up";
        if (!daemonUp && waiting) {
          setWaiting(false);
        }
        updateBanner();
        break;
      case "panel":
        showPanel(m.panel);
        break;
      case "turn_start":
        break;
      case "delta": {
        const t = assistant(m.turn);
        t.text += m.text;
        t.el.innerHTML = render(t.text);
        scroll();
        break;
      }
      case "response": {
        const t = assistant(m.turn);
        // The final reply is the whole text; deltas were a preview of it.
        t.text = m.text;
        t.el.innerHTML = render(t.text);
        t.el.classList.remove("streaming");
        t.el.dataset.final = "true";
        setWaiting(false);
        scroll();
        break;
      }
      case "tool":
        addMessage("tool", m.phase === "call" ? `tool ${m.name}…` : `tool ${m.name} ${m.is_error ? "failed" : "done"}`);
        break;
      case "turn_error": {
        const t = turns.get(m.turn);
        if (t) t.el.classList.remove("streaming");
        showError(m.code, m.message);
        setWaiting(false);
        break;
      }
      case "approval_required":
        askApproval(m);
        break;
      case "elicit_request":
        askElicit(m);
        break;
      case "error":
        showError(m.code, m.message);
        if (m.code !== "ASTRID_ERR_RATE_LIMITED") setWaiting(false);
        break;
      default:
        break;
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    socket = ws;
    ws.onopen = () => {
      socketUp = true;
      retryMs = 250;
      ws.send(JSON.stringify({ type: "hello", session }));
      updateBanner();
    };
    ws.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      onServerMessage(m);
    };
    ws.onclose = (ev) => {
      socketUp = false;
      if (waiting) setWaiting(false);
      updateBanner();
      if (ev.code === 1009) showError("ASTRID_ERR_MESSAGE_TOO_LARGE", "the message was too large; the connection was reset");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = promptBox.value;
    if (!text.trim() || waiting) return;
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > maxPromptBytes) {
      showError("ASTRID_ERR_MESSAGE_TOO_LARGE", `the message is ${bytes} bytes; at most ${maxPromptBytes} can be sent (nothing was sent)`);
      return;
    }
    addMessage("user", text.length > 20000 ? `${text.slice(0, 20000)}…` : text);
    send({ type: "prompt", text });
    promptBox.value = "";
    setWaiting(true);
  });
  promptBox.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });

  updateBanner();
  connect();
})();
