// The page: polls GET /api/topology every few seconds and draws it
// (map.js), lists the recent traces of the selected node or edge
// (GET /api/traces), and shows one trace as a waterfall with every span's
// attributes (GET /api/traces/{id}).
//
// Everything that comes from the API is put in the page as text
// (textContent), never as HTML: span attributes carry paths and headers
// that anyone on the network could have chosen.
import { ServiceMap, fmt } from './map.js';

// A script error is shown, not swallowed (and tests read data-js-error).
window.addEventListener('error', (e) => {
  document.body.dataset.jsError = String(e.message);
  const b = document.querySelector('#banner');
  if (b) {
    b.hidden = false;
    b.textContent = `Page error: ${e.message}`;
  }
});
window.addEventListener('unhandledrejection', (e) => {
  document.body.dataset.jsError = String(e.reason);
});

const REFRESH_MS = 3000;
const TRACE_LIMIT = 100;
const $ = (sel) => document.querySelector(sel);

const state = {
  window: '5m',
  selection: null, // null | {type: 'node', id} | {type: 'edge', client, server}
  openTrace: null,
  refreshes: 0,
};

// A DOM element: el('td', {class: 'num', dataset: {x: 1}}, 'text', child...).
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') Object.assign(e.style, v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) {
    const err = new Error(`GET ${url}: HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

function windowSeconds(w) {
  const m = /^(\d+)\s*([smh])$/.exec(w || '');
  if (!m) return 300;
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2]];
}

// A stable colour per service, for the waterfall; never red, which means error.
function serviceColour(name) {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.codePointAt(0), 16777619);
  return `hsl(${30 + ((h >>> 0) % 290)}, 55%, 50%)`;
}

function banner(text) {
  const b = $('#banner');
  b.hidden = !text;
  b.textContent = text || '';
}

const map = new ServiceMap($('#map'), (sel) => select(sel));

// ---- topology ----

async function refreshTopology() {
  try {
    const topo = await getJSON(`/api/topology?window=${encodeURIComponent(state.window)}`);
    map.update(topo, windowSeconds(topo.window || state.window));
    banner(null);
    document.body.dataset.topology = 'ok';
    const n = (topo.nodes || []).length;
    $('#empty').hidden = n > 0 || map.nodes.size > 0;
    $('#status').textContent = `${map.nodes.size} nodes · ${map.edges.size} edges · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e.status === 404) {
      // An agent without the topology stage: the traces still work.
      map.update({ nodes: [], edges: [] }, 300);
      banner('This agent serves no service map (GET /api/topology: 404). Recent traces are listed on the right.');
      document.body.dataset.topology = 'missing';
    } else {
      // Keep the last map; say it is stale.
      banner(`Service map not refreshed: ${e.message}`);
      document.body.dataset.topology = 'error';
    }
    $('#empty').hidden = true;
    $('#status').textContent = new Date().toLocaleTimeString();
  }
}

// ---- selection and trace list ----

function select(sel) {
  state.selection = sel;
  map.select(sel);
  renderSelection();
  refreshTraces();
}

function statRow(k, v) {
  return el('tr', {}, el('th', {}, k), el('td', {}, v));
}

function renderSelection() {
  const box = $('#selection');
  box.replaceChildren();
  const s = state.selection;
  const secs = windowSeconds(state.window);
  if (!s) {
    box.append(el('h2', {}, 'Recent traces'), el('p', { class: 'hint' }, 'Click a service or a call on the map to see its traces.'));
    return;
  }
  if (s.type === 'node') {
    const n = map.nodeData?.get(s.id) || { id: s.id };
    box.append(el('h2', { dataset: { selected: 'node' } }, s.id, n.kind === 'virtual' ? el('span', { class: 'badge' }, 'virtual') : null));
    const t = el('table', { class: 'stats' });
    if (n.requests !== undefined) {
      t.append(statRow('requests in', `${n.requests} (${fmt.rate(n.requests / secs)})`));
      t.append(statRow('errors', `${n.errors || 0} (${fmt.pct(n.requests ? (n.errors || 0) / n.requests : 0)})`));
    }
    const calls = [...(map.edgeData?.values() || [])];
    t.append(statRow('called by', calls.filter((e) => e.server === s.id).map((e) => e.client).join(', ') || '–'));
    t.append(statRow('calls', calls.filter((e) => e.client === s.id).map((e) => e.server).join(', ') || '–'));
    box.append(t);
    return;
  }
  const e = map.edgeData?.get(`${s.client}\u0000${s.server}`) || {};
  box.append(el('h2', { dataset: { selected: 'edge' } }, `${s.client} → ${s.server}`));
  const t = el('table', { class: 'stats' });
  if (e.requests !== undefined) {
    t.append(statRow('requests', `${e.requests} (${fmt.rate(e.rate_per_s ?? e.requests / secs)})`));
    t.append(statRow('errors', `${e.errors || 0} (${fmt.pct(e.error_rate || 0)})`));
    t.append(statRow('latency', `p50 ${fmt.ms(e.p50_ms)} · p90 ${fmt.ms(e.p90_ms)} · p99 ${fmt.ms(e.p99_ms)}`));
  }
  const tcp = e.tcp;
  if (tcp) {
    t.append(statRow('connections', `${tcp.opened || 0} opened · ${tcp.failed || 0} failed (${tcp.refused || 0} refused, ${tcp.timeout || 0} timeout)`));
    t.append(statRow('tcp', `${tcp.reset || 0} reset · ${tcp.retransmits || 0} retransmits · srtt ${fmt.ms(tcp.srtt_ms)}`));
  }
  box.append(t);
}

function tracesQuery() {
  const p = new URLSearchParams();
  const s = state.selection;
  if (s?.type === 'node') p.set('service', s.id);
  if (s?.type === 'edge') {
    p.set('client', s.client);
    p.set('server', s.server);
  }
  if ($('#errors-only').checked) p.set('status', 'error');
  const min = $('#min-ms').value;
  if (min) p.set('min_duration_ms', min);
  p.set('limit', String(TRACE_LIMIT));
  return `/api/traces?${p}`;
}

// Rows are keyed by trace id and reused, so a refresh never replaces a row
// under the pointer: new traces appear on top, old ones fall off.
let traceSeq = 0;
async function refreshTraces() {
  const seq = ++traceSeq;
  const url = tracesQuery();
  let list;
  try {
    list = await getJSON(url);
  } catch (e) {
    if (seq === traceSeq) $('#trace-note').textContent = `Traces unavailable: ${e.message}`;
    return;
  }
  if (seq !== traceSeq) return; // a newer selection answered first
  const body = $('#trace-list tbody');
  const old = new Map([...body.children].map((r) => [r.dataset.traceId, r]));
  const rows = list.traces.map((t) => {
    let r = old.get(t.trace_id);
    if (!r) {
      r = el('tr', { class: 'trace', dataset: { traceId: t.trace_id }, onclick: () => openTrace(t.trace_id) });
      r.append(el('td', { class: 'time' }), el('td', { class: 'root' }), el('td', { class: 'num' }), el('td', { class: 'num' }));
    }
    r.dataset.spanCount = String(t.span_count);
    r.dataset.error = String(t.error);
    r.classList.toggle('error', t.error);
    r.classList.toggle('open', t.trace_id === state.openTrace);
    const [time, root, dur, spans] = r.children;
    time.textContent = new Date(t.start).toLocaleTimeString([], { hour12: false }) + `.${t.start.slice(20, 23)}`;
    root.replaceChildren(el('span', { class: 'svc' }, t.root_service), ' ', t.root_name);
    root.title = `${t.services.join(' → ')}\n${t.trace_id}`;
    dur.textContent = t.duration_ms.toFixed(t.duration_ms < 10 ? 2 : 1);
    spans.textContent = String(t.span_count);
    return r;
  });
  body.replaceChildren(...rows);
  $('#trace-note').textContent = rows.length
    ? `${rows.length} most recent of ${list.stored_traces} stored traces`
    : `No matching trace among the ${list.stored_traces} stored.`;
}

// ---- waterfall ----

async function openTrace(id) {
  state.openTrace = id;
  for (const r of document.querySelectorAll('#trace-list tr.trace')) r.classList.toggle('open', r.dataset.traceId === id);
  history.replaceState(null, '', `#trace=${id}`);
  const pane = $('#waterfall-pane');
  pane.hidden = false;
  let t;
  try {
    t = await getJSON(`/api/traces/${encodeURIComponent(id)}`);
  } catch (e) {
    $('#waterfall-title').textContent = e.status === 404 ? `Trace ${id} is no longer stored.` : e.message;
    $('#waterfall').replaceChildren();
    return;
  }
  if (state.openTrace !== id) return;
  renderWaterfall(t);
}

function renderWaterfall(t) {
  const pane = $('#waterfall-pane');
  pane.dataset.traceId = t.trace_id;
  $('#waterfall-title').replaceChildren(
    el('b', {}, t.root_name || 'trace'), ` · ${fmt.ms(t.duration_ms)} · ${t.span_count} spans · ${t.services.join(' → ')} · `,
    el('code', {}, t.trace_id),
  );
  const total = Math.max(t.duration_ms, 0.001);
  // Time axis: five ticks.
  const axis = el('div', { class: 'axis' }, el('div', { class: 'label' }, 'service · span'), el('div', { class: 'dur' }, 'duration'));
  const ticks = el('div', { class: 'track' });
  for (let i = 0; i <= 4; i++) {
    ticks.append(el('span', { class: 'tick', style: { left: `${i * 25}%` } }, fmt.ms((total * i) / 4)));
  }
  axis.append(ticks);
  const rows = [axis];
  for (const s of t.spans) {
    const left = (s.start_offset_ms / total) * 100;
    const width = Math.max((s.duration_ms / total) * 100, 0.4);
    const colour = serviceColour(s.service);
    const bar = el('div', {
      class: `bar${s.status === 'error' ? ' error' : ''}`,
      style: { left: `${Math.min(left, 99.6)}%`, width: `${Math.min(width, 100 - Math.min(left, 99.6))}%`, background: colour },
      title: `${fmt.ms(s.duration_ms)} from +${fmt.ms(s.start_offset_ms)}`,
    });
    const label = el('div', { class: 'label', style: { paddingLeft: `${6 + s.depth * 14}px` } },
      el('span', { class: 'chip', style: { background: colour } }),
      el('span', { class: 'svc' }, s.service), ' ',
      el('span', { class: `kind ${s.kind}` }, s.kind), ' ',
      el('span', { class: 'name' }, s.name));
    const row = el('div', {
      class: `span-row${s.status === 'error' ? ' error' : ''}`,
      dataset: { spanId: s.span_id, service: s.service, kind: s.kind, depth: String(s.depth) },
      onclick: () => row.classList.toggle('collapsed'),
    }, label, el('div', { class: 'dur' }, fmt.ms(s.duration_ms)), el('div', { class: 'track' }, bar));
    rows.push(row, attributes(s));
  }
  const wf = $('#waterfall');
  wf.classList.toggle('no-attrs', $('#toggle-attrs').dataset.hidden === 'true');
  wf.replaceChildren(...rows);
}

// Every attribute of a span, with the span's own fields first.
function attributes(s) {
  const box = el('div', { class: 'attrs', dataset: { spanId: s.span_id } });
  const add = (k, v, meta) => box.append(
    el('span', { class: `k${meta ? ' meta' : ''}`, dataset: { key: k } }, k),
    el('span', { class: 'v' }, Array.isArray(v) ? v.join(', ') : String(v)),
  );
  add('span_id', s.span_id, true);
  add('parent_span_id', s.parent_span_id || '(root)', true);
  if (s.peer) add('peer', s.peer, true);
  add('process', `${s.comm}${s.pid ? ` (pid ${s.pid})` : ''}${s.service_version ? ` · version ${s.service_version}` : ''}`, true);
  add('start', `${s.start} (+${fmt.ms(s.start_offset_ms)})`, true);
  add('duration', fmt.ms(s.duration_ms) + (s.time_to_first_byte_ms !== null ? ` · first byte after ${fmt.ms(s.time_to_first_byte_ms)}` : ''), true);
  add('status', s.status, true);
  for (const k of Object.keys(s.attributes).sort()) add(k, s.attributes[k], false);
  return box;
}

// ---- controls and the refresh loop ----

function bind() {
  $('#window').addEventListener('change', (e) => {
    state.window = e.target.value;
    tick();
  });
  $('#fit').addEventListener('click', () => map.fit());
  $('#find').addEventListener('input', (e) => map.find(e.target.value));
  $('#find').addEventListener('keydown', (e) => {
    if (e.key !== 'Enter') return;
    const hits = map.find(e.target.value);
    if (hits.length) {
      map.centre(hits[0]);
      select({ type: 'node', id: hits[0] });
    }
  });
  $('#errors-only').addEventListener('change', () => refreshTraces());
  $('#min-ms').addEventListener('change', () => refreshTraces());
  $('#show-all').addEventListener('click', () => select(null));
  $('#close-waterfall').addEventListener('click', () => {
    $('#waterfall-pane').hidden = true;
    state.openTrace = null;
    history.replaceState(null, '', location.pathname);
    for (const r of document.querySelectorAll('#trace-list tr.open')) r.classList.remove('open');
  });
  $('#toggle-attrs').addEventListener('click', (e) => {
    const hide = e.target.dataset.hidden !== 'true';
    e.target.dataset.hidden = String(hide);
    e.target.textContent = hide ? 'show attributes' : 'hide attributes';
    $('#waterfall').classList.toggle('no-attrs', hide);
  });
}

// One refresh at a time; a refresh asked for during one runs right after it.
let timer = null;
let busy = false;
let again = false;
async function tick() {
  clearTimeout(timer);
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    await refreshTopology();
    renderSelection();
    await refreshTraces();
    state.refreshes++;
    document.body.dataset.refreshes = String(state.refreshes);
  } finally {
    busy = false;
  }
  timer = setTimeout(tick, again ? 0 : REFRESH_MS);
  again = false;
}

bind();
renderSelection();
tick();
const m = /^#trace=([0-9a-f]{32})$/.exec(location.hash);
if (m) openTrace(m[1]);
