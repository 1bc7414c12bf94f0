// Load client of benchmarks/run.py, on Node's event loop with the `ws` package.
//
//   node benchmarks/client.mjs '<JSON config>'
//
// Runs one scenario against one server and prints one JSON line of results
// on stdout (progress and errors go to stderr). Every scenario is bounded in
// time (`hard_timeout_s` ends the process whatever happens) and in count.
//
// It also measures, over the measuring window only:
//   * the server's CPU time, from /proc/<pid>/stat (utime + stime) of the
//     PIDs in `pids` (summed) and of `aux_pids` (reported apart, e.g. redis);
//   * its own CPU time (process.cpuUsage(), all of its threads), so a reader
//     can see that the client was not the bottleneck.
//
// Scenarios: echo (also `large` and deflate: the same loop with other
// parameters), rtt, idle, fanout. See benchmarks/run.py for what each means;
// hold: benchmarks/hold.py; fanout-many: benchmarks/fanout_many.py.

import { readdirSync, readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const CLK_TCK = cfg.clk_tck ?? 100;

const hardTimer = setTimeout(() => {
  process.stderr.write(`client: hard timeout of ${cfg.hard_timeout_s} s, giving up\n`);
  process.exit(3);
}, (cfg.hard_timeout_s ?? 60) * 1000);
hardTimer.unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- /proc ------------------------------------------------------------------

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function cpuOf(pids) {
  return (pids ?? []).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

function systemSeconds(pids) {
  return (pids ?? []).reduce((sum, pid) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return sum + Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[12]) / CLK_TCK;
  }, 0);
}

// Context switches of every thread of the processes (a thread that ends
// within the window takes its count with it: only steady loads are exact).
function contextSwitches(pids) {
  let total = 0;
  for (const pid of pids ?? []) {
    let tids = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const text = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
        for (const m of text.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) {
          total += Number(m[1]);
        }
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return total;
}

function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)[1]);
  return { threads: field("Threads"), rss_kib: field("VmRSS") };
}

// A window of measurement: wall time, server CPU, aux CPU, client CPU.
function startWindow() {
  return {
    t0: performance.now(),
    server0: cpuOf(cfg.pids),
    sys0: systemSeconds(cfg.pids),
    switches0: contextSwitches(cfg.pids),
    aux0: cpuOf(cfg.aux_pids),
    client0: process.cpuUsage(),
  };
}

function endWindow(w) {
  const seconds = (performance.now() - w.t0) / 1000;
  const serverCpu = cpuOf(cfg.pids) - w.server0;
  const serverSys = systemSeconds(cfg.pids) - w.sys0;
  const switches = contextSwitches(cfg.pids) - w.switches0;
  const client = process.cpuUsage(w.client0);
  const clientCpu = (client.user + client.system) / 1e6;
  return {
    seconds,
    server_cpu_s: serverCpu,
    server_sys_share_pct: serverCpu > 0 ? (100 * serverSys) / serverCpu : null,
    server_context_switches: switches,
    aux_cpu_s: cfg.aux_pids ? cpuOf(cfg.aux_pids) - w.aux0 : null,
    client_cpu_s: clientCpu,
    client_cpu_pct: (100 * clientCpu) / seconds,
  };
}

// -- helpers ----------------------------------------------------------------

// `onCreate(ws)`, if given, is called before the handshake: listeners it adds
// see the messages that come in the same read as the server's 101.
function connect(url, { deflate = false, timeoutMs = 10000, onCreate = null } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: deflate ? { threshold: 0 } : false,
      handshakeTimeout: timeoutMs,
      maxPayload: 64 << 20,
      // The echoes are checked by type and length; validating UTF-8 would
      // only add client CPU.
      skipUTF8Validation: true,
    });
    onCreate?.(ws);
    ws.once("open", () => {
      ws.removeAllListeners("error");
      ws.on("error", (err) => process.stderr.write(`client: ${url}: ${err.message}\n`));
      resolve(ws);
    });
    ws.once("error", reject);
    ws.once("unexpected-response", (req, res) => {
      reject(new Error(`${url}: HTTP ${res.statusCode} instead of 101`));
      req.destroy();
    });
  });
}

// Open `count` connections, at most `concurrency` handshakes at a time.
async function connectMany(urls, count, concurrency, options) {
  const sockets = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      sockets[i] = await connect(urls[i % urls.length], options);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return sockets;
}

function closeAll(sockets, timeoutMs = 10000) {
  return Promise.race([
    Promise.all(
      sockets.map(
        (ws) =>
          new Promise((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) return resolve();
            ws.once("close", resolve);
            if (ws.readyState === WebSocket.OPEN) ws.close(1000);
          }),
      ),
    ),
    sleep(timeoutMs).then(() => {
      const left = sockets.filter((ws) => ws.readyState !== WebSocket.CLOSED);
      process.stderr.write(`client: ${left.length} connections not closed in time; cut\n`);
      left.forEach((ws) => ws.terminate());
    }),
  ]);
}

function percentiles(samples, count) {
  if (count === 0) return { p50_us: null, p99_us: null };
  const sorted = samples.subarray(0, count).sort();
  const at = (q) => sorted[Math.min(count - 1, Math.floor(q * count))] * 1000; // ms -> µs
  return { p50_us: at(0.5), p99_us: at(0.99) };
}

// -- echo: N connections, a window of in-flight messages each ---------------

async function echo() {
  const { url, connections, window, size, binary, deflate } = cfg;
  const payload = Buffer.alloc(size, binary ? 0xa5 : 0x61);
  const sockets = await connectMany([url], connections, 16, { deflate });
  const extensions = sockets[0].extensions;
  const maxSamples = cfg.max_samples ?? 4_000_000;
  const samples = new Float64Array(maxSamples);
  let nSamples = 0;
  let received = 0;
  let bytes = 0;
  let inFlight = 0;
  let mismatches = 0;
  let phase = "warmup"; // -> measure -> drain
  let drained = null;

  sockets.forEach((ws) => {
    const sent = new Float64Array(window); // send times, a ring in send order
    let head = 0;
    let tail = 0;
    const send = () => {
      sent[tail++ % window] = performance.now();
      inFlight++;
      ws.send(payload, { binary });
    };
    ws.on("message", (data, isBinary) => {
      const now = performance.now();
      const t = sent[head++ % window];
      inFlight--;
      if (isBinary !== binary || data.length !== size) mismatches++;
      if (phase === "measure") {
        received++;
        bytes += data.length;
        if (nSamples < maxSamples) samples[nSamples++] = now - t;
      }
      if (phase !== "drain") send();
      else if (inFlight === 0 && drained) drained();
    });
    for (let i = 0; i < window; i++) send();
  });

  await sleep(cfg.warmup_s * 1000);
  const w = startWindow();
  phase = "measure";
  await sleep(cfg.duration_s * 1000);
  phase = "drain";
  const m = endWindow(w);
  const measured = received;
  if (inFlight > 0) {
    await Promise.race([new Promise((resolve) => (drained = resolve)), sleep(10000)]);
  }
  await closeAll(sockets);
  return {
    ...m,
    messages: measured,
    msgs_per_s: measured / m.seconds,
    mb_per_s: bytes / 1e6 / m.seconds,
    ...percentiles(samples, nSamples),
    server_cpu_us_per_msg: measured ? (1e6 * m.server_cpu_s) / measured : null,
    server_switches_per_msg: measured ? m.server_context_switches / measured : null,
    extensions,
    mismatches,
    lost: inFlight,
  };
}

// -- rtt: one connection, one message at a time ------------------------------

async function rtt() {
  const { url, size } = cfg;
  const payload = Buffer.alloc(size, 0x61);
  const ws = await connect(url);
  const maxCount = cfg.max_count ?? 200_000;
  const samples = new Float64Array(maxCount);
  let n = 0;
  let w = null;
  let phase = "warmup";
  let t = 0;
  const finished = new Promise((resolve) => {
    ws.on("message", () => {
      const now = performance.now();
      if (phase === "measure") {
        samples[n++] = now - t;
        if (n >= maxCount) phase = "done";
      }
      if (phase === "done") return resolve();
      t = performance.now();
      ws.send(payload, { binary: false });
    });
  });
  t = performance.now();
  ws.send(payload, { binary: false });
  await sleep(cfg.warmup_s * 1000);
  w = startWindow();
  phase = "measure";
  await Promise.race([finished, sleep(cfg.duration_s * 1000)]);
  phase = "done";
  const m = endWindow(w);
  await closeAll([ws]);
  return {
    ...m,
    messages: n,
    msgs_per_s: n / m.seconds,
    ...percentiles(samples, n),
    server_cpu_us_per_msg: n ? (1e6 * m.server_cpu_s) / n : null,
    server_switches_per_msg: n ? m.server_context_switches / n : null,
  };
}

// -- idle: many open connections, their threads and memory ------------------

async function waitForThreads(pid, target, settleMs, maxMs) {
  // Until the count is at `target` or has not changed for `settleMs`.
  const start = performance.now();
  let last = procStatus(pid).threads;
  let since = performance.now();
  while (performance.now() - start < maxMs) {
    await sleep(100);
    const now = procStatus(pid).threads;
    if (now <= target) return now;
    if (now !== last) {
      last = now;
      since = performance.now();
    } else if (performance.now() - since >= settleMs) {
      return now;
    }
  }
  return procStatus(pid).threads;
}

async function idle() {
  const { url, count, concurrency } = cfg;
  const pid = cfg.pids[0];
  const settleMs = cfg.settle_s * 1000;
  // A first connection, closed, so that what starts once per process
  // (imports, the keepalive scheduler's first start...) is in the baseline.
  const first = await connect(url);
  await new Promise((resolve) => {
    first.once("message", resolve);
    first.send("warm-up");
  });
  await closeAll([first]);
  await waitForThreads(pid, 0, settleMs, 5000);
  const base = procStatus(pid);
  const rounds = [];
  for (let round = 0; round < cfg.rounds; round++) {
    const t0 = performance.now();
    const sockets = await connectMany([url], count, concurrency, {});
    const openSeconds = (performance.now() - t0) / 1000;
    await sleep(settleMs);
    const open = procStatus(pid);
    // Every connection still answers.
    let answered = 0;
    await Promise.race([
      Promise.all(
        sockets.map(
          (ws) =>
            new Promise((resolve) => {
              ws.once("message", () => {
                answered++;
                resolve();
              });
              ws.send("still there?");
            }),
        ),
      ),
      sleep(10000),
    ]);
    const t1 = performance.now();
    await closeAll(sockets);
    const closeSeconds = (performance.now() - t1) / 1000;
    const threadsAfter = await waitForThreads(pid, base.threads, settleMs, 10000);
    const after = procStatus(pid);
    rounds.push({
      open_s: openSeconds,
      close_s: closeSeconds,
      answered,
      threads_open: open.threads,
      rss_kib_open: open.rss_kib,
      threads_after: threadsAfter,
      rss_kib_after: after.rss_kib,
    });
    process.stderr.write(
      `client: idle round ${round + 1}: ${open.threads} threads open, ${threadsAfter} after close\n`,
    );
  }
  const r1 = rounds[0];
  const last = rounds[rounds.length - 1];
  return {
    count,
    threads_base: base.threads,
    rss_kib_base: base.rss_kib,
    rounds,
    threads_per_conn: (r1.threads_open - base.threads) / count,
    rss_kib_per_conn: (r1.rss_kib_open - base.rss_kib) / count,
    threads_after_close: last.threads_after,
    threads_residual: last.threads_after - base.threads,
    // With a pool that keeps its threads (gunicorn gthread), the residual
    // after the first round is the pool; a leak would grow it each round.
    threads_growth_last_round:
      rounds.length > 1 ? last.threads_after - rounds[rounds.length - 2].threads_after : null,
  };
}

// -- fanout: one publisher, many members -------------------------------------

async function fanout() {
  const { pub_url, sub_urls, members, window, size } = cfg;
  const subs = await connectMany(sub_urls, members, 16, {});
  const pub = await connect(pub_url);
  const RING = 1 << 16;
  const counts = new Int32Array(RING);
  const sentAt = new Float64Array(RING);
  const maxSamples = cfg.max_samples ?? 4_000_000;
  const samples = new Float64Array(maxSamples);
  let nSamples = 0;
  let probesSeen = 0;
  const gotProbe = new Uint8Array(members);
  let phase = "join"; // -> warmup -> measure -> drain
  let nextSeq = 0;
  let completed = 0;
  let delivered = 0;
  let drained = null;
  const pad = "x".repeat(Math.max(0, size - 10));
  const publish = () => {
    const seq = nextSeq++;
    sentAt[seq % RING] = performance.now();
    pub.send(String(seq).padStart(10, "0") + pad);
  };
  subs.forEach((ws, i) => {
    ws.on("message", (data) => {
      const now = performance.now();
      if (data[0] === 0x70 /* "p": a probe */) {
        if (!gotProbe[i]) {
          gotProbe[i] = 1;
          probesSeen++;
        }
        return;
      }
      const seq = Number(data.toString("latin1", 0, 10));
      const slot = seq % RING;
      if (phase === "measure") {
        delivered++;
        if (nSamples < maxSamples) samples[nSamples++] = now - sentAt[slot];
      }
      if (++counts[slot] === members) {
        counts[slot] = 0;
        completed++;
        if (phase === "drain") {
          if (completed === nextSeq && drained) drained();
        } else {
          publish();
        }
      }
    });
  });
  // Members join their room once their view runs, just after the handshake:
  // publish probes until every member has one.
  const joinDeadline = performance.now() + 10000;
  while (probesSeen < members) {
    if (performance.now() > joinDeadline) {
      throw new Error(`only ${probesSeen} of ${members} members joined within 10 s`);
    }
    pub.send("p" + pad);
    await sleep(50);
  }
  await sleep(100);
  phase = "warmup";
  for (let i = 0; i < window; i++) publish();
  await sleep(cfg.warmup_s * 1000);
  const w = startWindow();
  phase = "measure";
  await sleep(cfg.duration_s * 1000);
  phase = "drain";
  const m = endWindow(w);
  const measured = delivered;
  if (completed < nextSeq) {
    await Promise.race([new Promise((resolve) => (drained = resolve)), sleep(10000)]);
  }
  await closeAll([pub, ...subs]);
  return {
    ...m,
    members,
    deliveries: measured,
    deliveries_per_s: measured / m.seconds,
    ...percentiles(samples, nSamples),
    server_cpu_us_per_delivery: measured ? (1e6 * m.server_cpu_s) / measured : null,
    server_switches_per_delivery: measured ? m.server_context_switches / measured : null,
    aux_cpu_us_per_delivery:
      measured && m.aux_cpu_s !== null ? (1e6 * m.aux_cpu_s) / measured : null,
    lost: nextSeq - completed,
  };
}

// -- hold: many idle connections held for a while, keepalive pings on -------

// A process that is gone, or a zombie (its status has no memory left).
function alive(pid) {
  try {
    return /^VmRSS:/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

async function hold() {
  const { url, count, concurrency } = cfg;
  const pid = cfg.pids[0];
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  const base = procStatus(pid);
  const samples = [];
  let died = null;
  let dropped = 0;
  let pings = 0;
  const dropCodes = {};
  let phase = "open";
  const sample = () => {
    if (died !== null) return;
    if (!alive(pid)) {
      died = { at_s: seconds(), phase };
      process.stderr.write(`client: the worker ${pid} is gone at ${died.at_s.toFixed(1)} s (${phase})\n`);
      return;
    }
    samples.push({ t_s: seconds(), phase, ...procStatus(pid) });
  };
  const sampler = setInterval(sample, cfg.sample_s * 1000);
  const watch = (ws) => {
    ws.on("ping", () => pings++);
    ws.once("close", (code) => {
      if (phase === "close") return;
      dropped++;
      dropCodes[code] = (dropCodes[code] ?? 0) + 1;
    });
    return ws;
  };
  let opened = 0;
  let failedOpens = 0;
  const sockets = [];
  let next = 0;
  async function opener() {
    while (next < count && died === null) {
      next++;
      try {
        sockets.push(watch(await connect(url, { timeoutMs: 30000 })));
        opened++;
      } catch (err) {
        failedOpens++;
        if (failedOpens <= 5) process.stderr.write(`client: open failed: ${err.message}\n`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, opener));
  const openSeconds = seconds();
  sample();
  const opened_at = samples[samples.length - 1] ?? procStatus(pid);
  process.stderr.write(`client: ${opened} open in ${openSeconds.toFixed(1)} s; holding ${cfg.hold_s} s\n`);
  phase = "hold";
  const holdStart = seconds();
  while (seconds() - holdStart < cfg.hold_s && died === null) await sleep(500);
  const held = died === null && alive(pid) ? procStatus(pid) : null;
  phase = "answer";
  let answered = 0;
  const live = sockets.filter((ws) => ws.readyState === WebSocket.OPEN);
  const answerStart = seconds();
  // One message on each connection and its echo: `answer_concurrency` in
  // flight at a time, or all at once (0: a burst).
  const ask = (ws) =>
    new Promise((resolve) => {
      ws.once("message", () => {
        answered++;
        resolve();
      });
      ws.send("still there?");
    });
  const window = cfg.answer_concurrency || live.length;
  let nextAsk = 0;
  async function asker() {
    while (nextAsk < live.length) await ask(live[nextAsk++]);
  }
  await Promise.race([
    Promise.all(Array.from({ length: Math.min(window, live.length) }, asker)),
    sleep(cfg.answer_timeout_s * 1000),
  ]);
  const answerSeconds = seconds() - answerStart;
  phase = "close";
  const closeStart = seconds();
  await closeAll(sockets, 60000);
  const closeSeconds = seconds() - closeStart;
  let after = null;
  if (died === null && alive(pid)) {
    await waitForThreads(pid, base.threads, cfg.settle_s * 1000, 60000);
    after = procStatus(pid);
  }
  clearInterval(sampler);
  return {
    count,
    opened,
    failed_opens: failedOpens,
    open_s: openSeconds,
    hold_s: cfg.hold_s,
    dropped,
    drop_codes: dropCodes,
    pings,
    answered,
    answer_s: answerSeconds,
    answer_concurrency: cfg.answer_concurrency,
    close_s: closeSeconds,
    died,
    base,
    opened_status: opened_at,
    held,
    after,
    rss_kib_per_conn: opened && held ? (held.rss_kib - base.rss_kib) / opened : null,
    threads_per_conn: opened && held ? (held.threads - base.threads) / opened : null,
    samples,
  };
}

// -- fanout-many: one room of thousands of members, rounds of one message ---

// Close `sockets`, `concurrency` closing handshakes at a time (0: all at once),
// within `timeoutMs`; those still open then are cut.
async function closeSome(sockets, concurrency, timeoutMs) {
  if (!concurrency) return closeAll(sockets, timeoutMs);
  const deadline = performance.now() + timeoutMs;
  let next = 0;
  async function closer() {
    while (next < sockets.length && performance.now() < deadline) {
      const ws = sockets[next++];
      if (ws.readyState === WebSocket.CLOSED) continue;
      await new Promise((resolve) => {
        ws.once("close", resolve);
        if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      });
    }
  }
  await Promise.race([
    Promise.all(Array.from({ length: Math.min(concurrency, sockets.length) }, closer)),
    sleep(timeoutMs),
  ]);
  const left = sockets.filter((ws) => ws.readyState !== WebSocket.CLOSED);
  if (left.length) {
    process.stderr.write(`client: ${left.length} connections not closed in time; cut\n`);
    left.forEach((ws) => ws.terminate());
  }
}

// GET `url` on a connection of its own; the body, or an error for a status
// other than 200, a failed connection or no answer within `timeoutMs`.
function httpGet(url, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("error", reject);
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

async function fanoutMany() {
  const { url, publish_url: publishUrl, count, concurrency, rounds, size } = cfg;
  const pid = cfg.pids[0];
  const roundTimeoutMs = cfg.round_timeout_s * 1000;
  const t0 = performance.now();
  const seconds = () => (performance.now() - t0) / 1000;
  const base = procStatus(pid);
  let phase = "open"; // -> join -> publish -> close
  let died = null;
  let peak = null; // the largest RSS sampled while publishing
  // Per connection, in the order they were started: whether it opened; 1
  // once "joined" came, 2 once closed (after joining or not); its arrival
  // time of each round's message.
  const isOpen = new Uint8Array(count);
  const state = new Uint8Array(count);
  const arrivals = new Float64Array(rounds * count).fill(NaN);
  const sockets = [];
  let joined = 0; // "joined" received
  let closedUnjoined = 0;
  let live = 0; // joined and still open
  let dropped = 0;
  const dropCodes = {};
  let delivered = 0;
  let late = 0; // a round's message after that round gave up waiting
  let duplicates = 0;
  let unexpected = 0;
  let current = -1; // the round in progress
  let pending = 0; // members still to get the current round's message
  let publishFailed = null;

  // One wait at a time, ended by its condition, the worker's death or its bound.
  let waiter = null;
  const check = () => {
    if (waiter && (died !== null || waiter.cond())) {
      const w = waiter;
      waiter = null;
      clearTimeout(w.timer);
      w.resolve(died === null);
    }
  };
  const waitUntil = (cond, ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiter = null;
        resolve(false);
      }, ms);
      waiter = { cond, resolve, timer };
      check();
    });

  // Whether the worker is still there; the first time it is not, when and
  // in which phase (and round) it went, and how many deliveries came before.
  let round = -1;
  const stillAlive = () => {
    if (died !== null) return false;
    if (alive(pid)) return true;
    died = { at_s: seconds(), phase, round: phase === "publish" ? round + 1 : null, delivered };
    process.stderr.write(
      `client: the worker ${pid} is gone at ${died.at_s.toFixed(1)} s (${phase}` +
        `${phase === "publish" ? `, round ${round + 1}` : ""}), ${delivered} delivered\n`,
    );
    check();
    return false;
  };
  const status = () => {
    try {
      return stillAlive() ? procStatus(pid) : null;
    } catch {
      return null; // gone between the two reads
    }
  };
  const serverCpu = () => {
    try {
      return stillAlive() ? cpuOf(cfg.pids) : null;
    } catch {
      return null;
    }
  };
  const sampler = setInterval(() => {
    const now = status();
    if (now && phase === "publish" && (!peak || now.rss_kib > peak.rss_kib)) peak = now;
  }, cfg.sample_s * 1000);

  const watch = (ws, i) => {
    ws.once("open", () => (isOpen[i] = 1));
    ws.on("message", (data) => {
      const now = performance.now();
      if (state[i] === 0) {
        if (data.length === 6 && data.toString("latin1") === "joined") {
          state[i] = 1;
          joined++;
          live++;
          check();
        } else {
          unexpected++;
        }
        return;
      }
      const seq = Number(data.toString("latin1", 0, 10));
      if (!(seq >= 0 && seq < rounds) || data.length !== size) {
        unexpected++;
        return;
      }
      const slot = seq * count + i;
      if (!Number.isNaN(arrivals[slot])) {
        duplicates++;
        return;
      }
      arrivals[slot] = now;
      delivered++;
      if (seq === current) {
        pending--;
        check();
      } else {
        late++;
      }
    });
    ws.once("close", (code) => {
      if (!isOpen[i]) return; // a failed handshake: counted as such
      if (state[i] === 1) {
        live--;
        if (current >= 0 && Number.isNaN(arrivals[current * count + i])) pending--;
      } else {
        closedUnjoined++;
      }
      state[i] = 2;
      if (phase !== "close") {
        dropped++;
        dropCodes[code] = (dropCodes[code] ?? 0) + 1;
      }
      check();
    });
  };

  // Open: `concurrency` handshakes at a time.
  let failedOpens = 0;
  let next = 0;
  async function opener() {
    while (next < count && died === null) {
      const i = next++;
      try {
        sockets.push(await connect(url, { timeoutMs: 30000, onCreate: (ws) => watch(ws, i) }));
      } catch (err) {
        failedOpens++;
        if (failedOpens <= 5) process.stderr.write(`client: open failed: ${err.message}\n`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, opener));
  const opened = sockets.length;
  const openSeconds = seconds();
  process.stderr.write(`client: ${opened} open in ${openSeconds.toFixed(1)} s\n`);

  // Join: every open connection has said "joined" (or closed).
  phase = "join";
  const joinStart = seconds();
  await waitUntil(() => joined + closedUnjoined >= opened, cfg.join_timeout_s * 1000);
  const notJoined = opened - joined;
  const joinSeconds = seconds() - joinStart;
  const joinedStatus = status();
  process.stderr.write(`client: ${joined} joined in ${joinSeconds.toFixed(1)} s\n`);

  // Publish: one round at a time, each until every live member has it.
  phase = "publish";
  const w = startWindow();
  const roundsDone = [];
  const lastSamples = [];
  const latencies = new Float64Array(rounds * count);
  let nLatencies = 0;
  for (let k = 0; k < rounds && live > 0 && stillAlive(); k++) {
    publishFailed = null;
    pending = live;
    const expected = live;
    const cpu0 = serverCpu();
    const sent = performance.now();
    current = round = k;
    const answered = httpGet(`${publishUrl}?seq=${k}&size=${size}`, roundTimeoutMs).then(
      (body) => ({ ms: performance.now() - sent, ...JSON.parse(body) }),
      (err) => {
        publishFailed = err.message;
        process.stderr.write(`client: publish ${k + 1} failed: ${err.message}\n`);
        check();
        return null;
      },
    );
    const complete = await waitUntil(() => pending <= 0 || publishFailed !== null, roundTimeoutMs);
    const ended = performance.now();
    const answer = await answered; // bounded: no answer within the round's bound is an error
    const now = status();
    if (now && (!peak || now.rss_kib > peak.rss_kib)) peak = now;
    const cpu1 = serverCpu();
    const cpu = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
    let first = Infinity;
    let last = -Infinity;
    let got = 0;
    for (let i = 0; i < count; i++) {
      const at = arrivals[k * count + i];
      if (Number.isNaN(at)) continue;
      got++;
      first = Math.min(first, at);
      last = Math.max(last, at);
      latencies[nLatencies++] = at - sent;
    }
    const lastMs = got ? last - sent : null;
    roundsDone.push({
      expected,
      got,
      complete: complete && got === expected,
      first_ms: got ? first - sent : null,
      last_ms: lastMs,
      waited_ms: ended - sent,
      deliveries_per_s: got ? got / (lastMs / 1000) : 0,
      publish_answer_ms: answer?.ms ?? null,
      server_members: answer?.members ?? null,
      publish_error: publishFailed,
      server_cpu_s: cpu,
    });
    if (got === expected && got > 0) lastSamples.push(lastMs);
    process.stderr.write(
      `client: round ${k + 1}: ${got} of ${expected}, last after ` +
        `${lastMs === null ? "-" : lastMs.toFixed(0)} ms\n`,
    );
    current = -1;
    if (publishFailed !== null) break;
  }
  let m = null;
  try {
    m = stillAlive() ? endWindow(w) : null;
  } catch {
    stillAlive(); // gone while being read
  }
  const after = status();

  // Per member: the rounds it did not get (of the rounds published).
  let missedMembers = 0;
  let missedDeliveries = 0;
  for (let i = 0; i < count; i++) {
    if (!isOpen[i]) continue;
    let missed = 0;
    for (let k = 0; k < roundsDone.length; k++) {
      if (Number.isNaN(arrivals[k * count + i])) missed++;
    }
    if (missed) missedMembers++;
    missedDeliveries += missed;
  }
  const inRounds = roundsDone.reduce((sum, r) => sum + r.got, 0);
  const roundSeconds = roundsDone.reduce((sum, r) => sum + (r.last_ms ?? r.waited_ms), 0) / 1000;
  const sorted = [...lastSamples].sort((a, b) => a - b);
  const at = (q) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
  const all = percentiles(latencies, nLatencies);

  // Close the connections, `close_concurrency` at a time (0: all at once),
  // then watch the worker until it has settled (its thread count unchanged
  // for 2 s, and it answers GET / within 1 s), died (a burst of closes can
  // starve gunicorn's heartbeat too), or `close_watch_s` passed.
  phase = "close";
  const closeStart = seconds();
  await closeSome(sockets, cfg.close_concurrency, 60000);
  const closeSeconds = seconds() - closeStart;
  const rootUrl = new URL("/", publishUrl).href;
  const watchEnd = performance.now() + cfg.close_watch_s * 1000;
  let settled = false;
  let threads = -1;
  let since = performance.now();
  while (!settled && performance.now() < watchEnd) {
    const now = status();
    if (!now) break;
    if (now.threads !== threads) {
      threads = now.threads;
      since = performance.now();
    } else if (performance.now() - since >= 2000) {
      settled = await httpGet(rootUrl, 1000).then(
        () => true,
        () => false,
      );
    }
    if (!settled) await sleep(500); // /proc has no event to wait on
  }
  const settleSeconds = seconds() - closeStart;
  const afterClose = status();
  clearInterval(sampler);
  return {
    count,
    opened,
    failed_opens: failedOpens,
    open_s: openSeconds,
    joined,
    not_joined: notJoined,
    join_s: joinSeconds,
    dropped,
    drop_codes: dropCodes,
    rounds: roundsDone,
    rounds_asked: rounds,
    delivered,
    deliveries_per_s: roundSeconds > 0 ? inRounds / roundSeconds : null,
    // The time until the last member had the message, over the rounds every
    // member got in time.
    last_p50_ms: at(0.5),
    last_p99_ms: at(0.99),
    complete_rounds: lastSamples.length,
    // Each delivery's time from the publish request.
    delivery_p50_ms: all.p50_us === null ? null : all.p50_us / 1000,
    delivery_p99_ms: all.p99_us === null ? null : all.p99_us / 1000,
    missed_members: missedMembers,
    missed_deliveries: missedDeliveries,
    late,
    duplicates,
    unexpected,
    died,
    publish_window: m,
    server_cpu_us_per_delivery: m && inRounds ? (1e6 * m.server_cpu_s) / inRounds : null,
    base,
    joined_status: joinedStatus,
    peak_publishing: peak,
    after_publishing: after,
    close_s: closeSeconds,
    settled,
    settle_s: settleSeconds,
    after_close: afterClose,
  };
}

// ---------------------------------------------------------------------------

const scenarios = { echo, rtt, idle, fanout, hold, "fanout-many": fanoutMany };

try {
  const run = scenarios[cfg.scenario];
  if (!run) throw new Error(`unknown scenario ${cfg.scenario}`);
  const result = await run();
  process.stdout.write(JSON.stringify({ scenario: cfg.scenario, ...result }) + "\n");
  process.exit(0);
} catch (err) {
  process.stderr.write(`client: ${err.stack ?? err}\n`);
  process.exit(1);
}
