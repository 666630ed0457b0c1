// ChatApp's page: one WebSocket to the gateway. Frames from it are JSON updates (snapshot,
// line, people, message, replaced); frames to it are command lines, as typed at the terminal.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = {
  me: "",
  presence: "joining",
  people: [],
  messages: new Map(),
  place: "log",
  unread: new Map(),
  socket: null,
  ended: false,
};

// Where each conversation was last read, kept across reloads of this tab.
const seen = JSON.parse(sessionStorage.getItem("seen") || "{}");
function markSeen(place) {
  let last = -1;
  for (const m of state.messages.values()) if (placeOf(m) === place && m.id > last) last = m.id;
  seen[place] = last;
  sessionStorage.setItem("seen", JSON.stringify(seen));
  state.unread.delete(place);
}

function placeOf(m) {
  return m.peer === null || m.peer === undefined ? "#channel" : "@" + m.peer;
}

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?token=" + encodeURIComponent(token);
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.onmessage = (e) => {
    let u;
    try { u = JSON.parse(e.data); } catch { return; }
    handle(u);
  };
  socket.onopen = () => status("");
  socket.onclose = () => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (state.ended) return;
    status("Disconnected from chatapp: trying again…");
    setTimeout(connect, 1000);
  };
}

function handle(u) {
  switch (u.type) {
    case "snapshot":
      state.me = u.me;
      state.presence = u.presence;
      state.people = u.people;
      state.messages = new Map(u.messages.map((m) => [m.id, m]));
      state.unread = new Map();
      for (const m of u.messages) if (!m.outgoing && m.id > (seen[placeOf(m)] ?? -1)) bump(placeOf(m));
      $("log").replaceChildren(...u.lines.map(lineItem));
      renderPeople();
      renderMessages();
      scrollDown();
      break;
    case "line":
      $("log").append(lineItem(u.line));
      scrollDown();
      break;
    case "people":
      state.people = u.people;
      state.presence = u.presence;
      renderPeople();
      if (u.presence === "exited") {
        state.ended = true;
        status("chatapp has stopped: this page shows what was.");
      }
      break;
    case "message": {
      const known = state.messages.has(u.message.id);
      state.messages.set(u.message.id, u.message);
      const place = placeOf(u.message);
      if (!known && !u.message.outgoing) {
        if (place === state.place && document.hasFocus()) markSeen(place);
        else bump(place);
      }
      renderPeople();
      if (place === state.place) renderMessages();
      scrollDown();
      break;
    }
    case "replaced":
      state.ended = true;
      status("This page was opened in another tab: use that one, or reload here to take it back.");
      break;
  }
}

function bump(place) {
  state.unread.set(place, (state.unread.get(place) || 0) + 1);
}

function status(text) {
  $("status").textContent = text;
}

function lineItem(line) {
  const li = document.createElement("li");
  li.textContent = line.typed ? "» " + line.text : line.text;
  if (line.typed) li.className = "typed";
  return li;
}

function renderPeople() {
  const presence = { joining: "registering…", online: "online", offline: "offline", exited: "stopped" }[state.presence];
  $("me").textContent = state.me ? `${state.me} · ${presence}` : "";
  $("me").className = "me " + state.presence;
  const list = $("people");
  const people = [...state.people].sort((a, b) => (b.online - a.online) || a.name.localeCompare(b.name));
  list.replaceChildren(...people.map((p) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "place person" + (p.online ? " online" : " offline");
    b.dataset.place = "@" + p.name;
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.name + (p.name === state.me ? " (you)" : "");
    const pres = document.createElement("span");
    pres.className = "presence";
    pres.textContent = p.online ? "online" : "offline";
    b.append(dot, name, pres, badge("@" + p.name));
    if (state.place === "@" + p.name) b.setAttribute("aria-current", "true");
    li.append(b);
    return li;
  }));
  const channel = $("place-channel");
  channel.querySelector(".badge").replaceWith(badge("#channel"));
  for (const b of document.querySelectorAll(".place")) {
    if (b.dataset.place === state.place) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

function badge(place) {
  const n = state.unread.get(place) || 0;
  const s = document.createElement("span");
  s.className = "badge";
  s.hidden = n === 0;
  s.textContent = n;
  s.setAttribute("aria-label", `${n} unread`);
  return s;
}

const STATES = {
  sending: "sending…",
  delivered: null,
  to_server: "no answer: to the server…",
  saved: "saved on the server",
  failed: "not sent",
  received: "",
  stored: "kept by the server while you were away",
};

function stateText(m) {
  if (m.state === "delivered") return m.peer === null ? "✓ received by the server" : `✓ received by ${m.peer}`;
  if (m.state === "failed" && m.detail) return "not sent: " + m.detail.replace(/^>>> \[|\]$/g, "");
  return STATES[m.state] ?? m.state;
}

function time(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return today ? hm : d.toLocaleDateString() + " " + hm;
}

function renderMessages() {
  const inLog = state.place === "log";
  $("log").hidden = !inLog;
  $("messages").hidden = inLog;
  $("view-title").textContent = inLog ? "Log" : state.place === "#channel" ? "# channel" : state.place.slice(1);
  if (inLog) return;
  const items = [...state.messages.values()].filter((m) => placeOf(m) === state.place).sort((a, b) => a.id - b.id);
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No messages yet.";
    $("messages").replaceChildren(li);
    return;
  }
  $("messages").replaceChildren(...items.map((m) => {
    const li = document.createElement("li");
    li.className = "msg " + (m.outgoing ? "out" : "in") + " " + m.state;
    li.dataset.id = m.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = m.outgoing ? "you" : m.from;
    const at = document.createElement("time");
    at.dateTime = m.at;
    at.title = new Date(m.at).toLocaleString();
    at.textContent = time(m.at);
    meta.append(who, at);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = m.text;
    li.append(meta, text);
    const st = stateText(m);
    if (st) {
      const s = document.createElement("div");
      s.className = "state";
      s.textContent = st;
      li.append(s);
    }
    return li;
  }));
}

function scrollDown() {
  const view = state.place === "log" ? $("log") : $("messages");
  view.scrollTop = view.scrollHeight;
}

function prefix() {
  if (state.place === "#channel") return "send_all ";
  if (state.place.startsWith("@")) return "send " + state.place.slice(1) + " ";
  return "";
}

function open(place) {
  state.place = place;
  if (place !== "log") markSeen(place);
  renderPeople();
  renderMessages();
  scrollDown();
  const box = $("message");
  box.value = prefix();
  box.focus();
}

document.addEventListener("click", (e) => {
  const b = e.target.closest(".place");
  if (b) open(b.dataset.place);
});

$("compose").addEventListener("submit", (e) => {
  e.preventDefault();
  const box = $("message");
  const line = box.value;
  if (line.trim() === "" || line === prefix()) return;
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
    status("Not connected: the line was not sent.");
    return;
  }
  state.socket.send(line);
  box.value = prefix();
});

$("message").addEventListener("keydown", (e) => {
  if (e.key === "Escape") e.target.value = prefix();
});

window.addEventListener("focus", () => {
  if (state.place !== "log") {
    markSeen(state.place);
    renderPeople();
  }
});

connect();
$("message").focus();
