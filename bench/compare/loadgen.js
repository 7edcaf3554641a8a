// Load generator: many Socket.IO clients in one process, speaking raw frames over `ws`.
//
//   node bench/compare/loadgen.js '<json job>'
//   node bench/compare/loadgen.js @job.json
//
// Raw Engine.IO/Socket.IO text frames ("40", "42[...]", "421[...]") instead of
// socket.io-client keep the generator cheap, so the server under test is the
// bottleneck; it answers heartbeats ("2" -> "3") like a real client.  One job
// per run, bounded in time and count; the result is one JSON line on stdout.
//
// job = {
//   scenario: "latency" | "throughput" | "fanout" | "idle" | "deliver" | "openloop" | "connects",
//   url: "ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket",
//   urls: [url, url, ...]                       // per-client URL, cycled (optional; instead of url)
//   queries: ["&sessionID=..&token=..", ...]   // per-client URL suffix, cycled (optional)
//   clients: N,
//   ack: ["message-with-ack", {...}]           // latency: the event acked
//   ackTargets: [...]                          // optional: per-client payload overrides, cycled
//   echo: ["message", {...}], echoReply: "message-back", window: W   // throughput
//   fanout: ["broadcast", {...}], fanoutEvent: "broadcast", senders: 1, rounds: R // fanout
//   deliver: even clients send `echo` (acked, `window` in flight) to their partner, the next
//            odd client; counts `deliverEvent` at the odd clients and the CPU time of `cpuPids`
//   warmup: s, duration: s, serverPid: pid, settle: s
//   // openloop (bench/bench_app.py): `rate` events/s in total, sent on a schedule whatever
//   // the answers, round-robin over `senders` (client indices; default all), each asking an ack;
//   // `tag` prefixes `tagField` so the audience's copies (`deliveryEvent`) are timed too.
//   rate: R, tag: "run1", deliveryEvent: "new_message", drain: s
//   // With `cpuPids`, also `serverCpuMs`: their CPU time inside the measured window (bench_broadcast.py,
//   // and compare's latency and throughput runs, with `serverUsPerEvent`: that per ack or echo counted).
//   // Ack errors are counted by their `code` (ackErrorCodes; "other" without one); those with
//   // code "overloaded" (refused at once, nothing stored) are also `refused`, with their own rate
//   // and ack latency, and `firstError` is the first error of any other kind.
//   // connects: `concurrency` loops of connect, CONNECT accepted, close, for `duration` s (after
  //   `warmup` s, optional); with `cpuPids`, `serverUsPerEvent` is the server's CPU per connect.
// }
"use strict";
const WebSocket = require("ws");

// "@path": the job is in that file (10,000 sessions' queries overflow one argument's limit).
const arg = process.argv[2];
const job = JSON.parse(arg.startsWith("@") ? require("fs").readFileSync(arg.slice(1), "utf8") : arg);
const hardStop = setTimeout(() => fail("job took too long"), (job.timeout || 120) * 1000);

function fail(why) {
  console.log(JSON.stringify({ error: why }));
  process.exit(1);
}

function rssKb(pid) {
  try {
    const status = require("fs").readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  } catch (e) {
    return null;
  }
}

// One client: resolves once the Socket.IO CONNECT is accepted.
function connect(i) {
  const queries = job.queries || [""];
  const url = (job.urls ? job.urls[i % job.urls.length] : job.url) + queries[i % queries.length];
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const client = { ws, i, onEvent: null, connected: false };
    ws.on("message", (data) => {
      const text = data.toString();
      if (text === "2") return ws.send("3");
      if (text[0] === "0") return ws.send("40");
      if (text.startsWith("40")) {
        client.connected = true;
        return resolve(client);
      }
      if (text.startsWith("44")) return reject(new Error("CONNECT refused: " + text));
      if (client.onEvent && text[0] === "4") client.onEvent(text.slice(1));
    });
    ws.on("error", reject);
    ws.on("close", () => {
      if (!client.connected) reject(new Error("closed before connecting"));
      client.connected = false;
    });
  });
}

async function connectAll(n) {
  const clients = new Array(n);
  let next = 0;
  const inFlight = Math.min(job.connectConcurrency || 50, n);
  async function worker() {
    while (next < n) {
      const i = next++;
      clients[i] = await connect(i);
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker));
  return clients;
}

const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : null;
}

function cpu(start) {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1000; // ms
}

function payloadFor(base, i) {
  if (!job.ackTargets) return base;
  return Object.assign({}, base, job.ackTargets[i % job.ackTargets.length]);
}

async function latency(clients) {
  const samples = [];
  let errors = 0;
  let measuring = false;
  let running = true;
  const [event, payload] = job.ack;
  const loops = clients.map(
    (c) =>
      new Promise((done) => {
        let id = 0;
        let sent = 0;
        const body = JSON.stringify(payloadFor(payload, c.i));
        const send = () => {
          if (!running || !c.connected) return done();
          id += 1;
          sent = now();
          c.ws.send(`42${id}[${JSON.stringify(event)},${body}]`);
        };
        c.onEvent = (text) => {
          if (text.startsWith(`3${id}[`)) {
            if (measuring) samples.push(now() - sent);
            if (text.includes('"error"')) errors += 1;
            send();
          }
        };
        send();
      }),
  );
  await sleep(job.warmup);
  measuring = true;
  const cpu0 = process.cpuUsage();
  const server0 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  await sleep(job.duration);
  measuring = false;
  const server1 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  const cpuMs = cpu(cpu0);
  running = false;
  await Promise.race([Promise.all(loops), sleep(5)]);
  samples.sort((a, b) => a - b);
  const serverCpuMs = cpuSpent(server0, server1);
  return {
    samples: samples.length,
    p50: pct(samples, 0.5),
    p99: pct(samples, 0.99),
    perSec: samples.length / job.duration,
    errors,
    loadgenCpu: cpuMs / (job.duration * 1000),
    serverCpuMs,
    serverUsPerEvent: usPerEvent(serverCpuMs, samples.length),
  };
}

async function throughput(clients) {
  let received = 0;
  let running = true;
  const [event, payload] = job.echo;
  const prefix = `2["${job.echoReply}"`;
  for (const c of clients) {
    const body = `${JSON.stringify(event)},${JSON.stringify(payloadFor(payload, c.i))}]`;
    let id = 0;
    // echoAck: each event asks for an ack, and the ack is what completes it.
    const send = job.echoAck ? () => c.ws.send(`42${++id}[${body}`) : () => c.ws.send(`42[${body}`);
    const done = job.echoAck ? (text) => text[0] === "3" : (text) => text.startsWith(prefix);
    c.onEvent = (text) => {
      if (done(text)) {
        received += 1;
        if (running && c.connected) send();
      }
    };
    for (let k = 0; k < job.window; k++) send();
  }
  await sleep(job.warmup);
  const start = received;
  const cpu0 = process.cpuUsage();
  const server0 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  await sleep(job.duration);
  const count = received - start;
  const server1 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  const cpuMs = cpu(cpu0);
  running = false;
  await sleep(1); // let what is in flight drain before the sockets close
  const serverCpuMs = cpuSpent(server0, server1);
  return {
    perSec: count / job.duration,
    loadgenCpu: cpuMs / (job.duration * 1000),
    serverCpuMs,
    serverUsPerEvent: usPerEvent(serverCpuMs, count),
  };
}

async function fanout(clients) {
  const prefix = `2["${job.fanoutEvent}"`;
  const times = [];
  let missing = 0;
  const [event, payload] = job.fanout;
  const receivers = job.receivers ? clients.slice(0, job.receivers) : clients;
  const sender = job.senderIndex !== undefined ? clients[job.senderIndex] : clients[0];
  for (let round = 0; round < job.rounds + 1; round++) {
    let got = 0;
    const tag = `r${round}-${Math.random().toString(36).slice(2)}`;
    const all = new Promise((resolve) => {
      for (const c of receivers) {
        c.onEvent = (text) => {
          if (text.startsWith(prefix) && text.includes(tag)) {
            got += 1;
            if (got === receivers.length) resolve();
          }
        };
      }
    });
    const body = Object.assign({}, payloadFor(payload, sender.i));
    body[job.tagField || "text"] = tag;
    const started = now();
    sender.ws.send(`42[${JSON.stringify(event)},${JSON.stringify(body)}]`);
    const finished = await Promise.race([all.then(() => true), sleep(10).then(() => false)]);
    if (!finished) missing += receivers.length - got;
    else if (round > 0) times.push(now() - started); // round 0 warms up
    await sleep(0.05);
  }
  times.sort((a, b) => a - b);
  return { receivers: receivers.length, rounds: times.length, p50: pct(times, 0.5), max: times[times.length - 1], missing };
}

// Open loop: messages leave on schedule (rate * elapsed), whether or not earlier ones were
// answered, so a slow server shows as latency and a shortfall, not as a politely lower rate.
async function openloop(clients) {
  const [event, payload] = job.ack;
  const field = job.tagField || "content";
  const senders = (job.senders || clients.map((c) => c.i)).map((i) => clients[i]);
  const bodies = senders.map((c) => payloadFor(payload, c.i));
  const sentAt = []; // by message number k (also its ack id)
  const measured = []; // k sent inside the measured window
  const ackMs = [];
  const deliveryMs = [];
  let acked = 0;
  let ackErrors = 0;
  let firstError = null;
  const ackErrorCodes = {};
  let refused = 0;
  let refusedInWindow = 0;
  const refusedMs = [];
  let deliveries = 0;
  let ackedInWindow = 0;
  let deliveredInWindow = 0;
  let window = null; // [start, end] in ms
  const marker = `"${field}":"${job.tag}:`;
  const deliveryPrefix = `2["${job.deliveryEvent || "new_message"}"`;
  const senderOf = []; // k -> sending client index
  for (const c of clients) {
    c.onEvent = (text) => {
      if (text[0] === "3") {
        const k = parseInt(text.slice(1), 10);
        const t = sentAt[k];
        if (t === undefined) return;
        const at = now();
        if (text.includes('"error"')) {
          ackErrors += 1;
          const m = /"code":"([A-Za-z_]+)"/.exec(text);
          const code = m ? m[1] : "other";
          ackErrorCodes[code] = (ackErrorCodes[code] || 0) + 1;
          if (code === "overloaded") {
            refused += 1;
            if (window && at >= window[0] && at <= window[1]) refusedInWindow += 1;
            if (measured[k]) refusedMs.push(at - t);
          } else if (firstError === null) firstError = text.slice(0, 200);
        } else {
          acked += 1;
          if (window && at >= window[0] && at <= window[1]) ackedInWindow += 1;
          if (measured[k]) ackMs.push(at - t);
        }
        return;
      }
      if (!text.startsWith(deliveryPrefix)) return;
      const p = text.indexOf(marker);
      if (p < 0) return;
      const k = parseInt(text.slice(p + marker.length), 10);
      if (senderOf[k] === c.i) return; // the sender's own copy
      deliveries += 1;
      const at = now();
      if (window && at >= window[0] && at <= window[1]) deliveredInWindow += 1;
      if (measured[k]) deliveryMs.push(at - sentAt[k]);
    };
  }
  let k = 0;
  let next = 0;
  let measuring = false;
  const t0 = now();
  const total = job.warmup + job.duration;
  const cpu0 = { v: null };
  let server0 = null;
  let server1 = null;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const t = now();
      const elapsed = (t - t0) / 1000;
      if (!measuring && elapsed >= job.warmup) {
        measuring = true;
        window = [t, t + job.duration * 1000];
        cpu0.v = process.cpuUsage();
        if (job.cpuPids) server0 = job.cpuPids.map(procCpuMs);
      }
      if (measuring && server1 === null && job.cpuPids && elapsed >= total) server1 = job.cpuPids.map(procCpuMs);
      const due = Math.floor(job.rate * Math.min(elapsed, total));
      while (k < due) {
        const s = next++ % senders.length;
        const c = senders[s];
        const body = Object.assign({}, bodies[s]);
        body[field] = `${job.tag}:${k}:`;
        sentAt[k] = now();
        senderOf[k] = c.i;
        if (measuring) measured[k] = true;
        if (c.connected) c.ws.send(`42${k}[${JSON.stringify(event)},${JSON.stringify(body)}]`);
        k += 1;
      }
      if (elapsed >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const cpuMs = cpu(cpu0.v);
  const drainUntil = now() + (job.drain || 10) * 1000;
  while (acked + ackErrors < k && now() < drainUntil) await sleep(0.05);
  await sleep(0.2); // the last deliveries
  ackMs.sort((a, b) => a - b);
  deliveryMs.sort((a, b) => a - b);
  refusedMs.sort((a, b) => a - b);
  return {
    offered: job.rate,
    sent: k,
    acked,
    ackErrors,
    ackErrorCodes,
    firstError,
    refused,
    refusedPerSec: refusedInWindow / job.duration,
    refusedP50: pct(refusedMs, 0.5),
    refusedP99: pct(refusedMs, 0.99),
    unanswered: k - acked - ackErrors,
    perSec: ackedInWindow / job.duration,
    ackP50: pct(ackMs, 0.5),
    ackP99: pct(ackMs, 0.99),
    deliveries,
    deliveriesPerSec: deliveredInWindow / job.duration,
    deliveryP50: pct(deliveryMs, 0.5),
    deliveryP99: pct(deliveryMs, 0.99),
    loadgenCpu: cpuMs / (job.duration * 1000),
    serverCpuMs: cpuSpent(server0, server1),
  };
}

// CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat.
function procCpuMs(pid) {
  const stat = require("fs").readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
}

// CPU ms the `cpuPids` spent between two readings of them (null without `cpuPids`).
function cpuSpent(before, after) {
  return before && after ? after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0) : null;
}

// Server CPU us per event counted in the window (null without `cpuPids` or events).
function usPerEvent(cpuMs, count) {
  return cpuMs !== null && count ? (cpuMs * 1000) / count : null;
}

async function deliver(clients) {
  let delivered = 0;
  let acked = 0;
  let sentTotal = 0;
  let running = true;
  const [event, payload] = job.echo;
  const prefix = `2["${job.deliverEvent}"`;
  for (const c of clients) {
    if (c.i % 2 === 1) {
      c.onEvent = (text) => {
        if (text.startsWith(prefix)) delivered += 1;
      };
      continue;
    }
    const body = `${JSON.stringify(event)},${JSON.stringify(payloadFor(payload, c.i))}]`;
    let id = 0;
    const send = () => {
      sentTotal += 1;
      c.ws.send(`42${++id}[${body}`);
    };
    c.onEvent = (text) => {
      if (text[0] === "3") {
        acked += 1;
        if (running && c.connected) send();
      }
    };
    for (let k = 0; k < job.window; k++) send();
  }
  await sleep(job.warmup);
  const start = delivered;
  const acked0 = acked;
  const server0 = job.cpuPids.map(procCpuMs);
  const cpu0 = process.cpuUsage();
  await sleep(job.duration);
  const count = delivered - start;
  const server1 = job.cpuPids.map(procCpuMs);
  const cpuMs = cpu(cpu0);
  const acks = acked - acked0;
  running = false;
  await sleep(1);
  const serverCpuMs = cpuSpent(server0, server1);
  return {
    perSec: count / job.duration,
    acksPerSec: acks / job.duration,
    serverCpuMs,
    cpuUsPerDelivery: usPerEvent(serverCpuMs, count),
    sentTotal,
    loadgenCpu: cpuMs / (job.duration * 1000),
  };
}

// Connect (authenticated by the query), wait for the CONNECT to be accepted, close; again.
async function connects() {
  let done = 0;
  let failed = 0;
  let running = true;
  let n = 0;
  const loops = Array.from({ length: job.concurrency || 50 }, async () => {
    while (running) {
      try {
        const c = await connect(n++);
        done += 1;
        c.ws.terminate();
      } catch (e) {
        failed += 1;
      }
    }
  });
  // The first `warmup` s (optional) is not counted: the server's first connects warm its caches.
  if (job.warmup) await sleep(job.warmup);
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const start = done;
  const server0 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  await sleep(job.duration);
  const count = done - start;
  const seconds = (now() - t0) / 1000;
  const server1 = job.cpuPids ? job.cpuPids.map(procCpuMs) : null;
  const cpuMs = cpu(cpu0);
  running = false;
  await Promise.race([Promise.all(loops), sleep(5)]);
  const serverCpuMs = cpuSpent(server0, server1);
  return {
    perSec: count / seconds,
    failed,
    loadgenCpu: cpuMs / (seconds * 1000),
    serverCpuMs,
    serverUsPerEvent: usPerEvent(serverCpuMs, count),
  };
}

async function idle(clients) {
  const before = job.serverPid ? rssKb(job.serverPid) : null;
  await sleep(job.settle || 2);
  const open = clients.filter((c) => c.connected).length;
  return { open, rssKb: job.serverPid ? rssKb(job.serverPid) : null, rssKbAtConnect: before };
}

(async () => {
  if (job.scenario === "connects") {
    console.log(JSON.stringify(await connects()));
    clearTimeout(hardStop);
    process.exit(0);
  }
  const t0 = now();
  const clients = await connectAll(job.clients);
  const connectMs = now() - t0;
  const run = { latency, throughput, fanout, idle, openloop, deliver }[job.scenario];
  const result = await run(clients);
  result.connectMs = connectMs;
  result.baseRssKb = job.baseRssKb;
  console.log(JSON.stringify(result));
  for (const c of clients) c.ws.terminate();
  clearTimeout(hardStop);
  process.exit(0);
})().catch((e) => fail(String(e && e.stack ? e.stack : e)));
