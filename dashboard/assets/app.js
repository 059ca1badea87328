// wsvisor operator dashboard (CONTRACT 15; the feed: notes/dashboard-feed.md).
//
// One script, no framework, no build step, under a strict CSP (no eval, no inline code).
// Rules kept throughout:
//  - The admin token lives in this tab's sessionStorage only and travels only as an
//    `Authorization: Bearer` header: never in a URL, never logged.
//  - Everything shown comes from outside (user names, IPs, log fields): it reaches the
//    DOM through textContent and attributes only, never as markup.
//  - The DOM does not grow with time or load: every element is created once and reused
//    (tree nodes by name, table rows, at most 100 event rows, fixed canvases); updates
//    replace text, not subtrees.
//  - Data is taken in as it arrives; the DOM is touched at most once per animation frame.
'use strict';

(() => {
  const TOKEN_KEY = 'wsvisor.admin_token';
  const POINTS = 120;          // ring buffer length of every time series
  const EVENTS_KEPT = 100;     // rows in #events
  const TOP_ROWS = 10;         // rows in #top-users / #top-ips (the feed sends at most 10)
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  const RECENT_RESTART_MS = 10000;  // a node that restarted stays highlighted this long
  const MAX_SSE_BUFFER = 4 << 20;   // a "line" longer than this is not our feed: reconnect

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ formatting

  const grouped = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (Number.isFinite(n) ? grouped.format(Math.round(n)) : '–');
  const int = (v) => (Number.isFinite(v) ? v : 0);

  function fmtRate(v) {
    if (!Number.isFinite(v)) return '–';
    if (v === 0) return '0';
    if (v < 10) return v.toFixed(1);
    return fmtInt(v);
  }

  function fmtDuration(totalSeconds) {
    if (!Number.isFinite(totalSeconds) || totalSeconds < 0) return '–';
    const s = Math.floor(totalSeconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (x) => String(x).padStart(2, '0');
    if (d > 0) return `${d} d ${h} h`;
    if (h > 0) return `${h} h ${pad(m)} m`;
    if (m > 0) return `${m} m ${pad(s % 60)} s`;
    return `${s} s`;
  }

  function fmtWindow(ms) {
    if (!Number.isFinite(ms)) return '?';
    if (ms % 60000 === 0 && ms >= 60000) return `${ms / 60000} min`;
    if (ms % 1000 === 0) return `${ms / 1000} s`;
    return `${ms} ms`;
  }

  function fmtClock(iso) {
    const d = new Date(iso);
    if (typeof iso !== 'string' || Number.isNaN(d.getTime())) return String(iso ?? '');
    const pad = (x, n = 2) => String(x).padStart(n, '0');
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function clip(text, max) {
    return text.length > max ? text.slice(0, max - 1) + '…' : text;
  }

  // Sets text only when it changed: cheaper, and keeps the one text node in place.
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function setClass(el, name, on) {
    if (el.classList.contains(name) !== on) el.classList.toggle(name, on);
  }

  function cloneTemplate(id) {
    return $(id).content.firstElementChild.cloneNode(true);
  }

  // ---------------------------------------------------------------------- token

  const tokenStore = {
    get() {
      try { return sessionStorage.getItem(TOKEN_KEY) || null; } catch { return null; }
    },
    set(token) {
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* storage disabled */ }
    },
    clear() {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage disabled */ }
    },
  };

  // `#token=...` (possibly among other fragment parameters). The fragment never reaches
  // the server; it is removed from the address bar (and history entry) at once. Parsed
  // by hand rather than with URLSearchParams, which would turn a '+' into a space.
  function takeTokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return null;
    let token = null;
    const rest = [];
    for (const part of hash.split('&')) {
      if (part.startsWith('token=')) {
        const raw = part.slice(6);
        try { token = decodeURIComponent(raw); } catch { token = raw; }
      } else if (part) {
        rest.push(part);
      }
    }
    if (token === null) return null;
    const url = location.pathname + location.search + (rest.length ? '#' + rest.join('&') : '');
    history.replaceState(history.state, '', url);
    return token || null;
  }

  // ----------------------------------------------------------------- SSE parser

  // Incremental text/event-stream parser (WHATWG "event stream interpretation"): chunks
  // may split lines, blocks and CRLF pairs anywhere.
  class SseParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = '';
      this.name = '';
      this.data = [];
    }

    push(text) {
      this.buffer += text;
      const buf = this.buffer;
      let pos = 0;
      for (;;) {
        let nl = -1;
        for (let i = pos; i < buf.length; i++) {
          const c = buf.charCodeAt(i);
          if (c === 10 || c === 13) { nl = i; break; }
        }
        if (nl < 0) break;
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
        if (buf.charCodeAt(nl) === 13 && nl === buf.length - 1) break;
        const line = buf.slice(pos, nl);
        pos = nl + (buf.charCodeAt(nl) === 13 && buf.charCodeAt(nl + 1) === 10 ? 2 : 1);
        this.line(line);
      }
      this.buffer = pos > 0 ? buf.slice(pos) : buf;
      if (this.buffer.length > MAX_SSE_BUFFER) throw new Error('event stream line too long');
    }

    line(line) {
      if (line === '') {  // end of a block
        if (this.data.length) this.onEvent(this.name || 'message', this.data.join('\n'));
        this.name = '';
        this.data = [];
        return;
      }
      if (line.charCodeAt(0) === 58) return;  // ':' comment (keep-alive)
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      if (field === 'event') this.name = value;
      else if (field === 'data') this.data.push(value);
      // id and retry: not used by this feed
    }
  }

  // ---------------------------------------------------------------- ring buffer

  class Ring {
    constructor(size = POINTS) {
      this.values = new Float64Array(size);
      this.start = 0;
      this.length = 0;
    }
    push(v) {
      const size = this.values.length;
      if (this.length < size) {
        this.values[(this.start + this.length) % size] = v;
        this.length++;
      } else {
        this.values[this.start] = v;
        this.start = (this.start + 1) % size;
      }
    }
    at(i) { return this.values[(this.start + i) % this.values.length]; }
    last() { return this.length ? this.at(this.length - 1) : NaN; }
    max() {
      let m = 0;
      for (let i = 0; i < this.length; i++) m = Math.max(m, this.at(i));
      return m;
    }
    sum() {
      let s = 0;
      for (let i = 0; i < this.length; i++) s += this.at(i);
      return s;
    }
    clear() { this.start = 0; this.length = 0; }
  }

  // ---------------------------------------------------------------- page state

  const state = {
    hello: null,
    snapshot: null,          // the latest snapshot, rendered at the next frame
    snapshotDirty: false,
    prevTotals: null,        // for per-second rates
    prevUptime: NaN,
    pendingEvents: [],       // lifecycle rows not yet in the DOM (at most EVENTS_KEPT)
    received: 0,             // lifecycle events received since the page loaded
    lastSeq: 0,              // newest lifecycle seq shown (to skip replays on reconnect)
    lastEventTime: '',
    frame: 0,
  };

  const series = {
    connections: new Ring(),
    admissions: new Ring(),
    refusals: new Ring(),
    evictions: new Ring(),
    restarts: new Ring(),
    messages: new Ring(),
    rss: new Ring(),
  };
  const refusalsByReason = new Map();  // reason -> Ring, aligned with series.refusals

  function scheduleRender() {
    if (!state.frame) state.frame = requestAnimationFrame(render);
  }

  // -------------------------------------------------------------------- status

  const statusEl = $('status');
  function setStatus(status, detail) {
    setText(statusEl, status);
    statusEl.dataset.status = status;
    statusEl.title = detail || '';
  }

  function showNotice(text) {
    const el = $('feed-notice');
    setText(el, text || '');
    el.hidden = !text;
  }

  // ---------------------------------------------------------------------- feed

  const feed = {
    generation: 0,       // bumped to orphan a running connection attempt
    controller: null,
    backoff: BACKOFF_MIN_MS,
    retryTimer: 0,
    watchdogTimer: 0,
    everLive: false,
  };

  function stopFeed() {
    feed.generation++;
    clearTimeout(feed.retryTimer);
    clearTimeout(feed.watchdogTimer);
    if (feed.controller) feed.controller.abort();
    feed.controller = null;
  }

  function scheduleReconnect(why) {
    clearTimeout(feed.watchdogTimer);
    const delay = feed.backoff;
    feed.backoff = Math.min(feed.backoff * 2, BACKOFF_MAX_MS);
    setStatus('reconnecting', `${why}; retrying in ${delay / 1000} s`);
    clearTimeout(feed.retryTimer);
    feed.retryTimer = setTimeout(connect, delay);
  }

  // No byte for this long means a stalled or half-open connection: drop it and reconnect.
  function armWatchdog(controller) {
    clearTimeout(feed.watchdogTimer);
    const interval = (state.hello && state.hello.interval_ms) || 500;
    feed.watchdogTimer = setTimeout(() => controller.abort(), Math.max(5000, 6 * interval));
  }

  async function connect() {
    stopFeed();
    const token = tokenStore.get();
    if (!token) {
      showLogin(null);
      return;
    }
    const generation = feed.generation;
    const controller = new AbortController();
    feed.controller = controller;
    if (!feed.everLive) setStatus('connecting');

    let response;
    try {
      response = await fetch('/admin/events', {
        headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch (e) {
      if (generation === feed.generation) scheduleReconnect('the server cannot be reached');
      return;
    }
    if (generation !== feed.generation) return;

    if (response.status === 401) {
      refuse('The admin token was refused (401): check WSVISOR_ADMIN_TOKEN and type it again.');
      return;
    }
    if (response.status === 404) {
      adminOff();
      return;
    }
    if (!response.ok || !response.body) {
      const body = await response.json().catch(() => null);
      if (generation !== feed.generation) return;
      if (response.status === 503 && body && body.error === 'too_many_streams') {
        showNotice('Too many dashboards are reading this server (at most 8): close one. Retrying…');
      } else {
        showNotice(`The event feed answered HTTP ${response.status}. Retrying…`);
      }
      scheduleReconnect(`HTTP ${response.status}`);
      return;
    }

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser((name, data) => {
      if (generation === feed.generation) dispatch(name, data);
    });
    armWatchdog(controller);
    let why = 'the feed ended';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (generation !== feed.generation) {
          reader.cancel().catch(() => {});
          return;
        }
        if (done) break;
        armWatchdog(controller);
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch (e) {
      why = controller.signal.aborted ? 'the feed stalled' : 'the connection was lost';
      reader.cancel().catch(() => {});
    }
    if (generation !== feed.generation) return;
    scheduleReconnect(why);
  }

  function dispatch(name, data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;  // not JSON: not ours to show
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (name) {
      case 'hello': onHello(msg); break;
      case 'lifecycle': onLifecycle(msg); break;
      case 'gap': onGap(msg); break;
      case 'snapshot': onSnapshot(msg); break;
      case 'bye':
        showNotice(`The server ended the feed (${String(msg.reason ?? 'no reason')}). Reconnecting…`);
        break;
      default: break;
    }
  }

  function onHello(hello) {
    state.hello = hello;
    feed.everLive = true;
    feed.backoff = BACKOFF_MIN_MS;
    setText($('node'), String(hello.node ?? '–'));
    setText($('mode'), String(hello.mode ?? '–'));
    setText($('version'), String(hello.version ?? '–'));
    $('faults').hidden = hello.faults_enabled !== true;
    showNotice('');
    $('login').hidden = true;
    $('auth-error').hidden = true;
    $('dashboard').hidden = false;
    $('forget-token').hidden = false;
    setStatus('live');
  }

  function onLifecycle(ev) {
    // On reconnect the server replays the events it keeps; those already shown are
    // skipped. A restarted server counts from 1 again: its events are newer in time.
    const seq = Number(ev.seq);
    const time = typeof ev.time === 'string' ? ev.time : '';
    if (Number.isFinite(seq) && seq <= state.lastSeq && !(time > state.lastEventTime)) return;
    if (Number.isFinite(seq)) state.lastSeq = seq;
    if (time > state.lastEventTime) state.lastEventTime = time;
    queueEvent(ev);
  }

  function onGap(gap) {
    const missed = Number(gap.missed);
    queueEvent({
      time: new Date().toISOString(),
      level: 'warn',
      event: 'gap',
      msg: `${Number.isFinite(missed) ? missed : '?'} events were not sent: the dashboard fell behind`,
      fields: {},
    });
  }

  function queueEvent(ev) {
    state.received++;
    state.pendingEvents.push(ev);
    // Only the newest EVENTS_KEPT can ever be shown (a hidden tab gets no frames).
    if (state.pendingEvents.length > EVENTS_KEPT * 2) {
      state.pendingEvents.splice(0, state.pendingEvents.length - EVENTS_KEPT);
    }
    scheduleRender();
  }

  // ------------------------------------------------------------------ snapshot

  const sumValues = (obj) => {
    let s = 0;
    if (obj && typeof obj === 'object') for (const v of Object.values(obj)) s += int(v);
    return s;
  };

  // Rates come from consecutive snapshots' monotonic counters, per uptime second. A
  // counter that went down (the server restarted) gives no rate for that step.
  function onSnapshot(snap) {
    const totals = snap.totals && typeof snap.totals === 'object' ? snap.totals : null;
    const uptime = Number(snap.uptime_s);
    const prev = state.prevTotals;
    const dt = uptime - state.prevUptime;
    const usable = prev && totals && Number.isFinite(dt) && dt > 0.05;
    const rate = (now, before) => {
      if (!usable) return 0;
      const d = now - before;
      return d > 0 ? d / dt : 0;
    };

    if (totals) {
      series.connections.push(int(totals.connections));
      series.rss.push(int(totals.rss_bytes) / (1024 * 1024));
      series.admissions.push(rate(int(totals.opened), prev ? int(prev.opened) : 0));
      series.evictions.push(rate(sumValues(totals.evicted), prev ? sumValues(prev.evicted) : 0));
      series.restarts.push(rate(sumValues(totals.restarts), prev ? sumValues(prev.restarts) : 0));
      series.messages.push(rate(int(totals.messages_in) + int(totals.messages_out),
                                prev ? int(prev.messages_in) + int(prev.messages_out) : 0));
      const refused = totals.refused && typeof totals.refused === 'object' ? totals.refused : {};
      const prevRefused = prev && prev.refused && typeof prev.refused === 'object' ? prev.refused : {};
      let sum = 0;
      for (const reason of Object.keys(refused)) {
        if (!refusalsByReason.has(reason)) {
          const ring = new Ring();
          // Aligned with the sum's ring: earlier points were 0 for this reason.
          for (let i = 0; i < series.refusals.length; i++) ring.push(0);
          refusalsByReason.set(reason, ring);
        }
      }
      for (const [reason, ring] of refusalsByReason) {
        const r = rate(int(refused[reason]), int(prevRefused[reason]));
        ring.push(r);
        sum += r;
      }
      series.refusals.push(sum);
      state.prevTotals = totals;
      state.prevUptime = uptime;
    }
    state.snapshot = snap;
    state.snapshotDirty = true;
    scheduleRender();
  }

  // -------------------------------------------------------------------- render

  function render() {
    state.frame = 0;
    if (state.snapshotDirty && state.snapshot) {
      state.snapshotDirty = false;
      renderSnapshot(state.snapshot);
      drawCharts();
    }
    if (state.pendingEvents.length) renderEvents();
  }

  function renderSnapshot(snap) {
    setText($('uptime'), fmtDuration(Number(snap.uptime_s)));
    const readiness = $('readiness');
    readiness.hidden = false;
    const word = snap.draining ? 'draining' : snap.ready ? 'ready' : 'not ready';
    setText(readiness, word);
    readiness.dataset.state = word === 'not ready' ? 'starting' : word;

    renderTree(snap.tree, snap.caps);
    renderCaps(snap.caps);
    renderTotals(snap.totals);
    renderUpstream(snap.upstream);
    renderCluster(snap.cluster, Date.parse(snap.time));
  }

  // ---- tree

  const tree = {
    nodes: new Map(),    // name -> {el, refs, restarts, recentUntil}
    rootBox: null,
    childBox: null,
    empty: null,
  };

  function treeNode(name, shard) {
    let node = tree.nodes.get(name);
    if (node && node.shard === shard) return node;
    if (node) node.el.remove();
    const el = cloneTemplate(shard ? 'tpl-shard' : 'tpl-node');
    el.dataset.node = name;
    node = {
      el,
      shard,
      name: el.querySelector('.name'),
      state: el.querySelector('.state'),
      detail: el.querySelector('.detail'),
      restarts: el.querySelector('.restarts'),
      connections: el.querySelector('.connections'),
      bar: el.querySelector('.shard-bar'),
      load: el.querySelector('.shard-load'),
      lastRestarts: null,
      recentUntil: 0,
    };
    setText(node.name, name);
    tree.nodes.set(name, node);
    return node;
  }

  function updateCommon(node, data, now) {
    const restarts = int(data.restarts);
    setText(node.restarts, String(restarts));
    const st = typeof data.state === 'string' ? data.state : 'unknown';
    setText(node.state, st);
    node.state.dataset.state = st;
    if (node.lastRestarts !== null && restarts > node.lastRestarts) {
      node.recentUntil = now + RECENT_RESTART_MS;
    }
    node.lastRestarts = restarts;
    setClass(node.el, 'is-restarting', st === 'restarting');
    setClass(node.el, 'recent-restart', now < node.recentUntil);
  }

  function renderTree(root, caps) {
    const box = $('tree');
    if (!tree.rootBox) {
      box.replaceChildren();
      tree.rootBox = document.createElement('div');
      tree.rootBox.className = 'tree-root';
      tree.childBox = document.createElement('div');
      tree.childBox.className = 'tree-children';
      tree.empty = document.createElement('p');
      tree.empty.className = 'warn-text';
      tree.empty.hidden = true;
      setText(tree.empty, 'The supervision tree did not answer this snapshot.');
      box.append(tree.empty, tree.rootBox, tree.childBox);
    }
    tree.empty.hidden = !!root;
    setClass(box, 'stale', !root);
    if (!root || typeof root !== 'object') return;

    const now = performance.now();
    const rootName = String(root.name ?? 'root');
    const rootNode = treeNode(rootName, false);
    if (rootNode.el.parentNode !== tree.rootBox) tree.rootBox.replaceChildren(rootNode.el);
    updateCommon(rootNode, root, now);
    const inWindow = int(root.restarts_in_window);
    const budget = int(root.max_restarts);
    setText(rootNode.detail,
      `${String(root.strategy ?? '?')} · ${inWindow} / ${budget} in ${fmtWindow(Number(root.window_ms))}`);
    rootNode.detail.title = 'restarts within the window against the restart budget';
    // Near the budget: one or two more restarts and the root gives up (exit 1).
    setClass(rootNode.el, 'near-budget', budget > 0 && inWindow >= Math.max(1, Math.ceil(budget * 0.6)));
    setClass(rootNode.el, 'at-budget', budget > 0 && inWindow >= budget);

    const children = Array.isArray(root.children) ? root.children : [];
    const shardCount = children.filter((c) => c && typeof c.connections === 'number').length;
    const fairShare = caps && caps.max_connections > 0 && shardCount > 0
      ? caps.max_connections / shardCount : 0;
    const seen = new Set([rootName]);
    let index = 0;
    for (const child of children) {
      if (!child || typeof child !== 'object') continue;
      const name = String(child.name ?? '?');
      if (seen.has(name)) continue;
      seen.add(name);
      const isShard = typeof child.connections === 'number';
      const node = treeNode(name, isShard);
      const at = tree.childBox.children[index];
      if (at !== node.el) tree.childBox.insertBefore(node.el, at || null);
      index++;
      updateCommon(node, child, now);
      if (isShard) {
        const conns = int(child.connections);
        setText(node.connections, String(conns));
        const share = fairShare > 0 ? conns / fairShare : 0;
        node.bar.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
        node.load.title = fairShare > 0
          ? `${fmtInt(conns)} of a fair share of ${fmtInt(fairShare)} (max_connections / shards)`
          : '';
        setClass(node.el, 'hot', share >= 0.9);
      } else if (node.detail) {
        const parts = [];
        if (typeof child.breaker === 'string') parts.push(`breaker ${child.breaker}`);
        if (typeof child.inflight === 'number') parts.push(`${child.inflight} in flight`);
        setText(node.detail, parts.join(' · '));
        setClass(node.el, 'breaker-open', child.breaker === 'open');
      }
    }
    for (const [name, node] of tree.nodes) {
      if (!seen.has(name)) {
        node.el.remove();
        tree.nodes.delete(name);
      }
    }
  }

  // ---- caps

  function makeRows(table, cells) {
    const body = table.tBodies[0];
    const rows = [];
    for (let i = 0; i < TOP_ROWS; i++) {
      const tr = document.createElement('tr');
      const key = document.createElement('td');
      key.className = 'key';
      tr.append(key);
      const extra = [];
      for (let c = 1; c < cells; c++) {
        const td = document.createElement('td');
        extra.push(td);
        tr.append(td);
      }
      tr.hidden = true;
      body.append(tr);
      rows.push({ tr, key, cells: extra });
    }
    return rows;
  }

  let topUserRows = null;
  let topIpRows = null;

  function renderTop(rows, list, cap) {
    const items = Array.isArray(list) ? list : [];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      const item = items[i];
      if (!item || typeof item !== 'object') {
        row.tr.hidden = true;
        continue;
      }
      row.tr.hidden = false;
      const key = String(item.key ?? '');
      setText(row.key, clip(key, 48));
      row.key.title = key;
      const count = int(item.count);
      setText(row.cells[0], String(count));
      setClass(row.tr, 'at-cap', cap > 0 && count >= cap);
      setClass(row.tr, 'near-cap', cap > 0 && count < cap && count >= cap * 0.8);
    }
  }

  function renderCaps(caps) {
    $('caps-unavailable').hidden = !!caps;
    if (!caps || typeof caps !== 'object') return;
    if (!topUserRows) {
      topUserRows = makeRows($('top-users'), 2);
      topIpRows = makeRows($('top-ips'), 2);
      for (const r of topUserRows.concat(topIpRows)) r.cells[0].className = 'num';
    }
    const used = int(caps.connections);
    const max = int(caps.max_connections);
    const soft = int(caps.soft_connections);
    setText($('caps-max'), max > 0 ? fmtInt(max) : '∞');
    const fill = max > 0 ? Math.min(1, used / max) : 0;
    const bar = $('caps-bar');
    bar.style.width = `${(fill * 100).toFixed(2)}%`;
    const meter = $('caps-meter');
    setClass(meter, 'warn', soft > 0 && used >= soft);
    setClass(meter, 'crit', max > 0 && used >= max * 0.97);
    meter.title = `${fmtInt(used)} of ${fmtInt(max)} connections held`;
    const mark = $('caps-soft');
    mark.hidden = !(max > 0 && soft > 0);
    if (max > 0 && soft > 0) mark.style.left = `${Math.min(100, (soft / max) * 100).toFixed(2)}%`;
    const perUser = int(caps.max_per_user);
    const perIp = int(caps.max_per_ip);
    setText($('caps-line'),
      `${fmtInt(used)} held · soft ${soft > 0 ? fmtInt(soft) : '–'} · per user ${perUser > 0 ? perUser : 'off'} · per IP ${perIp > 0 ? perIp : 'off'}`);
    setText($('cap-user'), perUser > 0 ? `(cap ${perUser})` : '');
    setText($('cap-ip'), perIp > 0 ? `(cap ${perIp})` : '');
    renderTop(topUserRows, caps.top_users, perUser);
    renderTop(topIpRows, caps.top_ips, perIp);
  }

  function renderTotals(totals) {
    if (!totals || typeof totals !== 'object') return;
    setText($('total-connections'), String(int(totals.connections)));
    setText($('count-opened'), fmtInt(int(totals.opened)));
    setText($('count-refused'), fmtInt(sumValues(totals.refused)));
    setText($('count-evicted'), fmtInt(sumValues(totals.evicted)));
    setText($('count-restarts'), fmtInt(sumValues(totals.restarts)));
    setText($('count-sweeps'), fmtInt(sumValues(totals.sweeps)));
    setText($('count-rss'), `${(int(totals.rss_bytes) / (1024 * 1024)).toFixed(1)} MiB`);
  }

  function renderUpstream(up) {
    const box = $('upstream');
    box.hidden = !up || typeof up !== 'object';
    if (box.hidden) return;
    const breaker = $('upstream-breaker');
    setText(breaker, String(up.breaker ?? '?'));
    breaker.dataset.state = String(up.breaker ?? '');
    setText($('upstream-inflight'), String(int(up.inflight)));
  }

  let clusterRows = null;
  function renderCluster(cluster, now) {
    const box = $('cluster');
    box.hidden = !cluster || typeof cluster !== 'object';
    if (box.hidden) return;
    if (!clusterRows) clusterRows = makeRows($('cluster-nodes'), 3);
    const st = $('cluster-state');
    setText(st, String(cluster.state ?? '?'));
    st.dataset.state = String(cluster.state ?? '');
    const nodes = Array.isArray(cluster.nodes) ? cluster.nodes : [];
    for (let i = 0; i < clusterRows.length; i++) {
      const row = clusterRows[i];
      const n = nodes[i];
      row.tr.hidden = !n || typeof n !== 'object';
      if (row.tr.hidden) continue;
      const id = String(n.node_id ?? '?');
      setText(row.key, clip(id, 32) + (n.draining ? ' (draining)' : ''));
      setClass(row.tr, 'self', id === cluster.node_id);
      setText(row.cells[0], String(int(n.connections)));
      row.cells[0].className = 'num';
      // The lease as time left, from the snapshot's own clock (the browser's may differ).
      const left = (Date.parse(n.lease_expires_at) - now) / 1000;
      setText(row.cells[1], Number.isFinite(left) ? (left > 0 ? `${left.toFixed(1)} s` : 'expired') : '?');
      setClass(row.tr, 'near-cap', Number.isFinite(left) && left <= 0);
      row.cells[1].title = `lease expires at ${String(n.lease_expires_at ?? '?')}`;
    }
  }

  // ---- events

  const EVENT_KINDS = new Set(['restart', 'refused', 'refusals_summary', 'sweep', 'fault',
    'drain_begun', 'gap', 'evicted', 'eviction']);

  function fieldText(v) {
    if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
    if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
    try { return JSON.stringify(v); } catch { return '?'; }
  }

  function fillEvent(li, ev) {
    const [time, level, name, msg, fields] = li.children;
    const eventName = String(ev.event ?? '?');
    const lvl = String(ev.level ?? 'info');
    li.dataset.event = eventName;
    li.className = 'event level-' + lvl.replace(/[^a-z]/g, '') +
      (EVENT_KINDS.has(eventName) ? ' kind-' + eventName.replace(/[^a-z_]/g, '') : '');
    setText(time, fmtClock(ev.time));
    time.dateTime = typeof ev.time === 'string' ? ev.time : '';
    time.title = typeof ev.time === 'string' ? ev.time : '';
    setText(level, lvl);
    setText(name, eventName);
    setText(msg, clip(String(ev.msg ?? ''), 160));
    let text = '';
    if (ev.fields && typeof ev.fields === 'object') {
      const parts = [];
      for (const [k, v] of Object.entries(ev.fields)) parts.push(`${k}=${clip(fieldText(v), 120)}`);
      text = parts.join(' ');
    }
    setText(fields, clip(text, 400));
    li.title = clip(`${String(ev.msg ?? '')}\n${text}`, 2000);
  }

  function renderEvents() {
    const list = $('events');
    // Only the newest EVENTS_KEPT pending ones survive into the list anyway.
    const pending = state.pendingEvents.splice(0);
    const fresh = pending.slice(-EVENTS_KEPT);
    for (const ev of fresh) {
      // Reuse the oldest row once the list is full: the row count never passes 100.
      let li;
      if (list.childElementCount >= EVENTS_KEPT) li = list.lastElementChild;
      else li = cloneTemplate('tpl-event');
      fillEvent(li, ev);
      list.insertBefore(li, list.firstElementChild);
    }
    list.dataset.received = String(state.received);
  }

  // -------------------------------------------------------------------- charts

  const CHARTS = [
    { key: 'connections', title: 'connections', fmt: (v) => fmtInt(v) },
    { key: 'admissions', title: 'admissions/s', fmt: fmtRate },
    { key: 'refusals', title: 'refusals/s', fmt: fmtRate, byReason: true },
    { key: 'evictions', title: 'evictions/s', fmt: fmtRate },
    { key: 'restarts', title: 'restarts/s', fmt: fmtRate },
    { key: 'messages', title: 'messages/s (in+out)', fmt: fmtRate },
    { key: 'rss', title: 'RSS MiB', fmt: (v) => (Number.isFinite(v) ? v.toFixed(1) : '–') },
  ];
  const REASON_LINES = 3;  // top refusal reasons drawn and named in the legend
  const charts = [];
  let palette = null;

  function readPalette() {
    const css = getComputedStyle(document.documentElement);
    const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    palette = {
      line: v('--chart-line', '#2563eb'),
      fill: v('--chart-fill', 'rgba(37,99,235,0.12)'),
      grid: v('--chart-grid', 'rgba(0,0,0,0.08)'),
      text: v('--muted', '#667'),
      reasons: [v('--chart-r1', '#dc2626'), v('--chart-r2', '#d97706'), v('--chart-r3', '#7c3aed')],
      font: v('--chart-font', '10px system-ui, sans-serif'),
    };
  }

  function setupCharts() {
    const box = $('charts');
    for (const def of CHARTS) {
      const fig = cloneTemplate('tpl-chart');
      fig.dataset.series = def.key;
      const canvas = fig.querySelector('canvas');
      canvas.dataset.series = def.key;
      canvas.dataset.points = '0';
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', def.title);
      setText(fig.querySelector('.chart-title'), def.title);
      const legend = fig.querySelector('.legend');
      const swatches = [];
      if (def.byReason) {
        for (let i = 0; i < REASON_LINES; i++) {
          const item = document.createElement('span');
          item.className = `legend-item r${i + 1}`;
          item.hidden = true;
          legend.append(item);
          swatches.push(item);
        }
      } else {
        legend.remove();
      }
      box.append(fig);
      charts.push({ def, fig, canvas, value: fig.querySelector('.chart-value'), swatches });
    }
    readPalette();
    const scheme = matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', () => { readPalette(); drawCharts(); });
    window.addEventListener('resize', () => drawCharts());
  }

  function topReasons() {
    const ranked = [];
    for (const [reason, ring] of refusalsByReason) {
      const s = ring.sum();
      if (s > 0) ranked.push([reason, ring, s]);
    }
    ranked.sort((a, b) => b[2] - a[2]);
    return ranked.slice(0, REASON_LINES);
  }

  function drawCharts() {
    if (!palette) return;
    for (const chart of charts) drawChart(chart);
  }

  function drawChart(chart) {
    const { def, canvas } = chart;
    const ring = series[def.key];
    canvas.dataset.points = String(ring.length);
    setText(chart.value, def.fmt(ring.last()));

    // Match the backing store to the displayed size (crisp on HiDPI screens).
    const dpr = window.devicePixelRatio || 1;
    const cssW = Math.max(50, canvas.clientWidth || 300);
    const cssH = Math.max(30, canvas.clientHeight || 80);
    const w = Math.round(cssW * dpr);
    const h = Math.round(cssH * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);

    const reasons = def.byReason ? topReasons() : [];
    let max = ring.max();
    const top = max > 0 ? niceCeil(max) : 1;
    const padTop = 12;
    const plotH = cssH - padTop - 2;
    const x = (i) => (POINTS > 1 ? (i + (POINTS - ring.length)) * (cssW / (POINTS - 1)) : 0);
    const y = (v) => padTop + plotH - (Math.min(v, top) / top) * plotH;

    ctx.strokeStyle = palette.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (const f of [0, 0.5, 1]) {
      const gy = Math.round(padTop + plotH * f) + 0.5;
      ctx.moveTo(0, gy);
      ctx.lineTo(cssW, gy);
    }
    ctx.stroke();
    ctx.fillStyle = palette.text;
    ctx.font = palette.font;
    ctx.textBaseline = 'top';
    ctx.fillText(def.fmt(top), 2, 0);

    if (ring.length > 0) {
      ctx.beginPath();
      ctx.moveTo(x(0), y(ring.at(0)));
      for (let i = 1; i < ring.length; i++) ctx.lineTo(x(i), y(ring.at(i)));
      ctx.strokeStyle = palette.line;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.lineTo(x(ring.length - 1), padTop + plotH);
      ctx.lineTo(x(0), padTop + plotH);
      ctx.closePath();
      ctx.fillStyle = palette.fill;
      ctx.fill();
    }

    reasons.forEach(([, r], k) => {
      ctx.beginPath();
      ctx.moveTo(x(0), y(r.at(0)));
      for (let i = 1; i < r.length; i++) ctx.lineTo(x(i), y(r.at(i)));
      ctx.strokeStyle = palette.reasons[k];
      ctx.lineWidth = 1;
      ctx.stroke();
    });
    chart.swatches.forEach((item, k) => {
      const entry = reasons[k];
      item.hidden = !entry;
      if (entry) setText(item, `${entry[0]} ${fmtRate(entry[1].last())}/s`);
    });
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // ------------------------------------------------------------------- actions

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const token = tokenStore.get();
    if (!token) throw new ApiError(0, 'no admin token: type it in first');
    const init = { method, headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'the server cannot be reached');
    }
    const text = await response.text().catch(() => '');
    let data = null;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    if (response.status === 401) {
      refuse('The admin token was refused (401): check WSVISOR_ADMIN_TOKEN and type it again.');
      throw new ApiError(401, 'unauthorized');
    }
    if (!response.ok) {
      let message = text.slice(0, 200) || response.statusText || 'request failed';
      if (data && typeof data.error === 'string') {
        message = data.error + (typeof data.detail === 'string' ? `: ${data.detail}` : '');
      }
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // Runs one admin call for a panel: button disabled meanwhile, answer or error shown.
  async function runAction(button, resultEl, call, describe) {
    button.disabled = true;
    resultEl.dataset.state = 'pending';
    setText(resultEl, '…');
    try {
      const data = await call();
      resultEl.dataset.state = 'ok';
      setText(resultEl, describe(data));
    } catch (e) {
      resultEl.dataset.state = 'error';
      const status = e instanceof ApiError && e.status ? ` (HTTP ${e.status})` : '';
      setText(resultEl, `error: ${e.message}${status}`);
    } finally {
      button.disabled = false;
    }
  }

  const q = encodeURIComponent;

  function setupActions() {
    const scope = $('sweep-scope');
    const sweepValue = $('sweep-value');
    scope.addEventListener('change', () => {
      const needs = scope.value !== 'all';
      sweepValue.disabled = !needs;
      sweepValue.required = needs;
      sweepValue.placeholder = scope.value === 'ip' ? '127.0.0.1' : scope.value === 'user' ? 'user id' : 'user or ip';
      if (needs) sweepValue.focus();
    });
    $('sweep-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const level = $('sweep-level').value;
      let path = `/admin/sweep?level=${q(level)}`;
      if (scope.value !== 'all') {
        const v = sweepValue.value.trim();
        if (!v) {
          $('sweep-result').dataset.state = 'error';
          setText($('sweep-result'), `error: give the ${scope.value} to sweep`);
          return;
        }
        path += `&${scope.value}=${q(v)}`;
      }
      runAction($('sweep-run'), $('sweep-result'), () => api('POST', path), (r) => {
        const ev = (r && r.evicted) || {};
        return `${r.level} sweep of ${r.scope}: dead ${int(ev.dead)}, zombie ${int(ev.zombie)}, ` +
          `idle ${int(ev.idle)}, healthy ${int(ev.healthy)} in ${int(r.duration_ms)} ms`;
      });
    });

    const closeKind = $('close-kind');
    const closeValue = $('close-value');
    closeKind.addEventListener('change', () => {
      closeValue.placeholder = closeKind.value === 'user' ? 'user id' : 'n1.42 or 42';
    });
    $('close-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = closeValue.value.trim();
      if (!v) {
        $('close-result').dataset.state = 'error';
        setText($('close-result'), `error: give the ${closeKind.value} to close`);
        return;
      }
      let path;
      // A connection is named "<node>.<n>" (the feed doc) or by the v1 numeric id.
      if (closeKind.value === 'user') path = `/admin/close?user=${q(v)}`;
      else if (/^\d+$/.test(v)) path = `/admin/close?id=${v}`;
      else path = `/admin/close?connection=${q(v)}`;
      runAction($('close-run'), $('close-result'), () => api('POST', path),
        (r) => `closed ${int(r && r.closed)} (${closeKind.value} ${clip(v, 60)})`);
    });

    // Drain: a two-step confirmation in the page; it disarms itself after 15 s.
    let disarm = 0;
    const confirmBox = $('drain-confirm-box');
    const hideConfirm = () => {
      clearTimeout(disarm);
      confirmBox.hidden = true;
      $('drain-run').hidden = false;
    };
    $('drain-run').addEventListener('click', () => {
      confirmBox.hidden = false;
      $('drain-run').hidden = true;
      $('drain-cancel').focus();
      clearTimeout(disarm);
      disarm = setTimeout(hideConfirm, 15000);
    });
    $('drain-cancel').addEventListener('click', hideConfirm);
    $('drain-confirm').addEventListener('click', async () => {
      clearTimeout(disarm);
      await runAction($('drain-confirm'), $('drain-result'), () => api('POST', '/admin/drain'),
        (r) => (r && r.draining ? 'draining: the node stops admitting and closes every connection'
          : `drain answered ${clip(JSON.stringify(r), 100)}`));
      confirmBox.hidden = true;
      $('drain-run').hidden = false;
    });

    const runFault = (button, body) => runAction(button, $('fault-result'), () => {
      try {
        const parsed = JSON.parse(body);
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      } catch (err) {
        return Promise.reject(new ApiError(0, `the body is not a JSON object (${err.message})`));
      }
      return api('POST', '/admin/faults', body);
    }, (r) => `applied ${int(r && r.applied)}: ${clip(body, 120)}`);

    $('faults').addEventListener('submit', (e) => {
      e.preventDefault();
      runFault($('fault-run'), $('fault-body').value.trim());
    });
    const quick = [
      ['fault-crash-guard', '{"target":"limit_guard","action":"crash"}'],
      ['fault-crash-janitor', '{"target":"janitor","action":"crash"}'],
      ['fault-clear', '{"action":"clear"}'],
    ];
    for (const [id, body] of quick) $(id).addEventListener('click', (e) => runFault(e.currentTarget, body));
  }

  // ---------------------------------------------------------------- login flow

  function showLogin(message) {
    $('dashboard').hidden = true;
    $('login').hidden = false;
    $('forget-token').hidden = true;
    const err = $('auth-error');
    err.hidden = !message;
    setText(err, message || '');
    const input = $('token-input');
    input.value = '';
    input.focus();
  }

  // Drops everything shown: a refused token may be someone else at the screen.
  function resetView() {
    state.hello = null;
    state.snapshot = null;
    state.snapshotDirty = false;
    state.prevTotals = null;
    state.prevUptime = NaN;
    state.pendingEvents = [];
    state.lastSeq = 0;
    state.lastEventTime = '';
    for (const ring of Object.values(series)) ring.clear();
    refusalsByReason.clear();
    for (const node of tree.nodes.values()) node.el.remove();
    tree.nodes.clear();
    $('events').replaceChildren();
    for (const id of ['node', 'mode', 'version', 'uptime']) setText($(id), '–');
    $('readiness').hidden = true;
    feed.everLive = false;
  }

  function refuse(message) {
    stopFeed();
    tokenStore.clear();
    resetView();
    showNotice('');
    setStatus('refused');
    showLogin(message);
  }

  function adminOff() {
    stopFeed();
    resetView();
    showNotice('');
    setStatus('refused', 'the admin API is off');
    showLogin('The admin API is off on this server (404): no admin token is configured (WSVISOR_ADMIN_TOKEN).');
  }

  function setupLogin() {
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('token-input').value.trim();
      $('token-input').value = '';
      if (!token) return;
      tokenStore.set(token);
      $('auth-error').hidden = true;
      $('login').hidden = true;
      feed.backoff = BACKOFF_MIN_MS;
      connect();
    });
    $('forget-token').addEventListener('click', () => {
      stopFeed();
      tokenStore.clear();
      resetView();
      setStatus('connecting', 'no token');
      showLogin(null);
    });
    // A `#token=` pasted into this tab later.
    window.addEventListener('hashchange', () => {
      const token = takeTokenFromFragment();
      if (token) {
        tokenStore.set(token);
        feed.backoff = BACKOFF_MIN_MS;
        connect();
      }
    });
  }

  // ---------------------------------------------------------------------- start

  function start() {
    setupCharts();
    setupActions();
    setupLogin();
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        state.snapshotDirty = true;
        scheduleRender();
      }
    });
    const fromFragment = takeTokenFromFragment();
    if (fromFragment) tokenStore.set(fromFragment);
    if (tokenStore.get()) connect();
    else showLogin(null);
  }

  start();
})();
