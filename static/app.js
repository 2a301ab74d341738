// sse-hub demo dashboard. Plain script, no build step, no dependencies.
// All URLs are relative so the page also works behind a reverse proxy at a sub-path.
// Server data is only ever written with textContent, never innerHTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    conn: $('conn-state'),
    reconnects: $('reconnects'),
    clock: $('clock'),
    clockId: $('clock-id'),
    clockSeq: $('clock-seq'),
    log: $('log'),
    runTest: $('run-test'),
    testEvents: $('test-events'),
    testStatus: $('test-status'),
    stats: $('stats'),
  };

  const LOG_MAX = 50;        // keep the DOM small on long-running pages
  const DATA_MAX = 200;      // long payloads would blow up the log layout
  const STATS_EVERY_MS = 2000;
  const RETRY_MIN_MS = 1000; // manual retry only when the browser gives up (see onError)
  const RETRY_MAX_MS = 30000;

  // ---- formatting helpers ----------------------------------------------

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const fmtUtc = (d) =>
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  const fmtLocal = (d) =>
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const truncate = (s) => (s.length > DATA_MAX ? `${s.slice(0, DATA_MAX - 1)}…` : s);

  // Build an element with a class and text in one go (text is always inert).
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // ---- event log --------------------------------------------------------

  const logEvent = (e) => {
    const li = el('li');
    li.dataset.type = e.type; // lets CSS colour event types differently
    li.append(
      el('span', 'log-time', fmtLocal(new Date())),
      el('span', 'log-type', e.type),
      el('span', 'log-id', e.lastEventId || '—'),
      el('span', 'log-data', truncate(String(e.data ?? ''))),
    );
    els.log.prepend(li); // newest at top
    while (els.log.children.length > LOG_MAX) els.log.lastElementChild.remove();
  };

  // ---- live clock (fed only by `time` events) ---------------------------

  const onTime = (e) => {
    logEvent(e);
    let payload;
    try {
      payload = JSON.parse(e.data);
    } catch {
      return; // a malformed event is still logged above; just don't touch the clock
    }
    // Prefer the server's ISO string; fall back to unix_ms if it is missing or unparsable.
    let date = new Date(payload.time);
    if (Number.isNaN(date.getTime())) date = new Date(payload.unix_ms);
    if (Number.isNaN(date.getTime())) return;
    els.clock.textContent = fmtUtc(date);
    els.clock.dateTime = date.toISOString();
    els.clockId.textContent = e.lastEventId || '—';
    els.clockSeq.textContent = payload.seq ?? '—';
  };

  // ---- main connection + state badge ------------------------------------

  let state = 'connecting';
  let reconnects = 0;
  let retryMs = RETRY_MIN_MS;

  const setState = (next) => {
    state = next;
    els.conn.dataset.state = next;
    els.conn.textContent = next;
  };

  const connect = () => {
    const es = new EventSource('events');

    es.addEventListener('open', () => {
      retryMs = RETRY_MIN_MS;
      setState('open');
    });

    es.addEventListener('error', () => {
      // Count only real drops of a working connection, not failed retry attempts.
      if (state === 'open') {
        reconnects += 1;
        els.reconnects.textContent = String(reconnects);
      }
      setState('reconnecting');
      // EventSource retries by itself while readyState is CONNECTING. It gives up for good
      // (CLOSED) on e.g. a 502 from a proxy during a restart, so retry ourselves with backoff.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
    });

    es.addEventListener('time', onTime);
    es.addEventListener('message', logEvent); // unnamed events: log only
  };

  // ---- bounded test stream ----------------------------------------------

  const setTestStatus = (status) => {
    els.testStatus.dataset.status = status;
    els.testStatus.textContent = status;
  };

  els.runTest.addEventListener('click', () => {
    if (els.runTest.disabled) return;
    els.runTest.disabled = true;
    els.testEvents.replaceChildren();
    setTestStatus('running');
    const started = performance.now();
    const es = new EventSource('api/stream/test');

    // Must close explicitly: a finished stream looks like a drop to EventSource,
    // which would reconnect and run the test again.
    const finish = (status) => {
      es.close();
      setTestStatus(status);
      els.runTest.disabled = false;
      // Disabling the focused button dropped focus to <body>; give it back for keyboard users.
      if (document.activeElement === document.body) els.runTest.focus();
    };

    es.addEventListener('message', (e) => {
      const elapsed = Math.round(performance.now() - started);
      const li = el('li');
      li.dataset.elapsedMs = String(elapsed);
      li.append(el('span', 'data', e.data), el('span', 'elapsed', `+${elapsed} ms`));
      els.testEvents.append(li); // arrival order
      if (e.data === '[Done]') finish('done');
    });

    // After close() no further events fire, so any error here happened before [Done].
    es.addEventListener('error', () => finish('error'));
  });

  // ---- stats polling ----------------------------------------------------

  const show = (v) => (Number.isFinite(v) ? v.toLocaleString() : '?');

  const pollStats = async () => {
    // A hung request must not stall the poll loop, so abort it before the next tick.
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), STATS_EVERY_MS - 200);
    try {
      const res = await fetch('stats', {
        cache: 'no-store',
        headers: { Accept: 'application/json' },
        signal: ctrl.signal,
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const s = await res.json();
      els.stats.textContent =
        `${show(s.subscribers)} subscribers · ${show(s.events_published)} published · ` +
        `${show(s.events_delivered)} delivered · ${show(s.subscribers_dropped_slow)} dropped (slow)`;
    } catch {
      els.stats.textContent = 'stats unavailable'; // quiet by design: no console noise
    } finally {
      clearTimeout(timer);
      // setTimeout chaining (not setInterval) so slow responses never overlap.
      setTimeout(pollStats, STATS_EVERY_MS);
    }
  };

  setState('connecting');
  connect();
  pollStats();
})();
