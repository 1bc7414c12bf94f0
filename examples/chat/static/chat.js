// The chat page: asks for a nickname, opens the room's socket and shows
// what arrives. User text goes into the page with textContent only, never
// as HTML.
"use strict";

const chat = document.getElementById("chat");
const log = document.getElementById("log");
const status = document.getElementById("status");
const joinForm = document.getElementById("join");
const sendForm = document.getElementById("send");
const nicknameInput = document.getElementById("nickname");
const textInput = document.getElementById("text");
const here = document.getElementById("here");
const openCount = document.getElementById("open");

// The server's open-connection count (Sockets.stats()), after each join and
// leave: what an operator watches against the limits the app sets.
async function showOpenCount() {
  try {
    const response = await fetch(chat.dataset.statsUrl);
    const stats = await response.json();
    openCount.textContent = `${stats.open} open`;
  } catch {
    openCount.textContent = "";
  }
}

let socket = null;
let nickname = "";

function show(className, user, text) {
  const item = document.createElement("li");
  item.className = className;
  if (user !== null) {
    const name = document.createElement("span");
    name.className = "user";
    name.textContent = user;
    item.append(name);
  }
  item.append(document.createTextNode(text));
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

// Who is in the room, in every process: the server sends the list with
// each join and leave notice.
function showHere(names) {
  const items = [...new Set(names)].map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    return item;
  });
  here.replaceChildren(...items);
}

const STATES = {
  connecting: "connecting…",
  open: null, // "connected as ..."
  reconnecting: "reconnecting…",
  closed: "not connected",
};

function setStatus(state) {
  const online = state === "open";
  status.textContent = online ? `connected as ${nickname}` : STATES[state];
  status.dataset.state = state;
  status.classList.toggle("online", online);
  joinForm.hidden = state !== "closed";
  sendForm.hidden = state === "closed";
}

function connect() {
  // The page carries the socket's URL (Flask's url_for). The client
  // reconnects by itself, resumes the room from the last message the page
  // shows (nothing twice, nothing missed), and keeps what is sent meanwhile.
  const url = new URL(chat.dataset.socketUrl, location.href);
  url.searchParams.set("user", nickname);
  socket = new FlaskSocketsChannels.Socket(url, {
    idleTimeout: Number(chat.dataset.idleTimeout),
    stopCodes: [1003, 1008],
  });
  socket.on("state", (state) => {
    setStatus(state);
    if (state === "open") {
      textInput.focus();
    } else {
      showHere([]);
    }
  });
  socket.on("recovered", (answer) => {
    if (!answer.recovered) {
      // The room's history could not cover what the page missed: start over
      // from what it keeps (the server sends it next).
      log.replaceChildren();
      show("notice", null, "some messages were missed while away");
    }
  });
  socket.on("message", (message) => {
    if (Array.isArray(message.here)) {
      showHere(message.here);
      showOpenCount();
    }
    if (message.kind === "join") {
      show("notice", null, `${message.user} joined`);
    } else if (message.kind === "leave") {
      show("notice", null, `${message.user} left`);
    } else if (message.kind === "error") {
      show("notice", null, message.text);
    } else {
      show("message", message.user, message.text);
    }
  });
}

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  nickname = nicknameInput.value.trim();
  if (nickname && socket === null) {
    connect();
  }
});

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = textInput.value;
  if (text && socket !== null) {
    socket.send({ user: nickname, text }); // queued while reconnecting
    textInput.value = "";
  }
});
