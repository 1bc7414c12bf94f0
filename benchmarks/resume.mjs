// Pages of benchmarks/resume.py: the library's own browser client
// (flask_sockets_channels/static/client.js) on Node's event loop, with the
// `ws` package as its WebSocket.
//
//   node benchmarks/resume.mjs '<JSON config>'
//
// Opens `pages` clients of `url` (a hub room whose messages are
// {"text": "n-<number>"}), waits until every one has joined and received a
// message, prints {"ready": true}, waits for a line on stdin, then sends
// SIGHUP to `master_pid` (gunicorn
// replaces its worker, whose sockets close with 1001) and measures, for each
// page, the time from the signal until it is back: its `recovered` event, or
// its first message after the restart when it does not resume. Then it
// checks that every page saw every number once, in order, after the first
// one it saw, and prints one JSON line of results. Bounded by
// `hard_timeout_s`.

import { performance } from "node:perf_hooks";
import WebSocket from "ws";

import { Socket } from "../flask_sockets_channels/static/client.mjs";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const hardTimer = setTimeout(() => {
  process.stderr.write(`resume client: hard timeout of ${cfg.hard_timeout_s} s\n`);
  process.exit(3);
}, (cfg.hard_timeout_s ?? 120) * 1000);
hardTimer.unref();

const pages = [];
let signalledAt = null;

function makePage(index) {
  const page = { numbers: [], back: null, recovered: null, reason: null, ready: false };
  const socket = new Socket(`${cfg.url}${cfg.url.includes("?") ? "&" : "?"}page=${index}`, {
    WebSocket,
  });
  socket.on("message", (data) => {
    const number = Number(String(data.text ?? "").slice(2));
    if (!Number.isFinite(number)) return;
    page.numbers.push(number);
    page.ready = true;
    if (signalledAt !== null && page.back === null && page.recovered === null && page.left) {
      page.back = performance.now() - signalledAt; // a plain reconnect: its first message
    }
  });
  socket.on("state", (state) => {
    if (signalledAt !== null && state !== "open") page.left = true;
  });
  socket.on("recovered", (answer) => {
    if (signalledAt === null) return;
    page.recovered = answer.recovered;
    page.reason = answer.reason;
    page.back = performance.now() - signalledAt;
  });
  page.socket = socket;
  return page;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, seconds, what) {
  const deadline = performance.now() + seconds * 1000;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
    await sleep(20);
  }
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

for (let index = 0; index < cfg.pages; index++) {
  pages.push(makePage(index));
  if (index % 50 === 49) await sleep(50); // the accept queue, not a thundering herd
}
await until(() => pages.every((page) => page.ready), 60, "every page joined");
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
await new Promise((resolve) => process.stdin.once("data", resolve)); // "go"

signalledAt = performance.now();
process.kill(cfg.master_pid, "SIGHUP");
await until(() => pages.every((page) => page.back !== null), cfg.back_timeout_s ?? 60, "every page back");
await sleep(cfg.settle_ms ?? 1000); // messages after the restart, too

let gaps = 0;
let twice = 0;
for (const page of pages) {
  for (let i = 1; i < page.numbers.length; i++) {
    const step = page.numbers[i] - page.numbers[i - 1];
    if (step > 1) gaps += step - 1;
    if (step < 1) twice += 1;
  }
  page.socket.close();
}
const back = pages.map((page) => page.back).sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    pages: pages.length,
    back_ms: { median: quantile(back, 0.5), p99: quantile(back, 0.99), max: back.at(-1) },
    recovered: pages.filter((page) => page.recovered === true).length,
    not_recovered: pages.filter((page) => page.recovered === false).map((page) => page.reason),
    missed: gaps,
    twice,
    messages_per_page: Math.round(pages.reduce((sum, page) => sum + page.numbers.length, 0) / pages.length),
  })}\n`,
);
process.exit(0);
