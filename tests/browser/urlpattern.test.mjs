// Differential test of URL Pattern matching: the hub's `match_urlpattern` subscriptions against
// headless Chromium's own `URLPattern` (Debian's /usr/bin/chromium, driven by playwright-core),
// on seeded generated patterns and topics. Run by tests/api/browser.rs with SSE_HUB_BIN set.
//
// For every pattern Chromium accepts, the hub must accept it too (200) and deliver exactly the
// topics Chromium's `new URLPattern(pattern, hub).test(topic, hub)` says it matches, the hub's
// URL being the base of both; a pattern Chromium refuses, the hub must refuse (400).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './support.mjs';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const HUB_BIN = process.env.SSE_HUB_BIN ?? join(HERE, '..', '..', 'target', 'debug', 'sse-hub');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SEED = Number(process.env.URLPATTERN_SEED ?? 23);
const KEY = 'urlpattern-test-key-0123456789-abcdefghij';
const SENTINEL = 'urn:sentinel';
/** Valid for Chromium, refused by the hub on purpose: a backreference or a look-around needs a
 * backtracking engine, and the hub matches in linear time only. */
const BY_DESIGN = ['/:x(a\\1)', '/books/:id(\\d+(?=x))', '/:x((?<!a)b)'];
/** Valid for Chromium, refused by the `urlpattern` crate the hub uses ("invalid domain
 * character"): an escaped `?` in a group after a hostname wildcard. The hub errs on the safe
 * side (400); seeds 4, 8 and 16 generate more of this family. Pinned so a fix shows. */
const KNOWN_DIVERGENCES = ['http{s}?://example.com*{\\?:q}?'];

function jwt(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', KEY).update(body).digest('base64url')}`;
}
const PUBLISHER = jwt({ mercure: { publish: ['*'] } });

/** mulberry32: a small seeded generator, so a failure can be replayed with its seed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}



/** Patterns and topics from pieces that exercise every component, relative and absolute. */
function generate(host, seed) {
  const random = rng(seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const schemes = ['https://', 'http://', 'http{s}?://', '*://', '(https|urn)://'];
  const hosts = ['example.com', '*.example.com', ':sub.example.com', '{*.}?example.com', host,
    'EXAMPLE.com', '127.0.0.1:*'];
  const paths = ['/books/:id', '/books/*', '/books/:id(\\d+)', '/books{/:id}?', '/:kind/:id',
    '/books/:id/chapters/*', '*', '/books/:id+', '/b(o+)ks/:id', '/books/{:id}.json',
    '/.well-known/:rest*', '/caf%C3%A9/:x', '/café/:x', '/a b/:x', '/books/:id?'];
  const tails = ['', '', '?q=:q', '\\?*', '#:h', '?*#*', '{\\?:q}?'];
  const bad = ['/books/:id(', '/:', '/books/((a))', '/{a', 'https://exa mple.com/x'];
  const patterns = new Set();
  while (patterns.size < 70) {
    const path = pick(paths);
    const relative = random() < 0.3;
    const pattern = relative ? `${path}${pick(tails)}` : `${pick(schemes)}${pick(hosts)}${path}${pick(tails)}`;
    // `*` alone is the protocol's wildcard, matching every topic before any URL Pattern rule.
    if (pattern !== '*') patterns.add(pattern);
  }
  for (const b of [...bad, ...BY_DESIGN, ...KNOWN_DIVERGENCES]) patterns.add(b);
  const topicHosts = ['example.com', 'EXAMPLE.com', 'api.example.com', 'a.b.example.com', host,
    'example.org', '127.0.0.1:1'];
  const topicPaths = ['/books/1', '/books/42', '/books/abc', '/books/1/chapters/2', '/books/',
    // Not the hub's own path: Mercure 1.0 reserves it, and publishing there is refused.
    '/books', '/authors/7', '/boooks/3', '/books/1.json', '/.well-known/other', '/caf%C3%A9/1',
    '/café/1', '/a%20b/1', '/Books/1'];
  const topicTails = ['', '', '?q=1', '?q=1&r=2', '#h', '?#', '?q=1#x'];
  const topics = new Set(['books/1', 'urn:isbn:1', 'not a url', 'http://[::1/x', '//example.com/books/1']);
  while (topics.size < 70) {
    const path = `${pick(topicPaths)}${pick(topicTails)}`;
    const r = random();
    topics.add(r < 0.3 ? path : `${pick(['https://', 'http://', 'urn://'])}${pick(topicHosts)}${path}`);
  }
  return { patterns: [...patterns], topics: [...topics] };
}

/** Reads an SSE body until the sentinel event; resolves with the data of the events before it. */
async function readUntilSentinel(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const got = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended before the sentinel');
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart());
      if (data.length === 0) continue;
      if (data[0] === 'sentinel') {
        reader.cancel().catch(() => {});
        return got;
      }
      got.push(Number(data[0]));
    }
  }
}

let browser;
let hub;
const dataDir = mkdtempSync(join(tmpdir(), 'sse-hub-urlpattern-'));

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  if (hub && hub.exitCode === null) hub.kill('SIGKILL');
  await browser?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

test('the hub and Chromium agree on every generated pattern and topic', { timeout: 120_000 }, async () => {
  const port = await freePort();
  hub = spawn(HUB_BIN, ['--bind', `127.0.0.1:${port}`, '--jwt-key', KEY, '--allow-anonymous',
    '--tick-interval', '0', '--max-subscribers-per-ip', '1000', '--data-dir', dataDir],
  { env: { ...process.env, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  hub.stderr.on('data', (d) => { log += d; });
  await waitFor('the hub', () => log.includes('listening on http') || hub.exitCode !== null);
  assert.equal(hub.exitCode, null, `hub exited: ${log}`);
  const host = `127.0.0.1:${port}`;
  const endpoint = `http://${host}/.well-known/mercure`;
  const { patterns, topics } = generate(host, SEED);

  // Chromium's verdicts: null for a pattern it refuses, else which topics it matches.
  const page = await browser.newPage();
  const expected = await page.evaluate(([patterns, topics, base]) => patterns.map((p) => {
    let pattern;
    try { pattern = new URLPattern(p, base); } catch { return null; }
    return topics.map((t) => { try { return pattern.test(t, base); } catch { return false; } });
  }), [patterns, topics, endpoint]);
  await page.close();

  // One subscription per pattern, then every topic published once (its index as data).
  const streams = await Promise.all(patterns.map(async (p) => {
    const url = new URL(endpoint);
    url.searchParams.append('match_urlpattern', p);
    url.searchParams.append('match', SENTINEL);
    const response = await fetch(url, { headers: { Accept: 'text/event-stream' } });
    return response;
  }));
  const disagreements = [];
  for (let i = 0; i < patterns.length; i++) {
    const accepted = streams[i].status === 200;
    if (BY_DESIGN.includes(patterns[i]) || KNOWN_DIVERGENCES.includes(patterns[i])) {
      assert.notEqual(expected[i], null, `Chromium refuses ${patterns[i]}`);
      assert.equal(streams[i].status, 400, `the hub accepts ${patterns[i]}`);
      expected[i] = null;
      continue;
    }
    if (accepted !== (expected[i] !== null)) {
      const body = accepted ? '' : await streams[i].text();
      disagreements.push(`${JSON.stringify(patterns[i])}: Chromium ${expected[i] === null ? 'refuses' : 'accepts'}, the hub answers ${streams[i].status} ${body.trim()}`);
    }
  }
  const readers = streams.map((s) => (s.status === 200 ? readUntilSentinel(s) : null));
  for (let t = 0; t < topics.length; t++) {
    const res = await fetch(endpoint, {
      method: 'POST',
      body: new URLSearchParams([['topic', topics[t]], ['data', String(t)]]),
      headers: { Authorization: `Bearer ${PUBLISHER}` },
    });
    assert.equal(res.status, 200, `publish ${topics[t]}: ${await res.text()}`);
  }
  await fetch(endpoint, {
    method: 'POST',
    body: new URLSearchParams([['topic', SENTINEL], ['data', 'sentinel']]),
    headers: { Authorization: `Bearer ${PUBLISHER}` },
  });
  let pairs = 0;
  for (let i = 0; i < patterns.length; i++) {
    if (!readers[i] || expected[i] === null) continue;
    const got = new Set(await readers[i]);
    for (let t = 0; t < topics.length; t++) {
      pairs += 1;
      if (got.has(t) !== expected[i][t]) {
        disagreements.push(`${JSON.stringify(patterns[i])} against ${JSON.stringify(topics[t])}: Chromium ${expected[i][t]}, the hub ${got.has(t)}`);
      }
    }
  }
  const matched = expected.flat().filter((x) => x === true).length;
  console.log(`seed ${SEED}: ${patterns.length} patterns, ${topics.length} topics, ${pairs} pairs, ${matched} matches`);
  assert.ok(matched > 50, `too few matching pairs to mean anything (${matched})`);
  assert.deepEqual(disagreements, [], `seed ${SEED}: the hub and Chromium disagree`);
});
