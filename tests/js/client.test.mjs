// Unit tests of the browser client's logic under Node's own test runner:
//   node --test tests/js/
// A fake WebSocket and a fake window stand in for the browser's; timers are
// Node's mocked timers, so every delay is exact and nothing waits.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, mock, test } from "node:test";

import { Socket, after } from "../../flask_sockets_channels/static/client.mjs";

class FakeWebSocket {
  static made = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.made.push(this);
  }

  send(text) {
    assert.equal(this.readyState, 1, "sent on a socket that is not open");
    this.sent.push(text);
  }

  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }

  // What the browser does when the server acts:
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(data) {
    this.onmessage?.({ data: typeof data === "string" ? data : JSON.stringify(data) });
  }

  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

class FakeWindow extends EventTarget {
  constructor() {
    super();
    this.location = { href: "http://chat.example/room/lobby" };
    this.document = { visibilityState: "visible" };
  }
}

let window;

function socket(options = {}) {
  return new Socket("/ws/lobby", { WebSocket: FakeWebSocket, window, random: () => 1, ...options });
}

const last = () => FakeWebSocket.made.at(-1);

beforeEach(() => {
  FakeWebSocket.made = [];
  window = new FakeWindow();
  mock.timers.enable({ apis: ["setTimeout"] });
});

afterEach(() => {
  mock.timers.reset();
});

test("connects to the page's host with ws: or wss:", () => {
  socket();
  assert.equal(last().url, "ws://chat.example/ws/lobby");
  window.location.href = "https://chat.example/room/lobby";
  socket();
  assert.equal(last().url, "wss://chat.example/ws/lobby");
});

test("states: connecting, open, reconnecting, open, closed", () => {
  const states = [];
  const client = socket();
  client.on("state", (state) => states.push(state));
  assert.equal(client.state, "connecting");
  last().open();
  last().drop();
  mock.timers.tick(500);
  last().open();
  client.close();
  assert.deepEqual(states, ["open", "reconnecting", "open", "closed"]);
  assert.equal(last().closedWith, 1000);
});

test("reconnects with exponential backoff and full jitter, capped", () => {
  const draws = [1, 0.5, 1, 1, 1];
  socket({ random: () => draws.shift(), maxDelay: 4000 });
  last().open();
  const delays = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = FakeWebSocket.made.length;
    last().drop(); // the first after open, then the server is down: before open
    let waited = 0;
    while (FakeWebSocket.made.length === before) {
      mock.timers.tick(100);
      waited += 100;
      assert.ok(waited <= 4000, "no reconnect within maxDelay");
    }
    delays.push(waited);
  }
  // Bounds 500, then 2000, 8000, 32000, 128000 (a close before open counts
  // twice), capped at 4000; each scaled by its draw.
  assert.deepEqual(delays, [500, 1000, 4000, 4000, 4000]);
});

test("an open connection resets the backoff", () => {
  socket();
  last().drop(); // before open: refused
  mock.timers.tick(30000);
  last().open();
  last().drop();
  mock.timers.tick(499);
  assert.equal(FakeWebSocket.made.length, 2);
  mock.timers.tick(1);
  assert.equal(FakeWebSocket.made.length, 3);
});

test("a close before open backs off harder (a refused handshake)", () => {
  socket();
  last().drop(1006); // counts as two failures: bound 1000, not 500
  mock.timers.tick(999);
  assert.equal(FakeWebSocket.made.length, 1);
  mock.timers.tick(1);
  assert.equal(FakeWebSocket.made.length, 2);
});

test("stops for good on 1008, 1003 and the app's own codes", () => {
  for (const code of [1008, 1003, 4401]) {
    FakeWebSocket.made = [];
    const closed = [];
    const client = socket({ stopCodes: [1003, 1008, 4401] });
    client.on("closed", (event) => closed.push(event));
    last().open();
    last().drop(code, "go away");
    mock.timers.tick(60000);
    assert.equal(FakeWebSocket.made.length, 1);
    assert.equal(client.state, "closed");
    assert.deepEqual(closed, [{ code, reason: "go away" }]);
    assert.throws(() => client.send("late"), /closed/);
  }
});

test("the browser's online and visibility events reconnect at once", () => {
  socket({ minDelay: 60000 });
  last().open();
  last().drop();
  window.dispatchEvent(new Event("online"));
  assert.equal(FakeWebSocket.made.length, 2);
  last().open();
  last().drop();
  window.document.visibilityState = "hidden";
  window.dispatchEvent(new Event("visibilitychange"));
  assert.equal(FakeWebSocket.made.length, 2);
  window.document.visibilityState = "visible";
  window.dispatchEvent(new Event("visibilitychange"));
  assert.equal(FakeWebSocket.made.length, 3);
});

test("remembers the last position per room and resumes with it", () => {
  const received = [];
  const client = socket();
  client.on("message", (data, meta) => received.push([data, meta.room, meta.position]));
  last().open();
  last().receive({ room: "lobby", position: "e1:5", data: { text: "a" } });
  last().receive({ room: "lobby", position: "e1:6", data: { text: "b" } });
  last().receive({ room: "news", position: "e1:2", data: "n" });
  last().drop();
  mock.timers.tick(500);
  const since = new URL(last().url).searchParams.get("since");
  assert.deepEqual(JSON.parse(since), { lobby: "e1:6", news: "e1:2" });
  last().open();
  // The server replays from there; what the page has is dropped.
  last().receive({ room: "lobby", position: "e1:6", data: { text: "b" } });
  last().receive({ room: "lobby", position: "e1:7", data: { text: "c" } });
  assert.deepEqual(
    received.map(([data]) => data),
    [{ text: "a" }, { text: "b" }, "n", { text: "c" }],
  );
});

test("tells the page whether the server could resume", () => {
  const told = [];
  const client = socket();
  client.on("recovered", (message) => told.push(message));
  last().open();
  last().receive({ room: "lobby", recovered: false, reason: "too old", position: "e2:40" });
  assert.deepEqual(told, [{ room: "lobby", recovered: false, reason: "too old", position: "e2:40" }]);
  assert.equal(client.positions.lobby, "e2:40");
});

test("a first join's notice gives the room's position, and no recovered event", () => {
  const told = [];
  const client = socket();
  client.on("recovered", (message) => told.push(message));
  last().open();
  last().receive({ room: "lobby", recovered: null, reason: null, position: "e1:0" });
  assert.deepEqual(told, []);
  last().drop();
  mock.timers.tick(500);
  // A room that was empty when the page joined: it resumes from its start.
  assert.deepEqual(JSON.parse(new URL(last().url).searchParams.get("since")), { lobby: "e1:0" });
});

test("messages sent while not connected wait in a bounded queue, in order", () => {
  const client = socket({ queueSize: 3 });
  for (const text of ["1", "2", "3", "4"]) client.send(text);
  last().open();
  assert.deepEqual(last().sent, ["2", "3", "4"]); // the oldest was dropped
  client.send({ live: true });
  assert.deepEqual(last().sent.at(-1), '{"live":true}');
  last().drop();
  client.send("queued");
  mock.timers.tick(500);
  last().open();
  assert.deepEqual(last().sent, ["queued"]);
});

test("a full queue can refuse instead of dropping the oldest", () => {
  const client = socket({ queueSize: 1, queueOverflow: "error" });
  client.send("kept");
  assert.throws(() => client.send("refused"), /send queue full/);
  last().open();
  assert.deepEqual(last().sent, ["kept"]);
});

test("silence past idleTimeout is a dead connection: it reconnects", () => {
  socket({ idleTimeout: 10000 });
  last().open();
  mock.timers.tick(9000);
  last().receive(""); // the server's heartbeat: alive, and not a message
  mock.timers.tick(9000);
  assert.equal(FakeWebSocket.made.length, 1);
  mock.timers.tick(1000);
  assert.equal(FakeWebSocket.made.length, 2);
  assert.equal(FakeWebSocket.made[0].closedWith, 4000);
});

test("frames that are not envelopes reach the page as they are", () => {
  const received = [];
  const client = socket();
  client.on("message", (data) => received.push(data));
  last().open();
  last().receive('{"kind": "join", "user": "ann"}');
  last().receive("not JSON");
  last().receive("");
  assert.deepEqual(received, [{ kind: "join", user: "ann" }, "not JSON"]);
});

test("positions compare within an epoch; another epoch is always new", () => {
  assert.equal(after("e:2", undefined), true);
  assert.equal(after("e:10", "e:9"), true);
  assert.equal(after("e:9", "e:10"), false);
  assert.equal(after("e:9", "e:9"), false);
  assert.equal(after("e:1733-2", "e:1733-1"), true);
  assert.equal(after("e:1733-0", "e:1732-5"), true);
  assert.equal(after("e:1732-5", "e:1733-0"), false);
  assert.equal(after("f:1", "e:9"), true);
});

test("fits the size budget: 4 KB minified and gzipped, here not even minified", () => {
  const source = readFileSync(new URL("../../flask_sockets_channels/static/client.js", import.meta.url));
  assert.ok(gzipSync(source, { level: 9 }).length <= 4096);
});
