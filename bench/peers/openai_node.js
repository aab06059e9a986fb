#!/usr/bin/env node
// openai-node peer for bench/tls_bench.sh: N client.chat.completions.create calls, at most C in
// flight (a C-permit semaphore gating a lazy producer: call i+C starts only when one of the C in
// flight has finished), the content string of every reply kept, no retries.
//
// The request is bench/peers/request.json with "Report id: 000000" replaced by the call's index.
// openai-node sends through Node's fetch (undici), which speaks HTTP/1.1 only here: at C in
// flight it opens up to C connections.
//
// TLS: Node verifies the server against its bundled CAs plus the file named by the environment
// variable NODE_EXTRA_CA_CERTS (read at start-up).
//
//   NODE_EXTRA_CA_CERTS=DIR/ca.pem node bench/peers/openai_node.js \
//       --node-modules build/bench/node_modules --base-url https://127.0.0.1:PORT/v1 -n 10000 -c 1000
//
// --node-modules DIR: the node_modules folder holding `openai` (default: env OPENAI_NODE_MODULES).
// Prints one JSON line: ok, err, errors (by kind), loop_s (first call -> last reply), version.
// Exit status 0 when it ran (even with failed calls: see err), 1 on a crash, 2 on bad usage.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

function parseArgs(argv) {
  const o = {
    'node-modules': process.env.OPENAI_NODE_MODULES || '',
    'api-key': 'sk-bench-0000000000000000',
    model: '',
    request: path.join(__dirname, 'request.json'),
    'timeout-ms': 120000,
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^-+/, '');
    if (!(key in o) && !['base-url', 'n', 'c'].includes(key)) usage(`unknown option ${argv[i]}`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    o[key] = argv[++i];
  }
  for (const k of ['n', 'c', 'timeout-ms']) o[k] = Number(o[k]);
  if (!o['base-url'] || !(o.n > 0) || !(o.c > 0) || !o['node-modules']) usage('missing or bad arguments');
  return o;
}

function usage(why) {
  console.error(`openai_node.js: ${why}\nusage: node openai_node.js --node-modules DIR --base-url URL -n N -c C` +
    ' [--model M] [--api-key K] [--request FILE] [--timeout-ms MS]');
  process.exit(2);
}

class Semaphore {
  constructor(n) { this.free = n; this.waiters = []; }
  acquire() {
    if (this.free > 0) { this.free--; return Promise.resolve(); }
    return new Promise((r) => this.waiters.push(r));
  }
  release() {
    const w = this.waiters.shift();
    if (w) w(); else this.free++;
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = path.resolve(o['node-modules']);
  const mod = createRequire(path.join(dir, 'noop.js'))('openai');
  const OpenAI = mod.OpenAI || mod.default || mod;
  const version = JSON.parse(fs.readFileSync(path.join(dir, 'openai', 'package.json'), 'utf8')).version;
  const tmpl = JSON.parse(fs.readFileSync(o.request, 'utf8'));
  const client = new OpenAI({ baseURL: o['base-url'], apiKey: o['api-key'], maxRetries: 0, timeout: o['timeout-ms'] });

  const params = (i) => ({
    model: o.model || tmpl.model,
    temperature: tmpl.temperature,
    max_tokens: tmpl.max_tokens,
    messages: tmpl.messages.map((m) => ({
      role: m.role,
      content: m.role === 'user' ? m.content.replace('000000', String(i).padStart(6, '0')) : m.content,
    })),
  });

  const results = new Array(o.n).fill(null);
  const errors = {};
  const sem = new Semaphore(o.c);
  const inflight = new Set();
  let shown = 0;

  async function one(i) {
    try {
      const r = await client.chat.completions.create(params(i));
      results[i] = r.choices[0].message.content;
    } catch (e) {
      const kind = e && e.status ? `http_${e.status}` : (e && e.constructor ? e.constructor.name : 'Error');
      errors[kind] = (errors[kind] || 0) + 1;
      if (shown++ < 3) console.error(`call ${i}: ${e && (e.cause || e.message || e)}`);
    } finally {
      sem.release();
    }
  }

  const t0 = process.hrtime.bigint();
  for (let i = 0; i < o.n; i++) {
    await sem.acquire();
    const p = one(i);
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  }
  await Promise.all([...inflight]);
  const loopS = Number(process.hrtime.bigint() - t0) / 1e9;
  const ok = results.reduce((s, r) => s + (r !== null ? 1 : 0), 0);
  console.log(JSON.stringify({
    peer: 'openai-node', version, node: process.version, n: o.n, c: o.c, ok, err: o.n - ok, errors,
    loop_s: Number(loopS.toFixed(4)),
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
