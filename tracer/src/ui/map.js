// The service map: nodes and edges of GET /api/topology drawn as SVG.
//
// Layout is layered by call depth (a caller left of what it calls), computed
// here in a few milliseconds even for hundreds of nodes, and deterministic:
// the same graph always gets the same picture, so a refresh never reshuffles
// what the operator is looking at. Big layers wrap into several columns.
// Elements are keyed by node id and edge (client, server) and reused across
// refreshes, so only figures and colours change while traffic flows.
// An ES module: app.js imports what it needs.

const SVG_NS = 'http://www.w3.org/2000/svg';
const NODE_W = 172;
const NODE_H = 44;
const ROW_GAP = 20;       // vertical space between two nodes of a column
const WRAP_GAP = 48;      // horizontal space between the columns of one layer
const LAYER_GAP = 230;    // horizontal space between layers (room for edge labels)
const MIN_PER_COLUMN = 16; // a layer wraps past max(this, what fills the view)
// Edge labels show on hover and selection only below this zoom, or past
// this many edges (where they would cover each other).
const LABEL_MIN_ZOOM = 0.55;
const LABEL_MAX_EDGES = 40;

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// Health class of a node or edge: error >= 5 % errors, warn >= 1 % errors or
// any failed connection, idle without requests, else ok.
function health(requests, errors, failedConnections) {
  if (!requests && !failedConnections) return 'idle';
  const rate = requests ? errors / requests : 0;
  if (rate >= 0.05) return 'error';
  if (rate >= 0.01 || failedConnections > 0) return 'warn';
  return 'ok';
}

const fmt = {
  rate(r) {
    if (!r) return '0/s';
    if (r >= 100) return `${Math.round(r)}/s`;
    return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}/s`;
  },
  pct(x) {
    if (!x) return '0%';
    const p = x * 100;
    return p < 0.1 ? '<0.1%' : `${p >= 10 ? p.toFixed(0) : p.toFixed(1)}%`;
  },
  ms(v) {
    if (v === undefined || v === null || Number.isNaN(v)) return '–';
    if (v >= 1000) return `${(v / 1000).toFixed(2)}s`;
    if (v >= 100) return `${v.toFixed(0)}ms`;
    return `${v >= 10 ? v.toFixed(1) : v.toFixed(2)}ms`;
  },
};

// Positions {x, y} (node centres) for every id, layered by call depth.
// `aspect` (width / height of the view) decides where tall layers wrap, so a
// big graph fills the view instead of a thin strip.
function layout(ids, edges, aspect = 1.4) {
  const sorted = [...ids].sort();
  const succ = new Map(sorted.map((id) => [id, new Set()]));
  const pred = new Map(sorted.map((id) => [id, new Set()]));
  for (const e of edges) {
    if (e.client === e.server || !succ.has(e.client) || !succ.has(e.server)) continue;
    succ.get(e.client).add(e.server);
    pred.get(e.server).add(e.client);
  }
  // 1. Break cycles: depth-first from the callers nobody calls, then from the
  //    rest, in name order; an edge back onto the DFS stack is left out of
  //    the layering (it is still drawn, as a curve below the nodes).
  const dag = new Map(sorted.map((id) => [id, []]));
  const state = new Map(); // undefined: new, 1: on the stack, 2: done
  const roots = sorted.filter((id) => pred.get(id).size === 0).concat(sorted);
  for (const root of roots) {
    if (state.get(root)) continue;
    state.set(root, 1);
    const stack = [[root, [...succ.get(root)].sort(), 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (top[2] >= top[1].length) {
        state.set(top[0], 2);
        stack.pop();
        continue;
      }
      const next = top[1][top[2]++];
      const s = state.get(next);
      if (s === 1) continue;
      dag.get(top[0]).push(next);
      if (!s) {
        state.set(next, 1);
        stack.push([next, [...succ.get(next)].sort(), 0]);
      }
    }
  }
  // 2. Longest-path layering: one layer right of the deepest caller.
  const indeg = new Map(sorted.map((id) => [id, 0]));
  for (const outs of dag.values()) for (const t of outs) indeg.set(t, indeg.get(t) + 1);
  const layer = new Map(sorted.map((id) => [id, 0]));
  const queue = sorted.filter((id) => indeg.get(id) === 0);
  for (let i = 0; i < queue.length; i++) {
    const u = queue[i];
    for (const v of dag.get(u)) {
      layer.set(v, Math.max(layer.get(v), layer.get(u) + 1));
      indeg.set(v, indeg.get(v) - 1);
      if (indeg.get(v) === 0) queue.push(v);
    }
  }
  const layers = [];
  for (const id of sorted) (layers[layer.get(id)] ||= []).push(id);
  // 3. Order inside layers: a few barycenter sweeps (down by callers, up by
  //    callees) to untangle edges; ties by name keep it deterministic.
  const pos = new Map();
  const place = (l) => l.forEach((id, i) => pos.set(id, i - (l.length - 1) / 2));
  layers.forEach(place);
  const sweep = (l, neighbours) => {
    const bary = new Map(l.map((id) => {
      const ns = [...neighbours.get(id)].filter((n) => layer.get(n) !== layer.get(id));
      return [id, ns.length ? ns.reduce((a, n) => a + pos.get(n), 0) / ns.length : pos.get(id)];
    }));
    l.sort((a, b) => bary.get(a) - bary.get(b) || (a < b ? -1 : 1));
    place(l);
  };
  for (let round = 0; round < 4; round++) {
    for (let i = 1; i < layers.length; i++) sweep(layers[i], pred);
    for (let i = layers.length - 2; i >= 0; i--) sweep(layers[i], succ);
  }
  // 4. Coordinates; a layer taller than perColumn wraps into columns. The
  //    bound makes a square-ish grid of all nodes match the view's shape.
  const cellW = NODE_W + WRAP_GAP;
  const cellH = NODE_H + ROW_GAP;
  const maxPerColumn = Math.max(MIN_PER_COLUMN, Math.ceil(Math.sqrt((sorted.length * cellW) / (cellH * aspect))));
  const out = new Map();
  let x = 0;
  for (const l of layers) {
    const cols = Math.ceil(l.length / maxPerColumn);
    const perCol = Math.ceil(l.length / cols);
    l.forEach((id, i) => {
      const col = Math.floor(i / perCol);
      const row = i % perCol;
      const inCol = Math.min(perCol, l.length - col * perCol);
      out.set(id, { x: x + col * (NODE_W + WRAP_GAP), y: (row - (inCol - 1) / 2) * (NODE_H + ROW_GAP) });
    });
    x += cols * (NODE_W + WRAP_GAP) - WRAP_GAP + LAYER_GAP;
  }
  return out;
}

// The SVG path of an edge and the point where its label goes.
function edgeGeometry(a, b, self) {
  const w = NODE_W / 2;
  const h = NODE_H / 2;
  if (self) {
    const x = a.x + w;
    const y = a.y;
    return { d: `M${x},${y - 8} C${x + 50},${y - 40} ${x + 50},${y + 40} ${x},${y + 8}`, lx: x + 40, ly: y };
  }
  if (b.x > a.x + w) {
    // Forward: right side of the caller to the left side of the callee.
    const [x1, y1, x2, y2] = [a.x + w, a.y, b.x - w, b.y];
    const dx = Math.max(40, (x2 - x1) / 2);
    return { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, lx: (x1 + x2) / 2, ly: (y1 + y2) / 2 };
  }
  // Backward or within a layer: a curve under both nodes.
  const [x1, y1, x2, y2] = [a.x, a.y + h, b.x, b.y + h];
  const drop = 50 + Math.abs(x2 - x1) * 0.15;
  const cy = Math.max(y1, y2) + drop;
  return { d: `M${x1},${y1} C${x1},${cy} ${x2},${cy} ${x2},${y2}`, lx: (x1 + x2) / 2, ly: cy - drop * 0.25 };
}

class ServiceMap {
  // onSelect({type: 'node', id} | {type: 'edge', client, server} | null)
  constructor(svg, onSelect) {
    this.svg = svg;
    this.viewport = svg.querySelector('#viewport');
    this.edgeLayer = svg.querySelector('#edges');
    this.nodeLayer = svg.querySelector('#nodes');
    this.onSelect = onSelect;
    this.nodes = new Map(); // id -> {g, data, pos}
    this.edges = new Map(); // "client\u0000server" -> {g, data}
    this.structure = '';
    this.positions = new Map();
    this.t = { x: 0, y: 0, k: 1 };
    this.userMoved = false;
    this.selected = null;
    this.findText = '';
    this.panZoom();
    svg.addEventListener('click', (ev) => this.click(ev));
    // The view changes size with the window and when the waterfall opens:
    // keep the whole map in view until the user pans or zooms.
    new ResizeObserver(() => {
      if (!this.userMoved) this.fit();
    }).observe(svg);
  }

  // Draw a topology answer; windowSeconds turns request counts into rates.
  update(topo, windowSeconds) {
    const nodeData = new Map();
    for (const n of topo.nodes || []) nodeData.set(n.id, n);
    const edges = (topo.edges || []).filter((e) => e.client !== undefined && e.server !== undefined);
    // An edge may name a node the answer left out: draw it as virtual.
    for (const e of edges) {
      for (const id of [e.client, e.server]) {
        if (!nodeData.has(id)) nodeData.set(id, { id, name: id, kind: 'virtual' });
      }
    }
    const ids = [...nodeData.keys()];
    const structure = JSON.stringify([ids.slice().sort(), edges.map((e) => `${e.client}\u0000${e.server}`).sort()]);
    if (structure !== this.structure) {
      const t0 = performance.now();
      const r = this.svg.getBoundingClientRect();
      this.positions = layout(ids, edges, r.width && r.height ? r.width / r.height : 1.4);
      this.svg.dataset.layoutMs = (performance.now() - t0).toFixed(1);
      this.structure = structure;
      this.reconcile(nodeData, edges);
      if (!this.userMoved) this.fit();
    }
    this.figures(nodeData, edges, windowSeconds);
    this.svg.classList.toggle('busy', this.edges.size > LABEL_MAX_EDGES);
    this.svg.dataset.nodeCount = String(this.nodes.size);
    this.svg.dataset.edgeCount = String(this.edges.size);
    this.applySelection();
    this.find(this.findText);
  }

  // Create, move and delete elements so they match the graph.
  reconcile(nodeData, edges) {
    const keepEdges = new Set();
    for (const e of edges) {
      const key = `${e.client}\u0000${e.server}`;
      keepEdges.add(key);
      let item = this.edges.get(key);
      if (!item) {
        const g = svgEl('g', { class: 'edge', 'data-client': e.client, 'data-server': e.server }, this.edgeLayer);
        const path = svgEl('path', { class: 'edge-line' }, g);
        const hit = svgEl('path', { class: 'edge-hit' }, g);
        const label = svgEl('g', { class: 'edge-label' }, g);
        const bg = svgEl('rect', { rx: 4, height: 16, y: -8 }, label);
        const text = svgEl('text', { y: 4 }, label);
        const title = svgEl('title', {}, g);
        item = { g, path, hit, label, bg, text, title };
        this.edges.set(key, item);
      }
      const geo = edgeGeometry(this.positions.get(e.client), this.positions.get(e.server), e.client === e.server);
      item.path.setAttribute('d', geo.d);
      item.hit.setAttribute('d', geo.d);
      item.label.setAttribute('transform', `translate(${geo.lx},${geo.ly})`);
    }
    for (const [key, item] of this.edges) {
      if (!keepEdges.has(key)) {
        item.g.remove();
        this.edges.delete(key);
      }
    }
    for (const [id, n] of nodeData) {
      let item = this.nodes.get(id);
      if (!item) {
        const g = svgEl('g', { class: 'node', 'data-node': id }, this.nodeLayer);
        svgEl('rect', { x: -NODE_W / 2, y: -NODE_H / 2, width: NODE_W, height: NODE_H, rx: 8 }, g);
        const name = svgEl('text', { class: 'name', y: -3 }, g);
        const figs = svgEl('text', { class: 'figs', y: 13 }, g);
        const title = svgEl('title', {}, g);
        const label = n.name || id;
        name.textContent = label.length > 22 ? `${label.slice(0, 21)}…` : label;
        item = { g, figs, title };
        this.nodes.set(id, item);
      }
      const p = this.positions.get(id);
      item.g.setAttribute('transform', `translate(${p.x},${p.y})`);
    }
    for (const [id, item] of this.nodes) {
      if (!nodeData.has(id)) {
        item.g.remove();
        this.nodes.delete(id);
      }
    }
  }

  // Figures and health colours, every refresh.
  figures(nodeData, edges, windowSeconds) {
    // Per node, the calls it received and made (rates as the topology
    // computed them for its edges, so node and edge figures agree).
    const sum = (m, id, e, rate) => {
      const s = m.get(id) || { requests: 0, errors: 0, rate: 0 };
      s.requests += e.requests || 0;
      s.errors += e.errors || 0;
      s.rate += rate;
      m.set(id, s);
    };
    const inbound = new Map();
    const outbound = new Map();
    for (const e of edges) {
      const rate = e.rate_per_s ?? (e.requests || 0) / windowSeconds;
      sum(inbound, e.server, e, rate);
      sum(outbound, e.client, e, rate);
    }
    this.edgeData = new Map();
    for (const e of edges) {
      const item = this.edges.get(`${e.client}\u0000${e.server}`);
      const tcp = e.tcp || {};
      const failed = tcp.failed || 0;
      const rate = e.rate_per_s ?? (e.requests || 0) / windowSeconds;
      const errRate = e.error_rate ?? (e.requests ? (e.errors || 0) / e.requests : 0);
      const h = health(e.requests || 0, e.errors || 0, failed);
      item.g.setAttribute('class', `edge ${h}${e.connection_type === 'virtual_node' ? ' virtual' : ''}`);
      item.g.dataset.health = h;
      item.path.setAttribute('marker-end', `url(#arrow-${h})`);
      let label = `${fmt.rate(rate)} · ${fmt.pct(errRate)} err · p99 ${fmt.ms(e.p99_ms)}`;
      if (failed) label += ` · ${failed} conn failed`;
      item.text.textContent = label;
      // Labels are monospace: the width follows from the length.
      const width = label.length * 6.6 + 10;
      item.bg.setAttribute('width', width);
      item.bg.setAttribute('x', -width / 2);
      item.text.setAttribute('x', -width / 2 + 5);
      item.title.textContent = `${e.client} → ${e.server}\n${label}`;
      this.edgeData.set(`${e.client}\u0000${e.server}`, e);
    }
    for (const [id, n] of nodeData) {
      const item = this.nodes.get(id);
      // Health from the requests the node received: its own figures, else
      // its inbound edges. A pure client shows what it sends.
      const inb = inbound.get(id) || { requests: 0, errors: 0, rate: 0 };
      const own = n.requests !== undefined ? n : inb;
      const h = health(own.requests || 0, own.errors || 0, 0);
      const virtual = n.kind === 'virtual';
      item.g.setAttribute('class', `node ${h}${virtual ? ' virtual' : ''}${n.db_system ? ' database' : ''}`);
      item.g.dataset.health = h;
      item.g.dataset.kind = n.kind || 'service';
      if (n.db_system) item.g.dataset.dbSystem = n.db_system;
      const rate = inb.rate || (own.requests || 0) / windowSeconds;
      const out = outbound.get(id);
      const system = n.db_system ? `${n.db_system} · ` : '';
      if (own.requests) item.figs.textContent = `${system}${fmt.rate(rate)} · ${fmt.pct((own.errors || 0) / own.requests)} err`;
      else if (out) item.figs.textContent = `client · ${fmt.rate(out.rate)} out`;
      else item.figs.textContent = virtual ? 'not traced' : 'no requests';
      item.title.textContent = `${n.name || id}${virtual ? ' (virtual node)' : ''}\n${item.figs.textContent}`;
    }
    this.nodeData = nodeData;
  }

  // Highlight nodes whose name contains `text`; dim the rest.
  find(text) {
    this.findText = text;
    const q = text.trim().toLowerCase();
    const hit = new Set();
    for (const [id, item] of this.nodes) {
      const m = q && id.toLowerCase().includes(q);
      if (m) hit.add(id);
      item.g.classList.toggle('match', !!m);
      item.g.classList.toggle('dim', !!q && !m);
    }
    for (const item of this.edges.values()) {
      const d = item.g.dataset;
      item.g.classList.toggle('dim', !!q && !hit.has(d.client) && !hit.has(d.server));
    }
    return [...hit].sort();
  }

  select(sel) {
    this.selected = sel;
    this.applySelection();
  }

  applySelection() {
    const s = this.selected;
    for (const [id, item] of this.nodes) item.g.classList.toggle('selected', s?.type === 'node' && s.id === id);
    for (const item of this.edges.values()) {
      const d = item.g.dataset;
      const on = s?.type === 'edge' && s.client === d.client && s.server === d.server;
      const near = s?.type === 'node' && (d.client === s.id || d.server === s.id);
      item.g.classList.toggle('selected', on);
      item.g.classList.toggle('adjacent', near);
      if (on) item.path.setAttribute('marker-end', 'url(#arrow-selected)');
      else item.path.setAttribute('marker-end', `url(#arrow-${d.health})`);
    }
  }

  click(ev) {
    if (this.dragged) return;
    const node = ev.target.closest('g.node');
    const edge = ev.target.closest('g.edge');
    if (node) this.onSelect({ type: 'node', id: node.dataset.node });
    else if (edge) this.onSelect({ type: 'edge', client: edge.dataset.client, server: edge.dataset.server });
    else this.onSelect(null);
  }

  // Centre a node (used by find).
  centre(id) {
    const p = this.positions.get(id);
    if (!p) return;
    const r = this.svg.getBoundingClientRect();
    this.t.k = Math.max(this.t.k, 0.8);
    this.t.x = r.width / 2 - p.x * this.t.k;
    this.t.y = r.height / 2 - p.y * this.t.k;
    this.userMoved = true;
    this.apply();
  }

  // Scale and move so the whole graph is in view (at most 1:1.2).
  fit() {
    const r = this.svg.getBoundingClientRect();
    if (!this.positions.size || !r.width) return this.apply();
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const p of this.positions.values()) {
      x0 = Math.min(x0, p.x - NODE_W / 2);
      x1 = Math.max(x1, p.x + NODE_W / 2);
      y0 = Math.min(y0, p.y - NODE_H / 2);
      y1 = Math.max(y1, p.y + NODE_H / 2 + 60); // room for curves below
    }
    const pad = 30;
    const k = Math.min(1.2, (r.width - 2 * pad) / (x1 - x0), (r.height - 2 * pad) / (y1 - y0));
    this.t = { k, x: (r.width - (x1 - x0) * k) / 2 - x0 * k, y: (r.height - (y1 - y0) * k) / 2 - y0 * k };
    this.userMoved = false;
    this.apply();
  }

  apply() {
    const { x, y, k } = this.t;
    this.viewport.setAttribute('transform', `translate(${x},${y}) scale(${k})`);
    this.svg.classList.toggle('far', k < LABEL_MIN_ZOOM);
  }

  // Wheel zooms around the pointer; dragging the background pans. A drag
  // is told from a click by distance, and pointer capture starts only once
  // it is a drag, so clicks still reach the node or edge under the pointer.
  panZoom() {
    const svg = this.svg;
    svg.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const r = svg.getBoundingClientRect();
      const px = ev.clientX - r.left;
      const py = ev.clientY - r.top;
      const k = Math.min(4, Math.max(0.05, this.t.k * Math.exp(-ev.deltaY * 0.0015)));
      this.t.x = px - ((px - this.t.x) * k) / this.t.k;
      this.t.y = py - ((py - this.t.y) * k) / this.t.k;
      this.t.k = k;
      this.userMoved = true;
      this.apply();
    }, { passive: false });
    let start = null;
    svg.addEventListener('pointerdown', (ev) => {
      if (ev.button !== 0) return;
      start = { x: ev.clientX, y: ev.clientY, tx: this.t.x, ty: this.t.y, id: ev.pointerId };
      this.dragged = false;
    });
    svg.addEventListener('pointermove', (ev) => {
      if (!start || ev.pointerId !== start.id) return;
      const dx = ev.clientX - start.x;
      const dy = ev.clientY - start.y;
      if (!this.dragged && Math.hypot(dx, dy) < 4) return;
      if (!this.dragged) {
        this.dragged = true;
        svg.setPointerCapture(ev.pointerId);
        svg.classList.add('panning');
      }
      this.t.x = start.tx + dx;
      this.t.y = start.ty + dy;
      this.userMoved = true;
      this.apply();
    });
    const end = () => {
      start = null;
      svg.classList.remove('panning');
      // The click that ends a drag comes after pointerup: ignore it, then reset.
      setTimeout(() => { this.dragged = false; }, 0);
    };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
  }
}

export { ServiceMap, fmt, layout, health };
