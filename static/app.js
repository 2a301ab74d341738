// sse-hub demo dashboard. Plain script, no build step, no dependencies.
// All URLs are relative so the page also works behind a reverse proxy at a sub-path.
// Server data is only ever written with textContent, never innerHTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  // Every element the script touches, by id; `sub-topics` becomes els.subTopics.
  const IDS = [
    'conn-state', 'reconnects', 'clock', 'clock-id', 'clock-seq', 'log', 'run-test',
    'test-events', 'test-status', 'stats', 'sub-form', 'sub-topics', 'sub-match', 'sub-types', 'sub-token',
    'sub-connect', 'sub-disconnect', 'sub-state', 'sub-count', 'sub-dupes', 'sub-updates',
    'pub-form', 'pub-topics', 'pub-data', 'pub-type', 'pub-id', 'pub-private', 'pub-token',
    'pub-send', 'pub-result', 'pub-help',
  ];
  const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());
  const els = Object.fromEntries(IDS.map((id) => [camel(id), $(id)]));

  const LOG_MAX = 50;        // keep the DOM small on long-running pages
  const DATA_MAX = 200;      // long payloads would blow up the log layout
  const STATS_EVERY_MS = 2000;
  const RETRY_MIN_MS = 1000; // manual retry only when the browser gives up (see onError)
  const RETRY_MAX_MS = 30000;
  const UPDATES_MAX = 100;   // items (updates and resume markers) kept in #sub-updates
  const SEEN_MAX = 5000;     // ids remembered for de-duplication, oldest forgotten first
  const SUB_RETRY_MIN_MS = 1000;
  const SUB_RETRY_MAX_MS = 10000;

  // ---- formatting helpers ----------------------------------------------

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const fmtUtc = (d) =>
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  const fmtLocal = (d) =>
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const truncate = (s) => (s.length > DATA_MAX ? `${s.slice(0, DATA_MAX - 1)}…` : s);
  const lines = (text) => text.split('\n').map((s) => s.trim()).filter(Boolean);
  const commaList = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);
  const firstLine = (text) => text.trim().split('\n')[0].trim();

  // Build an element with a class and text in one go (text is always inert).
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // Newest first, and never more than `max` children, so long sessions stay light.
  const prependCapped = (list, node, max) => {
    list.prepend(node);
    while (list.children.length > max) list.lastElementChild.remove();
  };

  // Disabling the focused button dropped focus to <body>; give it to `target` for keyboard users.
  const refocus = (target) => {
    if (document.activeElement === document.body) target.focus();
  };

  // ---- token memory -----------------------------------------------------

  // sessionStorage, not localStorage: a token should not outlive the tab. Storage can be
  // disabled (and then throws); the page must keep working without it.
  const rememberInput = (input, key) => {
    try {
      input.value = sessionStorage.getItem(key) ?? input.value;
    } catch { /* no storage: nothing to restore */ }
    input.addEventListener('input', () => {
      try {
        if (input.value) sessionStorage.setItem(key, input.value);
        else sessionStorage.removeItem(key);
      } catch { /* no storage: the token just isn't remembered */ }
    });
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
    prependCapped(els.log, li, LOG_MAX);
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
    els.connState.dataset.state = next;
    els.connState.textContent = next;
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
      refocus(els.runTest);
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

  // ---- a stream read with fetch(), for subscribers with a token ----------

  // EventSource cannot send headers, and Mercure 1.0 forbids tokens in URLs, so a subscriber
  // with a token reads the stream with fetch() and an Authorization header (the draft's
  // recommended way for a token scoped to one page). FetchSource has the EventSource interface
  // the subscribe panel uses: readyState, onopen/onmessage/onerror, addEventListener, close,
  // and it reconnects by itself with Last-Event-ID after a drop, as a browser does.
  class FetchSource {
    constructor(url, token) {
      Object.assign(this, { url, token, readyState: 0, lastEventId: '', retryMs: 2000 });
      Object.assign(this, { listeners: new Map(), ctrl: null, refusal: null });
      this.onopen = this.onmessage = this.onerror = null;
      this.connect();
    }

    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(fn);
    }

    close() {
      this.readyState = 2;
      this.ctrl?.abort();
    }

    dispatch(type, data, id) {
      const e = new MessageEvent(type, { data, lastEventId: id });
      if (type === 'message') this.onmessage?.(e);
      for (const fn of this.listeners.get(type) ?? []) fn(e);
    }

    async connect() {
      this.ctrl = new AbortController();
      const headers = { Authorization: `Bearer ${this.token}` };
      if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
      try {
        const res = await fetch(this.url, { headers, cache: 'no-store', signal: this.ctrl.signal });
        if (!res.ok) {
          // A refusal is final, as for EventSource; keep its reason to show it.
          this.refusal = { status: res.status, reason: firstLine(await res.text()) || res.statusText };
          this.readyState = 2;
          this.onerror?.();
          return;
        }
        this.readyState = 1;
        this.onopen?.();
        await this.read(res.body.getReader());
      } catch { /* aborted or dropped: handled below */ }
      if (this.readyState === 2) return;
      this.readyState = 0;
      this.onerror?.();
      setTimeout(() => { if (this.readyState !== 2) this.connect(); }, this.retryMs);
    }

    // Parses the event stream as the HTML standard says: fields up to a blank line.
    async read(reader) {
      const decoder = new TextDecoder();
      let buffer = '';
      let event = { type: '', data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        const parts = buffer.split(/\r\n|\r|\n/);
        buffer = parts.pop();
        for (const line of parts) {
          if (line === '') {
            if (event.id !== null) this.lastEventId = event.id;
            if (event.data.length) this.dispatch(event.type || 'message', event.data.join('\n'), this.lastEventId);
            event = { type: '', data: [], id: null };
            continue;
          }
          if (line.startsWith(':')) continue;
          const at = line.indexOf(':');
          const field = at < 0 ? line : line.slice(0, at);
          const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
          if (field === 'data') event.data.push(value);
          else if (field === 'event') event.type = value;
          else if (field === 'id' && !value.includes('\0')) event.id = value;
          else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
        }
      }
    }
  }

  // ---- Mercure subscription ---------------------------------------------

  // One "session" runs from Connect to Disconnect (or a refusal) and may span many
  // EventSource objects: the browser's own retries, and ours when it gives up for good.
  const sub = {
    active: false,     // between Connect and Disconnect: allowed to reconnect on our own
    session: 0,        // bumped on every Connect/Disconnect so late async results are ignored
    es: null,          // the current EventSource, if any
    selectors: [],     // shown on each update: the SSE wire does not carry the update's topics
    matchType: 'urlpattern',
    token: '',
    types: new Set(),  // named event types listened for; 'message' goes through onmessage
    lastId: '',        // the resume point for our own reconnects
    openedBefore: false,
    retryMs: SUB_RETRY_MIN_MS,
    retryTimer: 0,
    seen: new Set(),   // ids already listed, kept across sessions so no id is ever shown twice
    count: 0, dupes: 0,
  };

  const setSubState = (next, text = next) => {
    els.subState.dataset.state = next;
    els.subState.textContent = text;
    const hadFocus = document.activeElement === els.subDisconnect;
    els.subDisconnect.disabled = !sub.active;
    if (hadFocus && !sub.active) els.subConnect.focus();
  };

  const openText = () => `open · listening for ${['message', ...sub.types].join(', ')}`;

  // The query parameter of each kind of selector: Mercure 1.0 matchers, or 0.x URI templates.
  const MATCH_PARAMS = { urlpattern: 'match_urlpattern', exact: 'match', template: 'topic' };

  const subUrl = () => {
    const q = new URLSearchParams();
    for (const s of sub.selectors) q.append(MATCH_PARAMS[sub.matchType] ?? 'match', s);
    if (sub.lastId) q.set('last_event_id', sub.lastId);
    return `.well-known/mercure?${q}`;
  };

  const markSeen = (id) => {
    sub.seen.add(id);
    if (sub.seen.size > SEEN_MAX) sub.seen.delete(sub.seen.values().next().value);
  };

  const renderUpdate = (e) => {
    const now = new Date();
    const li = el('li', 'update');
    li.dataset.id = e.lastEventId;
    li.dataset.type = e.type;
    const time = el('time', 'update-time', fmtLocal(now));
    time.dateTime = now.toISOString();
    const meta = el('p', 'update-meta');
    meta.append(el('span', 'update-id', e.lastEventId || '(no id)'), el('span', 'update-type', e.type), time);
    li.append(
      meta,
      el('p', 'update-topics', `matched one of: ${sub.selectors.join(', ')}`),
      el('pre', 'update-data', String(e.data ?? '')), // exact payload, shown pre-wrap
    );
    prependCapped(els.subUpdates, li, UPDATES_MAX);
  };

  const onUpdate = (e) => {
    const id = e.lastEventId;
    if (id) sub.lastId = id;
    if (id && sub.seen.has(id)) {
      sub.dupes += 1; // a replay overlapped what we already had; should stay 0
      els.subDupes.textContent = String(sub.dupes);
      return;
    }
    if (id) markSeen(id);
    sub.count += 1;
    els.subCount.textContent = String(sub.count);
    renderUpdate(e);
  };

  // Makes the resume point visible in the list.
  const addResumeMarker = () => {
    const li = el('li', 'resume-marker', `resumed after ${sub.lastId || '(nothing received yet)'}`);
    li.dataset.after = sub.lastId;
    prependCapped(els.subUpdates, li, UPDATES_MAX);
  };

  // Listening is by name only, so every type we want must be registered explicitly.
  const listenFor = (type) => {
    if (!type || type === 'message' || sub.types.has(type)) return;
    sub.types.add(type);
    sub.es?.addEventListener(type, onUpdate);
    if (sub.es?.readyState === 1) setSubState('open', openText()); // EventSource.OPEN
  };

  /** What to do about a refusal, for the statuses a newcomer meets first. */
  const nextStep = (status) => {
    if (status === 401) {
      return ' — to subscribe without a token, start the hub with --allow-anonymous; '
        + 'or paste a token made with: sse-hub token --jwt-key KEY --issuer URL --subscribe \'*\' --exp 1h';
    }
    return '';
  };

  // EventSource hides the HTTP status of a refusal; ask once with fetch so the reason shows.
  const explainRefusal = async (url, session) => {
    const ctrl = new AbortController();
    try {
      const res = await fetch(url, { cache: 'no-store', signal: ctrl.signal });
      if (res.ok || session !== sub.session) return;
      const reason = firstLine(await res.text()) || res.statusText;
      setSubState('error', `unauthorized or refused (${res.status}: ${reason})${nextStep(res.status)}`);
    } catch { /* unreachable hub: the plain message already says enough */ } finally {
      ctrl.abort(); // if it was accepted after all, don't keep a second stream open
    }
  };

  const scheduleResume = () => {
    const wait = sub.retryMs;
    sub.retryMs = Math.min(wait * 2, SUB_RETRY_MAX_MS);
    setSubState('reconnecting', `reconnecting in ${wait / 1000} s, resuming after ${sub.lastId || '(nothing yet)'}`);
    sub.retryTimer = setTimeout(openSubscription, wait);
  };

  const onSubError = (es) => {
    if (es !== sub.es) return; // a connection already replaced or closed
    if (es.refusal) {
      // FetchSource saw the refusal itself.
      sub.es = null;
      sub.active = false;
      const { status, reason } = es.refusal;
      setSubState('error', `unauthorized or refused (${status}: ${reason})${nextStep(status)}`);
      return;
    }
    if (es.readyState !== EventSource.CLOSED) {
      // The browser retries by itself, sending Last-Event-ID, so nothing is lost.
      setSubState(sub.openedBefore ? 'reconnecting' : 'connecting');
      return;
    }
    es.close();
    sub.es = null;
    if (sub.openedBefore) {
      scheduleResume(); // e.g. a 502 from a proxy while the hub restarts: try again ourselves
      return;
    }
    // Refused on the very first attempt (401, 400, ...): retrying the same request won't help.
    sub.active = false;
    setSubState('error', 'unauthorized or refused');
    explainRefusal(es.url, sub.session);
  };

  function openSubscription() {
    const es = sub.token ? new FetchSource(subUrl(), sub.token) : new EventSource(subUrl());
    sub.es = es;
    es.onopen = () => {
      if (sub.openedBefore) addResumeMarker();
      sub.openedBefore = true;
      sub.retryMs = SUB_RETRY_MIN_MS;
      setSubState('open', openText());
    };
    es.onmessage = onUpdate;
    for (const type of sub.types) es.addEventListener(type, onUpdate);
    es.onerror = () => onSubError(es);
  }

  const stopSubscription = () => {
    sub.session += 1;
    sub.active = false;
    clearTimeout(sub.retryTimer);
    sub.es?.close();
    sub.es = null;
  };

  const startSubscription = () => {
    const selectors = lines(els.subTopics.value);
    stopSubscription();
    if (!selectors.length) {
      setSubState('error', 'enter at least one topic selector');
      return;
    }
    // Each Connect starts fresh (no resume point); the seen-id set is kept on purpose.
    Object.assign(sub, { active: true, selectors, token: els.subToken.value.trim(), matchType: els.subMatch.value });
    Object.assign(sub, { types: new Set(), lastId: '', openedBefore: false, retryMs: SUB_RETRY_MIN_MS });
    [...commaList(els.subTypes.value), els.pubType.value.trim()].forEach(listenFor);
    setSubState('connecting');
    openSubscription();
  };

  els.subForm.addEventListener('submit', (e) => {
    e.preventDefault();
    startSubscription();
  });
  els.subDisconnect.addEventListener('click', () => {
    stopSubscription();
    setSubState('closed');
  });

  // ---- publishing -------------------------------------------------------

  // data-ok is "true"/"false" for a result, absent while the request is in flight.
  const setPubResult = (ok, text) => {
    if (ok === undefined) delete els.pubResult.dataset.ok;
    else els.pubResult.dataset.ok = String(ok);
    els.pubResult.textContent = text;
  };

  const publishBody = () => {
    const body = new URLSearchParams();
    for (const topic of lines(els.pubTopics.value)) body.append('topic', topic);
    body.set('data', els.pubData.value); // sent exactly as typed
    if (els.pubType.value.trim()) body.set('type', els.pubType.value.trim());
    if (els.pubId.value.trim()) body.set('id', els.pubId.value.trim());
    // The hub treats the field's mere presence as "private", so only send it when checked.
    if (els.pubPrivate.checked) body.set('private', 'on');
    return body;
  };

  const publish = async () => {
    // Start listening for this type before the update can arrive.
    listenFor(els.pubType.value.trim());
    const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
    const token = els.pubToken.value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    const hadFocus = document.activeElement === els.pubSend;
    els.pubSend.disabled = true;
    setPubResult(undefined, 'publishing…');
    try {
      const res = await fetch('.well-known/mercure', { method: 'POST', headers, body: publishBody(), cache: 'no-store' });
      const text = await res.text();
      if (res.ok) setPubResult(true, `published: ${text.trim()}`);
      else if (res.status === 401) {
        els.pubHelp.open = true;
        setPubResult(false, `error 401: ${firstLine(text) || res.statusText} — see "How to get a publisher token" above`);
      } else setPubResult(false, `error ${res.status}: ${firstLine(text) || res.statusText}`);
    } catch {
      setPubResult(false, 'error: the hub could not be reached');
    } finally {
      els.pubSend.disabled = false;
      if (hadFocus) refocus(els.pubSend);
    }
  };

  els.pubForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!els.pubSend.disabled) publish();
  });
  // A type typed here is listened for right away, so its updates show when they arrive.
  els.pubType.addEventListener('change', () => listenFor(els.pubType.value.trim()));

  // ---- stats polling ----------------------------------------------------

  const show = (v) => (Number.isFinite(v) ? v.toLocaleString() : '?');
  let lastSample = null; // { published, at } of the previous successful poll

  // Events per second from the change in events_published, over the real time between polls.
  const eventRate = (published) => {
    const now = performance.now();
    const prev = lastSample;
    lastSample = Number.isFinite(published) ? { published, at: now } : null;
    // First poll, or the counter went back (hub restarted): no rate yet.
    if (!prev || !lastSample || published < prev.published) return '… events/s';
    const rate = ((published - prev.published) * 1000) / (now - prev.at);
    return `${rate.toFixed(1)} events/s`;
  };

  // ---- activity chart: subscribers and deliveries/s over the last minutes ----

  const CHART_SPAN_MS = 5 * 60 * 1000;
  const samples = []; // { at, subscribers, rate }
  let lastDelivered = null; // { delivered, at } of the previous successful poll

  /** Scales `values` into the 300 x 100 view box, newest at the right edge. */
  const points = (key, max, now) => samples
    .map((p) => {
      const x = 300 - ((now - p.at) / CHART_SPAN_MS) * 300;
      const y = 98 - (p[key] / max) * 94;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');

  const plot = (s) => {
    const now = performance.now();
    const prev = lastDelivered;
    lastDelivered = { delivered: s.events_delivered, at: now };
    // Deliveries per second since the previous poll (none yet on the first, or after a restart).
    const rate = prev && s.events_delivered >= prev.delivered
      ? ((s.events_delivered - prev.delivered) * 1000) / (now - prev.at) : 0;
    samples.push({ at: now, subscribers: s.subscribers, rate });
    while (samples.length && now - samples[0].at > CHART_SPAN_MS) samples.shift();
    const subsMax = Math.max(1, ...samples.map((p) => p.subscribers));
    const rateMax = Math.max(1, ...samples.map((p) => p.rate));
    $('chart-subs-line').setAttribute('points', points('subscribers', subsMax, now));
    $('chart-rate-line').setAttribute('points', points('rate', rateMax, now));
    $('chart-subs').textContent = show(s.subscribers);
    $('chart-rate').textContent = rate.toFixed(1);
    $('chart-subs-max').textContent = show(subsMax);
    $('chart-rate-max').textContent = rateMax.toFixed(1);
  };

  const pollStats = async () => {
    // A hung request must not stall the poll loop, so abort it before the next tick.
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), STATS_EVERY_MS - 200);
    try {
      const res = await fetch('stats', { cache: 'no-store', headers: { Accept: 'application/json' }, signal: ctrl.signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const s = await res.json();
      const plural = s.subscribers === 1 ? '' : 's';
      // The hub counts its clock's ticks among the updates it publishes, and apart.
      const published = s.events_published - s.ticks_published;
      els.stats.textContent =
        `${show(s.subscribers)} subscriber${plural} connected · ${eventRate(s.events_published)} · ` +
        `${show(published)} updates published · ${show(s.ticks_published)} clock ticks · ` +
        `${show(s.events_delivered)} delivered · ${show(s.subscribers_dropped_slow)} dropped (slow)`;
      plot(s);
    } catch {
      lastSample = null;
      lastDelivered = null;
      els.stats.textContent = 'stats unavailable'; // quiet by design: no console noise
    } finally {
      clearTimeout(timer);
      // setTimeout chaining (not setInterval) so slow responses never overlap.
      setTimeout(pollStats, STATS_EVERY_MS);
    }
  };

  rememberInput(els.subToken, 'sse-hub.sub-token');
  rememberInput(els.pubToken, 'sse-hub.pub-token');
  // Open on first load; folded away once this tab has a publisher token.
  if (els.pubToken.value) els.pubHelp.open = false;
  setState('connecting');
  connect();
  pollStats();
})();
