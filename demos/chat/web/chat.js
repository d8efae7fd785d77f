// The reactor chat in a browser.
//
// One WebSocket to /chat on the server that sent this page. Each message
// either way is one JSON object with a "type" (the list is in
// demos/chat/web_messages.py). We send commands ({"type": "say", ...}),
// the server sends events ({"type": "said", ...}); this file keeps one
// "window" per room or private conversation and shows each event in the
// window it concerns.
//
// Text from other people is always put on the page with textContent, never
// as HTML: a message like "<img onerror=...>" shows as those characters.

"use strict";

const $ = (id) => document.getElementById(id);

let socket = null;
let me = "";             // our nickname, once the server welcomed us
let active = "";         // the name of the window on show
let helloInfo = {};      // the server's limits, from its "hello"
const windows = new Map();  // name -> {name, kind: "room" | "private", lines: [], members: [], topic, unread}

// -- the connection ------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/chat");
  socket.onopen = () => setStatus("connected");
  socket.onmessage = (message) => handle(JSON.parse(message.data));
  socket.onclose = (close) => {
    setStatus(`disconnected${close.reason ? ": " + close.reason : ""} (reload the page to come back)`, true);
    $("line").disabled = $("send").disabled = $("enter").disabled = true;
  };
}

function send(command) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(command));
  }
}

function setStatus(text, down = false) {
  $("status").textContent = text;
  $("status").classList.toggle("down", down);
}

// -- windows: one per room ("#lobby") or private conversation ("@bob") ----------------------

function openWindow(name, kind) {
  if (!windows.has(name)) {
    windows.set(name, {name, kind, lines: [], members: [], topic: "", unread: false});
  }
  return windows.get(name);
}

function closeWindow(name) {
  windows.delete(name);
  if (active === name) {
    active = windows.size ? [...windows.keys()][0] : "";
  }
  draw();
}

function show(name) {
  active = name;
  const win = windows.get(name);
  if (win) win.unread = false;
  draw();
  $("line").focus();
}

// Add a line to a window: parts are [text, className] pairs, shown in order.
function addLine(name, parts, kind = "", at = Date.now() / 1000) {
  const win = windows.get(name) || windows.get(active);
  if (!win) return;
  win.lines.push({parts, kind, at});
  if (win.lines.length > 500) win.lines.shift();  // a page kept open all day stays small
  if (win.name === active) {
    appendLine(win.lines[win.lines.length - 1]);
  } else {
    win.unread = true;
    drawTabs();
  }
}

function roomsOf(nick) {
  return [...windows.values()].filter((w) => w.kind === "room" && w.members.includes(nick));
}

// -- drawing --------------------------------------------------------------------------

function clock(at) {
  const d = new Date(at * 1000);
  return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
}

function lineElement(line) {
  const p = document.createElement("p");
  if (line.kind) p.className = line.kind;
  const time = document.createElement("time");
  time.textContent = clock(line.at);
  p.append(time);
  for (const [text, cls] of line.parts) {
    const span = document.createElement("span");
    span.textContent = text;
    if (cls) span.className = cls;
    p.append(span);
  }
  return p;
}

function appendLine(line) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(lineElement(line));
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function drawTabs() {
  const tabs = $("tabs");
  tabs.replaceChildren();
  for (const win of windows.values()) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = win.kind === "room" ? "#" + win.name.slice(1) : win.name.slice(1);
    button.dataset.window = win.name;
    button.classList.toggle("active", win.name === active);
    button.classList.toggle("unread", win.unread);
    button.onclick = () => show(win.name);
    tabs.append(button);
  }
}

function draw() {
  drawTabs();
  const win = windows.get(active);
  $("log").replaceChildren(...(win ? win.lines.map(lineElement) : []));
  $("log").scrollTop = $("log").scrollHeight;
  $("topic").textContent = win && win.kind === "room" ? (win.topic || "no topic") : (win ? "private conversation" : "");
  $("people-title").textContent = win && win.kind === "room" ? `In ${win.name} (${win.members.length})` : "";
  $("members").replaceChildren(...(win && win.kind === "room" ? win.members : []).map((nick) => {
    const li = document.createElement("li");
    li.textContent = nick;
    li.title = "click to talk to " + nick + " privately";
    li.onclick = () => { openWindow("@" + nick, "private"); show("@" + nick); };
    return li;
  }));
}

const who = (nick) => [[nick, "nick"]];
const said = (nick, text) => [["<", ""], [nick, "nick"], ["> " + text, ""]];

// -- events from the server ---------------------------------------------------------------

function handle(ev) {
  switch (ev.type) {
    case "hello":
      helloInfo = ev;
      setStatus(`connected to ${ev.server} ${ev.version}`);
      break;
    case "welcome":
      me = ev.nick;
      $("login").hidden = true;
      $("chat").hidden = false;
      setStatus(`connected as ${me}`);
      break;
    case "joined": {
      const name = "#" + ev.room;
      if (ev.nick === me) {
        openWindow(name, "room");
        show(name);
        addLine(name, [["you joined " + name, ""]], "event", ev.at);
      } else {
        const win = openWindow(name, "room");
        if (!win.members.includes(ev.nick)) win.members.push(ev.nick);
        addLine(name, [...who(ev.nick), [" joined " + name, ""]], "event", ev.at);
        if (name === active) draw();
      }
      break;
    }
    case "left": {
      const name = "#" + ev.room;
      if (ev.nick === me) {
        closeWindow(name);
      } else if (windows.has(name)) {
        const win = windows.get(name);
        win.members = win.members.filter((n) => n !== ev.nick);
        addLine(name, [...who(ev.nick), [` left ${name}${ev.reason ? " (" + ev.reason + ")" : ""}`, ""]], "event", ev.at);
        if (name === active) draw();
      }
      break;
    }
    case "names": {  // (a /who for a room we are not in shows in the tab on show)
      const win = windows.get("#" + ev.room);
      if (win) win.members = ev.nicks;
      if (!ev.on_join) addLine(win ? win.name : active, [[`in #${ev.room}: ${ev.nicks.join(", ")}`, ""]], "event");
      draw();
      break;
    }
    case "topic": {
      const win = openWindow("#" + ev.room, "room");
      win.topic = ev.text;
      if (ev.changed) {
        addLine(win.name, [...who(ev.by), [" set the topic: " + ev.text, ""]], "event", ev.at);
      } else if (!ev.on_join) {
        addLine(win.name, [[ev.text ? `topic: ${ev.text} (set by ${ev.by})` : "no topic is set", ""]], "event");
      }
      if (win.name === active) draw();
      break;
    }
    case "history":
      addLine("#" + ev.room, [["recent lines:", ""]], "event history");
      for (const line of ev.lines) {
        const parts = line.kind === "emote" ? [["* ", ""], ...who(line.nick), [" " + line.text, ""]]
                                            : said(line.nick, line.text);
        addLine("#" + ev.room, parts, "history" + (line.kind === "emote" ? " emote" : ""), line.at);
      }
      break;
    case "said":
      addLine("#" + ev.room, said(ev.nick, ev.text), ev.nick === me ? "me" : "", ev.at);
      break;
    case "emote":
      addLine("#" + ev.room, [["* ", ""], ...who(ev.nick), [" " + ev.text, ""]], "emote", ev.at);
      break;
    case "private": {
      const other = ev.echo ? ev.to : ev.from;
      const name = "@" + other;
      openWindow(name, "private");
      const parts = ev.action ? [["* ", ""], ...who(ev.from), [" " + ev.text, ""]] : said(ev.from, ev.text);
      addLine(name, parts, "private", ev.at);
      drawTabs();
      break;
    }
    case "renamed":
      for (const win of roomsOf(ev.nick)) {
        win.members = win.members.map((n) => (n === ev.nick ? ev.new : n));
        addLine(win.name, [...who(ev.nick), [" is now known as " + ev.new, ""]], "event", ev.at);
      }
      if (ev.nick === me) {
        me = ev.new;
        setStatus(`connected as ${me}`);
        if (!roomsOf(me).length) addLine(active, [["you are now known as " + me, ""]], "event", ev.at);
      }
      draw();
      break;
    case "quit":
      for (const win of roomsOf(ev.nick)) {
        win.members = win.members.filter((n) => n !== ev.nick);
        addLine(win.name, [...who(ev.nick), [" quit" + (ev.reason ? " (" + ev.reason + ")" : ""), ""]], "event", ev.at);
      }
      draw();
      break;
    case "notice":
      if (!ev.from) {
        addLine(active, [[ev.text, ""]], "notice", ev.at);
      } else {
        const name = ev.room ? "#" + ev.room : "@" + ev.from;
        if (!ev.room) openWindow(name, "private");
        addLine(name, [["-", ""], ...who(ev.from), ["- " + ev.text, ""]], "notice", ev.at);
      }
      break;
    case "rooms":
      addLine(active, [["rooms: " + ev.rooms.map((r) => `#${r.name} (${r.members})`).join(", "), ""]], "event");
      break;
    case "whois":
      addLine(active, [[`${ev.nick} (${ev.username}@${ev.host}): in ${ev.rooms.map((r) => "#" + r).join(", ") || "no room"}, ` +
                        `idle ${ev.idle}s, here since ${clock(ev.signon)}`, ""]], "event");
      break;
    case "help":
      showHelp();
      break;
    case "goodbye":
      addLine(active, [[(ev.message ? ev.message + "; " : "") + "goodbye", ""]], "notice");
      break;
    case "error":
      if (!me) {
        $("login-error").textContent = ev.text;
      } else {
        addLine(active, [[ev.text, ""]], "error");
      }
      break;
  }
}

// -- what the user types ------------------------------------------------------------------

const HELP = [
  "/join ROOM        join (or create) ROOM, in a new tab",
  "/part [REASON]    leave this tab's room",
  "/me ACTION        tell the room what you are doing",
  "/msg NICK TEXT    a private message, in its own tab",
  "/nick NAME        change your nickname",
  "/who              who is in this room",
  "/rooms            every room, and how many people are there",
  "/topic [TEXT]     show or set this room's topic",
  "/whois NICK       who is NICK",
  "/quit [REASON]    leave the chat",
  "//TEXT            say /TEXT",
];

function showHelp() {
  for (const line of HELP) addLine(active, [[line, ""]], "event");
}

function usage(text) {
  addLine(active, [["usage: " + text, ""]], "error");
}

// One line from the input box -> one command to the server.
function command(text) {
  const win = windows.get(active);
  const room = win && win.kind === "room" ? win.name.slice(1) : null;
  if (!text.startsWith("/") || text.startsWith("//")) {
    const line = text.startsWith("//") ? text.slice(1) : text;
    if (win && win.kind === "private") {
      send({type: "msg", to: win.name.slice(1), text: line});
    } else if (room) {
      send({type: "say", room, text: line});
      addLine(win.name, said(me, line), "me");  // the server does not echo our own lines
    } else {
      addLine(active, [["you are in no room: /join ROOM first", ""]], "error");
    }
    return;
  }
  const [name, ...words] = text.slice(1).split(" ");
  const rest = words.join(" ").trim();
  switch (name.toLowerCase()) {
    case "join":
      if (!rest) return usage("/join ROOM");
      send({type: "join", room: rest.replace(/^#/, "")});
      return;
    case "part":
      if (!room) return usage("/part in a room's tab");
      send({type: "part", room, reason: rest});
      return;
    case "me":
      if (!rest) return usage("/me ACTION");
      if (win && win.kind === "private") return send({type: "msg", to: win.name.slice(1), text: rest, action: true});
      if (!room) return usage("/me in a room's tab");
      send({type: "me", room, text: rest});
      return;
    case "msg": {
      const [to, ...message] = rest.split(" ");
      if (!to || !message.join(" ").trim()) return usage("/msg NICK TEXT");
      send({type: "msg", to, text: message.join(" ").trim()});
      return;
    }
    case "nick":
      if (!rest) return usage("/nick NAME");
      send({type: "nick", nick: rest});
      return;
    case "who": case "names":
      if (!room && !rest) return usage("/who in a room's tab");
      send({type: "who", room: rest ? rest.replace(/^#/, "") : room});
      return;
    case "rooms": case "list":
      send({type: "rooms"});
      return;
    case "topic":
      if (!room) return usage("/topic in a room's tab");
      send(rest ? {type: "topic", room, text: rest} : {type: "topic", room});
      return;
    case "whois":
      if (!rest) return usage("/whois NICK");
      send({type: "whois", nick: rest});
      return;
    case "quit":
      send({type: "quit", reason: rest});
      return;
    case "help":
      showHelp();
      return;
    default:
      addLine(active, [[`unknown command /${name}; try /help`, ""]], "error");
  }
}

// -- wiring ----------------------------------------------------------------------------

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  send({type: "nick", nick: $("nick").value.trim()});
});

$("say").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("line").value.trim();
  if (text) command(text);
  $("line").value = "";
});

connect();
