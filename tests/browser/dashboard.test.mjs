// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core),
// against real sse-hub processes and the repo's nginx.conf. Run by tests/api/browser.rs with
// SSE_HUB_BIN set to the binary under test; output files go to BROWSER_OUT (a temp dir).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './support.mjs';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const HUB_BIN = process.env.SSE_HUB_BIN ?? join(REPO, 'target', 'debug', 'sse-hub');
const OUT = process.env.BROWSER_OUT ?? mkdtempSync(join(tmpdir(), 'sse-hub-browser-'));
const KEY = 'browser-test-key-0123456789-abcdefghij';
const ISSUER = 'https://example.com';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// ---- helpers -------------------------------------------------------------------------------

function jwt(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', KEY).update(body).digest('base64url')}`;
}
// A 0.x publisher token: the tests' own publishes use it, beside the page's 1.0 tokens.
const PUBLISHER = jwt({ mercure: { publish: ['*'] } });

/** A Mercure 1.0 access token (RFC 9068) for the hub at `base`, granting `actions` on
 * `topics` (`{match, match_type}` objects). */
function accessToken(base, actions, topics) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: ISSUER, aud: `${base}/.well-known/mercure`, sub: 'browser-test', client_id: ISSUER,
    iat: now, exp: now + 3600, jti: `urn:uuid:${crypto.randomUUID()}`,
    authorization_details: [{ type: 'https://mercure.rocks/authorization-detail', actions, topics }],
  };
  const body = `${b64({ alg: 'HS256', typ: 'at+jwt' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', KEY).update(body).digest('base64url')}`;
}



const children = new Set();

/** Where each hub keeps its durable history: one directory per port, so a hub restarted on
 * the same port finds its history again. */
const DATA_ROOT = mkdtempSync(join(tmpdir(), 'sse-hub-browser-data-'));

/** Starts a hub on `port` and resolves once it listens. */
async function startHub(port, extra = []) {
  const args = ['--bind', `127.0.0.1:${port}`, '--jwt-key', KEY, '--issuer', ISSUER, '--allow-anonymous',
    '--retry', '500ms', '--data-dir', join(DATA_ROOT, String(port)), ...extra];
  const child = spawn(HUB_BIN, args, { env: { ...process.env, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.on('exit', () => children.delete(child));
  await waitFor(`hub on ${port}`, () => log.includes('listening on http') || child.exitCode !== null);
  assert.equal(child.exitCode, null, `hub exited: ${log}`);
  return child;
}

async function stopHub(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

async function publish(base, form) {
  const body = new URLSearchParams(form);
  const res = await fetch(`${base}/.well-known/mercure`, {
    method: 'POST', body, headers: { Authorization: `Bearer ${PUBLISHER}` },
  });
  const text = await res.text();
  assert.equal(res.status, 200, `publish failed: ${text}`);
  return text;
}

/** Starts nginx with the repo's nginx.conf and its HTTPS include (ports, upstream and
 * certificate substituted). */
async function startNginx(upstream) {
  const prefix = mkdtempSync(join(tmpdir(), 'sse-hub-nginx-'));
  mkdirSync(join(prefix, 'logs'));
  mkdirSync(join(prefix, 'temp'));
  mkdirSync(join(prefix, 'deploy'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(prefix, 'key.pem'), '-out', join(prefix, 'cert.pem')], { stdio: 'ignore' });
  const [port, tlsPort] = [await freePort(), await freePort()];
  const swap = (text, from, to) => {
    assert.equal(text.split(from).length, 2, `the nginx file must contain ${from} once`);
    return text.replace(from, to);
  };
  let conf = readFileSync(join(REPO, 'nginx.conf'), 'utf8');
  conf = swap(conf, 'listen 127.0.0.1:8000;', `listen 127.0.0.1:${port};`);
  conf = swap(conf, 'server 127.0.0.1:8080;', `server ${upstream};`);
  conf = swap(conf, '# include deploy/nginx-tls.conf;', 'include deploy/nginx-tls.conf;');
  let tls = readFileSync(join(REPO, 'deploy/nginx-tls.conf'), 'utf8');
  tls = swap(tls, 'listen 127.0.0.1:8443 ssl http2;', `listen 127.0.0.1:${tlsPort} ssl http2;`);
  tls = swap(tls, '/etc/ssl/sse-hub/fullchain.pem', join(prefix, 'cert.pem'));
  tls = swap(tls, '/etc/ssl/sse-hub/privkey.pem', join(prefix, 'key.pem'));
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  writeFileSync(join(prefix, 'deploy/nginx-tls.conf'), tls);
  copyFileSync(join(REPO, 'deploy/nginx-locations.conf'), join(prefix, 'deploy/nginx-locations.conf'));
  const bin = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find(existsSync) ?? 'nginx';
  const child = spawn(bin, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'],
    { stdio: 'ignore', detached: true });
  children.add(child);
  child.on('exit', () => children.delete(child));
  await waitFor('nginx', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
    return res?.ok;
  });
  return { child, port, tlsPort };
}

let browser;
let hubPort;
let hub;
let base;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  hubPort = await freePort();
  hub = await startHub(hubPort, ['--tick-interval', '250ms']);
  base = `http://127.0.0.1:${hubPort}`;
});

after(async () => {
  await browser?.close();
  for (const child of children) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
  }
  rmSync(DATA_ROOT, { recursive: true, force: true });
});

async function openPage(url = `${base}/`, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, ...options });
  const page = await context.newPage();
  await page.goto(url);
  return page;
}

const text = (page, selector) => page.locator(selector).textContent();

// ---- tests ---------------------------------------------------------------------------------

test('the dashboard opens and its clock ticks', async () => {
  const page = await openPage();
  await waitFor('stream open', async () => (await page.getAttribute('#conn-state', 'data-state')) === 'open');
  const seen = new Set();
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && seen.size < 3) {
    seen.add(await text(page, '#clock'));
    await page.waitForTimeout(100);
  }
  // A changing text: at least two changes after the first value within 3 s.
  assert.ok(seen.size >= 3, `clock showed ${[...seen]}`);
  await page.context().close();
});

test('the activity chart plots subscribers and deliveries/s as they change', async () => {
  const page = await openPage();
  await waitFor('stream open', async () => (await page.getAttribute('#conn-state', 'data-state')) === 'open');
  // The page's own clock stream is a subscriber and gets a tick every 250 ms: after a few polls
  // (every 2 s) both lines have points and the deliveries/s figure is above zero.
  const pointsOf = async (id) => ((await page.getAttribute(id, 'points')) || '').trim().split(/\s+/).filter(Boolean);
  await waitFor('three samples', async () => (await pointsOf('#chart-subs-line')).length >= 3, 15_000);
  assert.ok((await pointsOf('#chart-rate-line')).length >= 3);
  await waitFor('a delivery rate', async () => Number(await text(page, '#chart-rate')) > 0, 10_000);
  assert.ok(Number((await text(page, '#chart-subs')).replace(/,/g, '')) >= 1);
  // Every point lies inside the view box.
  for (const point of await pointsOf('#chart-subs-line')) {
    const [x, y] = point.split(',').map(Number);
    assert.ok(x >= 0 && x <= 300.1 && y >= 0 && y <= 100, point);
  }
  await page.context().close();
});

test('the bounded test stream shows three events then [Done] and closes', async () => {
  const page = await openPage();
  let streamRequests = 0;
  page.on('request', (r) => { if (r.url().includes('api/stream/test')) streamRequests += 1; });
  await page.click('#run-test');
  await waitFor('test done', async () => (await text(page, '#test-status')) === 'done', 10_000);
  const items = await page.locator('#test-events li').allTextContents();
  const timed = items.filter((t) => t.includes('server time: '));
  assert.equal(timed.length, 3, `items: ${items}`);
  assert.ok(items.some((t) => t.includes('[Done]')));
  // Closed on [Done]: no reconnection (the hub's default retry would be due by now).
  await page.waitForTimeout(3500);
  assert.equal(streamRequests, 1);
  await page.context().close();
});

async function subscribeOnPage(page, topics, token = '', matchType = 'urlpattern') {
  await page.fill('#sub-topics', topics.join('\n'));
  await page.selectOption('#sub-match', matchType);
  await page.fill('#sub-token', token);
  await page.click('#sub-connect');
  await waitFor('subscription open', async () => (await page.getAttribute('#sub-state', 'data-state')) === 'open');
}

const updateIds = (page) => page.locator('#sub-updates li.update').evaluateAll(
  (items) => items.map((li) => li.dataset.id));

test('an update published from the form arrives in the subscribe panel; private ones only with a token', async () => {
  // Mercure 1.0 on the page: a URL pattern, and access tokens sent in a header (read with fetch).
  const topic = 'https://example.com/books/:id';
  const reader = accessToken(base, ['subscribe'], [{ match: topic, match_type: 'urlpattern' }]);
  const writer = accessToken(base, ['publish'], [{ match: '*' }]);
  const allowed = await openPage();
  await subscribeOnPage(allowed, [topic], reader);
  const anonymous = await openPage();
  await subscribeOnPage(anonymous, [topic]);

  await allowed.fill('#pub-topics', 'https://example.com/books/7');
  await allowed.fill('#pub-data', 'line one\n\nline three');
  await allowed.fill('#pub-token', writer);
  await allowed.click('#pub-send');
  const result = await waitFor('publish result', async () => {
    const ok = await allowed.getAttribute('#pub-result', 'data-ok');
    return ok && { ok, text: await text(allowed, '#pub-result') };
  });
  assert.equal(result.ok, 'true', result.text);
  const publicId = result.text.replace('published: ', '').trim();
  await waitFor('public update on both pages', async () =>
    (await updateIds(allowed)).includes(publicId) && (await updateIds(anonymous)).includes(publicId));
  const data = await allowed.locator(`#sub-updates li.update[data-id="${publicId}"]`).textContent();
  assert.ok(data.includes('line one') && data.includes('line three'));

  await allowed.check('#pub-private');
  await allowed.fill('#pub-data', 'for readers only');
  await allowed.fill('#pub-id', 'private-1');
  await allowed.click('#pub-send');
  await waitFor('private update on the allowed page', async () => (await updateIds(allowed)).includes('private-1'));
  // A public update after it: once the anonymous page has it, the private one would have come first.
  const sentinel = await publish(base, { topic: 'https://example.com/books/8', data: 'after' });
  await waitFor('sentinel on the anonymous page', async () => (await updateIds(anonymous)).includes(sentinel));
  assert.ok(!(await updateIds(anonymous)).includes('private-1'));
  await allowed.context().close();
  await anonymous.context().close();
});

test('after a hub restart the page resumes and lists every update exactly once', async () => {
  const port = await freePort();
  let own = await startHub(port, ['--tick-interval', '0']);
  const url = `http://127.0.0.1:${port}`;
  const page = await openPage(`${url}/`);
  await subscribeOnPage(page, ['/restart']);
  const before = [await publish(url, { topic: '/restart', data: 'a' }), await publish(url, { topic: '/restart', data: 'b' })];
  await waitFor('first updates', async () => (await updateIds(page)).length === 2);
  await stopHub(own);
  own = await startHub(port, ['--tick-interval', '0']);
  // Published before the page has reconnected: it must come back through replay.
  const during = [await publish(url, { topic: '/restart', data: 'c' }), await publish(url, { topic: '/restart', data: 'd' })];
  await waitFor('resume marker', async () => (await page.locator('#sub-updates li.resume-marker').count()) >= 1, 20_000);
  const after = await publish(url, { topic: '/restart', data: 'e' });
  const expected = [...before, ...during, after];
  await waitFor('all updates', async () => (await updateIds(page)).length >= expected.length, 10_000);
  const ids = await updateIds(page);
  assert.deepEqual([...ids].reverse(), expected, 'newest first, each once');
  assert.equal((await text(page, '#sub-dupes')).trim(), '0');
  await page.context().close();
  await stopHub(own);
});

/** The status line's figures as a reader sees them, or null while one is not shown yet. */
async function figures(page) {
  const line = await text(page, '#stats');
  const count = (re) => {
    const m = line.match(re);
    return m ? Number(m[1].replace(/,/g, '')) : null;
  };
  const published = count(/(\d[\d,]*) updates published/);
  const ticks = count(/(\d[\d,]*) clock ticks/);
  return published === null || ticks === null ? null : { published, ticks, line };
}

test('published updates are counted apart from clock ticks, and the page says how to get a token', async () => {
  // A hub of its own, so no other test's updates are in its counts.
  const port = await freePort();
  const own = await startHub(port, ['--tick-interval', '250ms']);
  const url = `http://127.0.0.1:${port}`;
  const page = await openPage(`${url}/`);

  // On first load, before any failure, the publish panel shows the commands.
  assert.equal(await page.getAttribute('#pub-help', 'open'), '', 'the help is open on first load');
  assert.ok(await page.locator('#pub-help-token').isVisible());
  const hubHelp = (await text(page, '#pub-help-hub')).trim();
  assert.equal(hubHelp, 'export SSE_HUB_JWT_KEY=change-me-to-a-long-random-secret\n'
    + 'export SSE_HUB_ISSUER=https://example.com\nsse-hub --allow-anonymous');
  const command = (await text(page, '#pub-help-token')).trim();
  assert.equal(command, "sse-hub token --publish '*' --exp 1h");

  // Ticks flow and nobody publishes: the ticks go up, the published figure stays 0.
  const first = await waitFor('figures shown', () => figures(page), 15_000);
  assert.equal(first.published, 0, first.line);
  await waitFor('more ticks', async () => {
    const now = await figures(page);
    if (!now) return false; // a poll that failed: the line says "stats unavailable"
    assert.equal(now.published, 0, now.line);
    return now.ticks >= first.ticks + 12;
  }, 15_000);

  // The token command as shown, run in the environment the help sets up (with this hub's key,
  // and its address, as a hub run that way would have): a real 1.0 token from `sse-hub token`.
  const args = command.split(' ').slice(1).map((arg) => arg.replace(/^'(.*)'$/, '$1'));
  const env = { SSE_HUB_JWT_KEY: KEY, SSE_HUB_ISSUER: ISSUER, SSE_HUB_BIND: `127.0.0.1:${port}` };
  const token = execFileSync(HUB_BIN, args, { encoding: 'utf8', env, timeout: 10_000 }).trim();
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url'));
  assert.equal(header.typ, 'at+jwt', 'the command mints a Mercure 1.0 access token');
  await subscribeOnPage(page, ['https://example.com/books/:id']);
  const res = await fetch(`${url}/.well-known/mercure`, {
    method: 'POST',
    body: new URLSearchParams({ topic: 'https://example.com/books/1', data: 'the first user update' }),
    headers: { Authorization: `Bearer ${token}` },
  });
  const id = (await res.text()).trim();
  assert.equal(res.status, 200, id);
  await waitFor('the update listed', async () => (await updateIds(page)).includes(id));
  const after = await waitFor('published 1', async () => {
    const now = await figures(page);
    return now?.published === 1 && now;
  }, 15_000);
  await waitFor('ticks still counted apart', async () => {
    const now = await figures(page);
    if (!now) return false;
    assert.equal(now.published, 1, now.line);
    return now.ticks >= after.ticks + 12;
  }, 15_000);

  // Once the tab has a publisher token, the help is folded away on the next load.
  await page.fill('#pub-token', token);
  await page.reload();
  assert.equal(await page.inputValue('#pub-token'), token);
  assert.equal(await page.getAttribute('#pub-help', 'open'), null);
  await page.context().close();
  await stopHub(own);
});

/** Opens ten EventSources on `page` and answers how many got a time event within 8 s. */
const tenStreams = (page) => page.evaluate(() => new Promise((resolve) => {
  const got = new Set();
  const sources = [];
  for (let i = 0; i < 10; i += 1) {
    const es = new EventSource('events');
    es.addEventListener('time', () => {
      got.add(i);
      if (got.size === 10) { sources.forEach((s) => s.close()); resolve(got.size); }
    });
    sources.push(es);
  }
  setTimeout(() => { sources.forEach((s) => s.close()); resolve(got.size); }, 8000);
}));

test('the hub itself over HTTPS and HTTP/2: ten EventSources on one page all receive events', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sse-hub-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const port = await freePort();
  const own = await startHub(port, ['--tick-interval', '250ms',
    '--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
  const page = await openPage(`https://localhost:${port}/`, { ignoreHTTPSErrors: true });
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2', 'no nginx in front: the hub negotiates HTTP/2 itself');
  assert.equal(await tenStreams(page), 10);
  await page.context().close();
  await stopHub(own);
  rmSync(dir, { recursive: true, force: true });
});

test('through nginx over HTTPS and HTTP/2, ten EventSources on one page all receive events', async () => {
  const nginx = await startNginx(`127.0.0.1:${hubPort}`);
  const page = await openPage(`https://localhost:${nginx.tlsPort}/`, { ignoreHTTPSErrors: true });
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2');
  assert.equal(await tenStreams(page), 10);

  // The dashboard's EventSource with a Mercure 1.0 URL pattern, through nginx: an update
  // published to the hub arrives; one outside the pattern does not.
  await subscribeOnPage(page, ['https://example.com/through-nginx/:id']);
  const outside = await publish(base, { topic: 'https://example.com/elsewhere/1', data: 'no' });
  const inside = await publish(base, { topic: 'https://example.com/through-nginx/1', data: 'yes' });
  await waitFor('the update through nginx', async () => (await updateIds(page)).includes(inside));
  assert.ok(!(await updateIds(page)).includes(outside));

  // The same over plain HTTP/1.1: the browser's six connections per origin leave the rest waiting.
  const plain = await openPage(`http://127.0.0.1:${nginx.port}/healthz`);
  const overHttp1 = await plain.evaluate(() => new Promise((resolve) => {
    const got = new Set();
    const sources = [];
    for (let i = 0; i < 8; i += 1) {
      const es = new EventSource('events');
      es.addEventListener('time', () => got.add(i));
      sources.push(es);
    }
    setTimeout(() => { sources.forEach((s) => s.close()); resolve(got.size); }, 5000);
  }));
  assert.equal(overHttp1, 6, 'HTTP/1.1 caps a page at six live streams');
  await page.context().close();
  await plain.context().close();
  process.kill(-nginx.child.pid, 'SIGKILL');
});

test('a screenshot of the dashboard', async () => {
  const page = await openPage();
  const reader = accessToken(base, ['subscribe'], [{ match: '*' }]);
  await subscribeOnPage(page, ['https://example.com/books/:id'], reader);
  await publish(base, { topic: 'https://example.com/books/1', data: '{"title":"Dune","stock":3}', type: 'message' });
  await publish(base, { topic: 'https://example.com/books/2', data: 'a second\nmulti-line update' });
  await page.click('#run-test');
  await waitFor('test done', async () => (await text(page, '#test-status')) === 'done', 10_000);
  await waitFor('updates listed', async () => (await updateIds(page)).length === 2);
  await waitFor('figures shown', () => figures(page), 15_000);
  const file = join(OUT, 'dashboard.png');
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(existsSync(file));
  console.log(`screenshot: ${file}`);
  await page.context().close();
});
