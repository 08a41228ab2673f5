// plugbus dashboard: live updates over Server-Sent Events, filters and
// actions. No dependencies, no build step (docs/dashboard.md).
'use strict';
(() => {
  const $ = (s, r = document) => r.querySelector(s);
  const body = document.body;
  const page = body.dataset.page;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';

  // ---- messages ----------------------------------------------------------
  let flashTimer = 0;
  function flash(msg, kind) {
    const f = $('#flash');
    f.textContent = msg;
    f.className = kind || 'ok';
    f.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { f.hidden = true; }, 8000);
  }

  // ---- actions (admin) ---------------------------------------------------
  async function post(url, payload) {
    const res = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(payload || {}),
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* no body */ }
    if (!res.ok) throw new Error((data.code ? data.code + ': ' : '') + (data.message || res.statusText));
    return data;
  }

  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    b.disabled = true;
    try {
      const r = await post(b.dataset.action, b.dataset.host ? { host: b.dataset.host } : {});
      flash(r.message, 'ok');
      refresh();
    } catch (err) {
      flash(err.message, 'error');
    } finally {
      b.disabled = false;
    }
  });

  const logout = $('#logout');
  if (logout) {
    logout.addEventListener('click', async () => {
      try { await post('/dash/logout'); } catch (e) { /* the cookie goes anyway */ }
      location.reload();
    });
  }

  // ---- fragments: re-rendered by the server when something changed --------
  let refreshTimer = 0;
  let refreshing = false;
  let refreshAgain = false;
  let lastFetch = 0;
  const MIN_REFRESH = 1000; // ms between two fetches: a busy bus costs a page one a second
  function refresh() {
    const frag = $('#fragment');
    if (!frag || refreshTimer) return;
    const wait = Math.max(100, MIN_REFRESH - (Date.now() - lastFetch));
    refreshTimer = setTimeout(async () => {
      refreshTimer = 0;
      lastFetch = Date.now();
      if (refreshing) { refreshAgain = true; return; }
      refreshing = true;
      try {
        const res = await fetch('/dash/fragment/' + frag.dataset.fragment, { credentials: 'same-origin' });
        if (res.ok) {
          const open = new Set(Array.from(frag.querySelectorAll('details[open]'))
            .map((d) => d.closest('[data-seq]')).filter(Boolean).map((r) => r.dataset.seq));
          frag.innerHTML = await res.text();
          for (const seq of open) {
            const d = frag.querySelector('[data-seq="' + seq + '"] details');
            if (d) d.open = true;
          }
          frag.dataset.refreshed = String(Date.now());
        }
      } catch (e) {
        // The stream's state already says the broker is unreachable.
      } finally {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; refresh(); }
      }
    }, wait);
  }
  if (page === 'plugins' || page === 'hosts') setInterval(refresh, 5000);

  // ---- the live stream -----------------------------------------------------
  let es = null;
  let lastSeq = 0;
  let retryDelay = 500;
  let hellos = 0;
  let skew = 0; // server clock minus ours, ms

  function setLive(state, text) {
    const l = $('#live');
    if (!l) return;
    l.dataset.state = state;
    l.textContent = text;
  }

  function connect() {
    const topics = body.dataset.topics;
    if (!topics) return;
    const q = new URLSearchParams({ topics });
    if (topics.split(',').includes('events')) {
      if (lastSeq > 0) q.set('after', String(lastSeq));
      else q.set('last', body.dataset.backlog || '200');
    }
    const src = new EventSource('/dash/stream?' + q.toString());
    es = src;
    src.addEventListener('hello', (m) => {
      const h = JSON.parse(m.data);
      if (h.now) skew = Date.parse(h.now) - Date.now();
      setLive('live', 'live');
      retryDelay = 500;
      if (hellos++ > 0) refresh(); // notices may have been missed while away
    });
    src.addEventListener('ev', (m) => onEvent(JSON.parse(m.data)));
    src.addEventListener('overflow', (m) => {
      src.close();
      es = null;
      onOverflow(JSON.parse(m.data));
    });
    src.addEventListener('problem', (m) => {
      const p = JSON.parse(m.data);
      flash(p.code + ': ' + p.message, 'error');
    });
    for (const t of ['plugins', 'hosts', 'chains', 'dead-letters', 'actions']) src.addEventListener(t, refresh);
    src.onerror = () => {
      if (es !== src) return;
      setLive('reconnecting', 'reconnecting…');
      if (src.readyState === EventSource.CLOSED) {
        // The browser gave up (the broker answered with an error): retry
        // from the last event seen, with backoff.
        es = null;
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 10000);
      }
      // Otherwise the browser reconnects by itself, sending Last-Event-ID.
    };
  }

  // ---- events page -------------------------------------------------------
  const MAX_KEPT = 5000;
  const MAX_ROWS = 500;
  const WINDOW = 60; // seconds of rate history
  const events = []; // oldest first
  const rates = new Map(); // type -> Map(second -> count)
  let paused = false;
  let pausedAt = 0; // the last seq shown when paused
  let held = 0;
  let selected = 0;

  const filterInputs = ['type', 'subject', 'source', 'text'].map((k) => $('#f-' + k));
  function filters() {
    const f = {};
    for (const i of filterInputs) if (i && i.value.trim()) f[i.name] = i.value.trim().toLowerCase();
    return f;
  }
  const has = (v, s) => String(v || '').toLowerCase().includes(s);
  function matches(ev, f) {
    if (f.type && !has(ev.type, f.type)) return false;
    if (f.subject && !has(ev.about, f.subject) && !has(ev.subject, f.subject)) return false;
    if (f.source && !has(ev.source, f.source)) return false;
    if (f.text && ![ev.id, ev.type, ev.source, ev.about, ev.subject, ev.data, ev.error].some((v) => has(v, f.text))) return false;
    return true;
  }

  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function row(ev) {
    const tr = document.createElement('tr');
    tr.dataset.seq = String(ev.seq);
    if (ev.id) tr.dataset.id = ev.id;
    tr.dataset.type = ev.type || '';
    if (ev.seq === selected) tr.className = 'selected';
    cell(tr, ev.seq, 'num');
    cell(tr, clock(ev.time || ev.stored), 'muted');
    cell(tr, ev.type || '(not a CloudEvent)', 'type');
    cell(tr, ev.source);
    cell(tr, ev.about);
    const data = ev.error ? ev.error : (ev.data || '');
    cell(tr, data.length > 160 ? data.slice(0, 160) + '…' : data, ev.error ? 'data error' : 'data');
    return tr;
  }

  function render() {
    const tbody = $('#events');
    if (!tbody) return;
    const f = filters();
    const rows = [];
    for (let i = events.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      if (paused && events[i].seq > pausedAt) continue;
      if (matches(events[i], f)) rows.push(row(events[i]));
    }
    tbody.replaceChildren(...rows);
    status();
  }

  function status() {
    const tbody = $('#events');
    const n = tbody.children.length;
    $('#empty').hidden = n > 0;
    $('#count').textContent = n + ' shown · ' + events.length + ' received · last seq ' + lastSeq;
    const h = $('#held');
    h.hidden = !paused;
    h.textContent = held + ' new while paused';
  }

  function onEvent(ev) {
    if (ev.seq <= lastSeq) return; // never shown twice
    lastSeq = ev.seq;
    events.push(ev);
    if (events.length > MAX_KEPT) events.shift();
    countRate(ev);
    if (!$('#events')) return;
    if (paused) {
      held++;
      status();
      return;
    }
    if (matches(ev, filters())) {
      const tbody = $('#events');
      tbody.insertBefore(row(ev), tbody.firstChild);
      while (tbody.children.length > MAX_ROWS) tbody.removeChild(tbody.lastChild);
    }
    status();
  }

  function onOverflow(o) {
    setLive('behind', 'fell behind');
    const b = $('#behind');
    if (!b) return;
    $('#behind-text').textContent = 'You fell behind: ' + o.skipped + ' events skipped — reload from seq ' + o.from_seq + '.';
    $('#behind-seq').textContent = String(o.from_seq);
    b.dataset.from = String(o.from_seq);
    b.hidden = false;
  }

  function countRate(ev) {
    if (!ev.type) return;
    const sec = Math.floor(Date.parse(ev.stored) / 1000);
    const now = Math.floor((Date.now() + skew) / 1000);
    if (!(sec > now - WINDOW)) {
      if (!rates.has(ev.type)) { rates.set(ev.type, new Map()); setTimeout(drawRates, 0); }
      return;
    }
    let m = rates.get(ev.type);
    if (!m) { m = new Map(); rates.set(ev.type, m); setTimeout(drawRates, 0); }
    m.set(sec, (m.get(sec) || 0) + 1);
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function drawRates() {
    const list = $('#rate-list');
    if (!list) return;
    const now = Math.floor((Date.now() + skew) / 1000);
    const types = Array.from(rates.keys()).sort();
    const items = [];
    const dl = $('#types');
    const opts = [];
    for (const t of types) {
      const m = rates.get(t);
      const pts = [];
      let total = 0;
      let peak = 1;
      for (let s = now - WINDOW + 1; s <= now; s++) peak = Math.max(peak, m.get(s) || 0);
      for (let i = 0, s = now - WINDOW + 1; s <= now; s++, i++) {
        const v = m.get(s) || 0;
        total += v;
        pts.push(i + ',' + (15 - (v / peak) * 14).toFixed(1));
      }
      for (const s of m.keys()) if (s <= now - WINDOW) m.delete(s);
      const li = document.createElement('li');
      li.dataset.type = t;
      li.title = 'filter by ' + t;
      const name = document.createElement('span');
      name.className = 'rt';
      name.textContent = t.replace(/^io\.plugbus\./, '');
      const svg = document.createElementNS(SVG, 'svg');
      svg.setAttribute('viewBox', '0 0 ' + (WINDOW - 1) + ' 16');
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.setAttribute('class', 'spark');
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', pts.join(' '));
      svg.appendChild(line);
      const val = document.createElement('span');
      val.className = 'rv';
      val.textContent = (total / WINDOW).toFixed(2) + '/s';
      li.append(name, svg, val);
      items.push(li);
      const o = document.createElement('option');
      o.value = t;
      opts.push(o);
    }
    list.replaceChildren(...items);
    if (dl) dl.replaceChildren(...opts);
  }

  async function showDetail(seq) {
    selected = seq;
    for (const tr of document.querySelectorAll('#events tr.selected')) tr.className = '';
    const tr = document.querySelector('#events tr[data-seq="' + seq + '"]');
    if (tr) tr.className = 'selected';
    const d = $('#detail');
    $('#detail-seq').textContent = String(seq);
    $('#detail-body').textContent = 'loading…';
    d.hidden = false;
    try {
      const res = await fetch('/dash/event/' + seq, { credentials: 'same-origin' });
      const data = await res.json();
      $('#detail-body').textContent = JSON.stringify(data, null, 2);
    } catch (e) {
      $('#detail-body').textContent = 'could not load event ' + seq + ': ' + e.message;
    }
  }

  if (page === 'events') {
    let t = 0;
    for (const i of filterInputs) i.addEventListener('input', () => { clearTimeout(t); t = setTimeout(render, 80); });
    $('#filters').addEventListener('submit', (e) => e.preventDefault());
    $('#pause').addEventListener('click', () => {
      paused = !paused;
      pausedAt = lastSeq;
      const b = $('#pause');
      b.textContent = paused ? 'Resume' : 'Pause';
      b.setAttribute('aria-pressed', String(paused));
      if (!paused) { held = 0; render(); } else status();
    });
    $('#events').addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-seq]');
      if (tr) showDetail(Number(tr.dataset.seq));
    });
    $('#detail-close').addEventListener('click', () => { $('#detail').hidden = true; selected = 0; render(); });
    $('#rate-list').addEventListener('click', (e) => {
      const li = e.target.closest('li[data-type]');
      if (!li) return;
      $('#f-type').value = li.dataset.type;
      render();
    });
    $('#reload-from').addEventListener('click', () => {
      const from = Number($('#behind').dataset.from);
      $('#behind').hidden = true;
      lastSeq = from - 1;
      setLive('connecting', 'connecting…');
      connect();
    });
    setInterval(drawRates, 1000);
    status();
    drawRates();
  }

  connect();
})();
