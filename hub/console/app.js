// Ferry Control Center: plain ES modules, no framework and no build step.
// Everything it shows comes from the hub's own API with the token the
// operator logged in with, kept in sessionStorage (gone with the tab).

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');

/** Element builder: h('div', {class: 'x', onclick: f}, child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const token = () => sessionStorage.getItem('ferry-token');

/** A call to the hub's API; throws Error(message) on a non-2xx answer. */
async function api(method, path, body, accept = 'application/json') {
  const headers = { Authorization: `Bearer ${token()}`, Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && path !== '/api/v1/auth/whoami') { logout(); throw new Error('the token is no longer valid'); }
  if (!r.ok) {
    let msg = `${r.status}`;
    try { const j = await r.json(); msg = `${r.status}: ${j.message || j.error || JSON.stringify(j)}`; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  if (accept !== 'application/json') return r.blob();
  const text = await r.text();
  return text ? JSON.parse(text) : {};
}

function errorBox(e) { return h('p', { class: 'error', role: 'alert' }, String(e.message || e)); }

function ago(iso) {
  if (!iso) return '—';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function bytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

/** A table of rows (arrays) under column names. */
function table(columns, rows, cell = (v) => (v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : v)) {
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((v) => h('td', {}, cell(v)))))));
}

/** A line chart of `series` ([{name, points: [[x, y], ...]}]) as SVG. */
function chart(series, { title = '', xTime = true } = {}) {
  const W = 600; const H = 220; const L = 52; const R = 10; const T = 22; const B = 26;
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`); svg.setAttribute('class', 'chart'); svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title || 'chart');
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el); return el;
  };
  add('text', { x: L, y: 14 }, title);
  if (!pts.length) { add('text', { x: W / 2 - 30, y: H / 2 }, 'no data yet'); return svg; }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(0, ...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y1 = y0 + 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  add('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#d0d5dd' });
  add('line', { x1: L, y1: T, x2: L, y2: H - B, stroke: '#d0d5dd' });
  const fmt = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : +v.toFixed(2));
  add('text', { x: 2, y: sy(y1) + 4 }, fmt(y1));
  add('text', { x: 2, y: sy(y0) + 4 }, fmt(y0));
  const xl = (x) => (xTime ? new Date(x).toLocaleTimeString() : fmt(x));
  add('text', { x: L, y: H - 6 }, xl(x0));
  add('text', { x: W - R - 70, y: H - 6 }, xl(x1));
  const colors = ['#1f6feb', '#c0392b', '#2f855a', '#b7791f', '#6b46c1', '#0e7490'];
  series.forEach((s, i) => {
    const p = s.points.filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]));
    if (!p.length) return;
    add('polyline', { points: p.map((q) => `${sx(q[0])},${sy(q[1])}`).join(' '), fill: 'none', stroke: colors[i % colors.length], 'stroke-width': 1.5, 'data-series': s.name });
    add('text', { x: W - R - 150, y: T + 12 * (i + 1), fill: colors[i % colors.length] }, s.name);
  });
  return svg;
}

// ---------------------------------------------------------------- pages

let me = null;
// `read` pages work with read on some database (the API filters); `read!`
// needs it on every database (the fleet); `admin` on every database.
const can = (need) => {
  if (!me) return false;
  if (need === 'read') return Boolean(me.somewhere && me.somewhere.read);
  const p = need.replace('!', '');
  return Boolean(me.everywhere && me.everywhere[p]);
};

async function fleetPage(el) {
  const { agents } = await api('GET', '/api/v1/agents');
  el.append(h('h2', {}, 'Fleet'),
    h('p', { class: 'muted' }, `${agents.length} gateway(s), worst first. Stale: not heard from for over ${agents.length ? Math.round((agents[0].stale_after_seconds || 300) / 60) : 5} min.`),
    table(['gateway', 'health', 'backlog (readings)', 'lag', 'last seen', 'version', 'segments', 'rows', 'failed uploads', 'last error'],
      agents.map((a) => [
        h('a', { href: `#/fleet/${encodeURIComponent(a.id)}` }, a.id),
        h('span', { class: a.health }, a.health),
        a.backlog_readings ?? '—', a.lag_seconds === undefined ? '—' : `${Math.round(a.lag_seconds)} s`,
        ago(a.last_seen), a.version ?? '—', a.segments_received, a.rows_received, a.uploads_failed,
        a.last_error ? `${ago(a.last_error_at)}: ${a.last_error.slice(0, 60)}` : '—',
      ]), (v) => v));
}

async function gatewayPage(el, id) {
  const { agents } = await api('GET', '/api/v1/agents');
  const a = agents.find((x) => x.id === id);
  el.append(h('h2', {}, `Gateway ${id}`), h('p', {}, h('a', { href: '#/fleet' }, '← fleet')));
  if (!a) { el.append(errorBox('no such gateway')); return; }
  el.append(table(['field', 'value'], Object.entries(a)));
  const hist = await api('GET', `/api/v1/agents/${encodeURIComponent(id)}/history`);
  const at = (s) => Date.parse(s.at);
  el.append(h('h3', {}, `History (a sample every ${hist.sample_every_seconds} s while it uploads, the last day)`),
    h('div', { class: 'grid' },
      chart([{ name: 'backlog readings', points: hist.samples.map((s) => [at(s), s.backlog_readings ?? NaN]) }], { title: 'backlog' }),
      chart([{ name: 'rows received', points: hist.samples.map((s) => [at(s), s.rows_received]) },
        { name: 'failed uploads', points: hist.samples.map((s) => [at(s), s.uploads_failed]) }], { title: 'uploads' })));
}

async function hubPage(el) {
  const [inst, hist] = await Promise.all([api('GET', '/api/v1/instance'), api('GET', '/api/v1/instance/history')]);
  const l = inst.latest || {};
  el.append(h('h2', {}, 'Hub'),
    table(['version', 'uptime', 'cores', 'load', 'memory available', 'disk available', 'store', 'stored', 'queries active'],
      [[inst.version, `${Math.round(inst.uptime_seconds / 60)} min`, inst.cores, inst.load_average_1m ?? '—',
        bytes(inst.memory_available_bytes), bytes(inst.disk_available_bytes), inst.store, bytes(inst.stored_bytes), inst.queries_active]]),
    h('p', { class: 'muted' }, `Latest ${inst.sample_interval_seconds} s: ${(l.rows_per_second ?? 0).toFixed(1)} rows/s, ${(l.commits_per_second ?? 0).toFixed(2)} commits/s, ${(l.queries_per_second ?? 0).toFixed(2)} queries/s, CPU ${(l.cpu_percent ?? 0).toFixed(1)} %, RSS ${bytes(l.rss_bytes)}`));
  const s = hist.samples;
  const ser = (name, f) => ({ name, points: s.map((x) => [x.at_ms, f(x) ?? NaN]) });
  el.append(h('div', { class: 'grid' },
    chart([ser('rows/s', (x) => x.rows_per_second)], { title: 'ingest rows/s' }),
    chart([ser('commits/s', (x) => x.commits_per_second), ser('commit ms', (x) => x.commit_latency_ms)], { title: 'commits' }),
    chart([ser('queries/s', (x) => x.queries_per_second), ser('query ms', (x) => x.query_latency_ms)], { title: 'queries' }),
    chart([ser('CPU %', (x) => x.cpu_percent), ser('RSS MiB', (x) => (x.rss_bytes ?? NaN) / 1048576)], { title: 'process' })),
  h('h3', {}, 'Storage by database'),
  h('p', { class: 'muted' }, 'As last measured (at start, a minute later, then every quotas.storage_interval).'),
  table(['database', 'stored'], inst.databases.map((d) => [d.database, bytes(d.stored_bytes)])));
}

async function queryPage(el) {
  const editor = h('textarea', { id: 'sql', 'aria-label': 'SQL', spellcheck: 'false' }, sessionStorage.getItem('ferry-sql') || 'SHOW MEASUREMENTS');
  const db = h('input', { id: 'database', placeholder: 'default database (optional)', value: sessionStorage.getItem('ferry-db') || '' });
  const out = h('div', { id: 'result' });
  const tree = h('ul', {});
  const run = async () => {
    sessionStorage.setItem('ferry-sql', editor.value); sessionStorage.setItem('ferry-db', db.value);
    out.replaceChildren(h('p', { class: 'muted' }, 'running…'));
    try {
      const t0 = performance.now();
      const r = await api('POST', '/api/v1/query', { sql: editor.value, database: db.value || undefined });
      out.replaceChildren(h('p', { class: 'muted' }, `${r.data.length} row(s) in ${Math.round(performance.now() - t0)} ms${r.truncated ? ' (cut at query.max_rows)' : ''}`));
      const cols = r.columns;
      const ti = cols.findIndex((c) => c === 'time' || /time/i.test(c));
      const numeric = cols.map((c, i) => i).filter((i) => i !== ti && r.data.some((row) => typeof row[i] === 'number'));
      if (ti >= 0 && numeric.length) {
        out.append(chart(numeric.map((i) => ({ name: cols[i], points: r.data.map((row) => [Date.parse(row[ti]), row[i]]) })), { title: 'result' }));
      }
      out.append(table(cols, r.data));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  const csv = async () => {
    try {
      const blob = await api('POST', '/api/v1/query', { sql: editor.value, database: db.value || undefined }, 'text/csv');
      const a = h('a', { href: URL.createObjectURL(blob), download: 'ferry-query.csv' });
      document.body.append(a); a.click(); a.remove();
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  el.append(h('h2', {}, 'Query'), h('div', { class: 'cols' },
    h('aside', {}, h('strong', {}, 'Tables'), tree),
    h('section', {}, editor, h('div', { class: 'row' }, db, h('button', { id: 'run', onclick: run }, 'Run'),
      h('button', { class: 'secondary', id: 'csv', onclick: csv }, 'Download CSV')), out, h('h3', {}, 'Recent queries'), h('div', { id: 'history' }))));
  try {
    const m = await api('POST', '/api/v1/query', { sql: 'SHOW MEASUREMENTS' });
    for (const [d, t] of m.data) {
      tree.append(h('li', { onclick: () => { editor.value = `SELECT * FROM "${d}"."${t}" ORDER BY time DESC LIMIT 100`; } }, `${d}.${t}`));
    }
  } catch (e) { tree.append(h('li', {}, errorBox(e))); }
  try {
    const hq = await api('GET', '/api/v1/queries/history');
    $('#history', el).append(table(['when', 'who', 'status', 'ms', 'rows', 'sql'],
      (hq.queries || []).slice(0, 20).map((q) => [ago(q.start_time), q.token_name, q.status, Math.round(q.duration_ms), q.row_count, q.sql.slice(0, 80)])));
  } catch (e) { $('#history', el).append(h('p', { class: 'muted' }, `history: ${e.message}`)); }
}

// A new secret survives the re-render that lists the new token, once.
let newSecret = null;

async function tokensPage(el) {
  el.append(h('h2', {}, 'Tokens'));
  const shown = h('div', { id: 'secret' });
  const name = h('input', { id: 'token-name', placeholder: 'name', required: true });
  const role = h('select', { id: 'token-role' }, ['read', 'write', 'admin'].map((r) => h('option', { value: r }, r)));
  const agents = h('input', { id: 'token-agents', placeholder: 'bind to agents (e.g. gw-*), optional' });
  const showSecret = (label, secret) => shown.replaceChildren(h('p', {}, `${label} (shown once, store it now):`), h('p', { class: 'secret', id: 'secret-value' }, secret));
  el.append(h('form', { id: 'create-token', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: name.value, role: role.value };
      if (agents.value) body.agents = agents.value;
      const t = await api('POST', '/api/v1/auth/tokens', body);
      newSecret = [`Token ${t.name}`, t.token]; await render();
    } catch (e) { shown.replaceChildren(errorBox(e)); }
  } }, h('div', { class: 'row' }, name, role, agents, h('button', { type: 'submit' }, 'Create token'))), shown);
  if (newSecret) { showSecret(...newSecret); newSecret = null; }
  const list = h('div', { id: 'token-list' });
  el.append(list);
  const { tokens } = await api('GET', '/api/v1/auth/tokens');
  list.append(table(['id', 'name', 'role', 'agents', 'status', 'last used', ''], tokens.map((t) => [t.id, t.name, t.role, t.agents ?? '—',
    h('span', { class: t.status === 'active' ? 'ok' : 'bad' }, t.status), t.last_used ? ago(new Date(t.last_used).toISOString()) : '—',
    t.status === 'active' ? h('span', {},
      h('button', { class: 'secondary', 'data-rotate': t.name, onclick: async () => { try { const r = await api('POST', `/api/v1/auth/tokens/${t.id}/rotate`, {}); showSecret(`New secret of ${t.name}`, r.token); } catch (e) { shown.replaceChildren(errorBox(e)); } } }, 'rotate'), ' ',
      h('button', { class: 'secondary', 'data-revoke': t.name, onclick: async () => { if (!window.confirm(`Revoke ${t.name}?`)) return; try { await api('POST', `/api/v1/auth/tokens/${t.id}/revoke`, {}); await render(); } catch (e) { shown.replaceChildren(errorBox(e)); } } }, 'revoke')) : '']), (v) => v));
}

async function dataPage(el) {
  el.append(h('h2', {}, 'Data'));
  const manage = Boolean(me && me.somewhere && me.somewhere.admin);
  const msg = h('div', { id: 'data-msg' });
  el.append(msg);
  const act = (f) => async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    try { await f(); await render(); } catch (e) { msg.replaceChildren(errorBox(e)); }
  };
  // Rows of `items` with the columns `cols`, and a delete button per row.
  const listing = (id, items, cols, del) => {
    if (!items.length) return h('p', { class: 'muted', id }, 'none');
    return h('div', { id }, table([...cols, ''], items.map((r) => [...cols.map((c) => r[c]),
      manage ? h('button', { class: 'secondary', 'data-delete': r.name ?? r.id, onclick: act(async () => {
        if (!window.confirm(`Delete ${r.name ?? r.id}?`)) return;
        await api('DELETE', del(r));
      }) }, 'delete') : '']), (v) => (v === null || v === undefined ? '—' : v)));
  };

  const ret = await api('GET', '/api/v1/retention');
  const rdb = h('input', { id: 'ret-db', placeholder: 'database' });
  const rm = h('input', { id: 'ret-measurement', placeholder: 'measurement (optional)' });
  const rd = h('input', { id: 'ret-days', placeholder: 'days', size: 6 });
  el.append(h('h3', {}, 'Retention policies'),
    h('p', { class: 'muted' }, `Databases without a policy keep data ${ret.default_days ? `${ret.default_days} days` : 'forever'}.`),
    manage ? h('form', { id: 'create-retention', onsubmit: act(async () => {
      const body = { database: rdb.value, days: Number(rd.value) };
      if (rm.value) body.measurement = rm.value;
      await api('POST', '/api/v1/retention', body);
    }) }, h('div', { class: 'row' }, rdb, rm, rd, h('button', { type: 'submit' }, 'Set policy'))) : null,
    listing('retention-list', ret.policies, ['name', 'database', 'measurement', 'days', 'is_active', 'updated_at'], (r) => `/api/v1/retention/${r.id}`));

  const cq = await api('GET', '/api/v1/continuous_queries');
  el.append(h('h3', {}, 'Continuous queries'),
    h('p', { class: 'muted' }, 'Created with POST /api/v1/continuous_queries (docs/hub-api-data.md).'),
    listing('cq-list', cq.queries || [], ['name', 'database', 'source_measurement', 'destination_measurement', 'interval', 'is_active'], (r) => `/api/v1/continuous_queries/${r.id}`));

  const lvc = await api('GET', '/api/v1/last_cache');
  const ldb = h('input', { id: 'lvc-db', placeholder: 'database' });
  const lm = h('input', { id: 'lvc-measurement', placeholder: 'measurement' });
  el.append(h('h3', {}, 'Last-value caches'),
    manage ? h('form', { id: 'create-lvc', onsubmit: act(async () => {
      await api('POST', '/api/v1/last_cache', { database: ldb.value, measurement: lm.value });
    }) }, h('div', { class: 'row' }, ldb, lm, h('button', { type: 'submit' }, 'Create cache (keys: the tags)'))) : null,
    listing('lvc-list', lvc.caches || [], ['name', 'database', 'measurement', 'key_columns', 'count', 'ttl_seconds'], (r) => `/api/v1/last_cache/${r.id}`));
}

async function alertsPage(el) {
  el.append(h('h2', {}, 'Alerts'));
  const msg = h('div', { id: 'alert-msg' });
  const f = (id, ph, v = '') => h('input', { id, placeholder: ph, value: v });
  const name = f('alert-name', 'name'); const sql = f('alert-sql', 'SQL: the first column of the first row is the value');
  const dbi = f('alert-db', 'database'); const op = h('select', { id: 'alert-op' }, ['>', '>=', '<', '<=', '==', '!='].map((o) => h('option', {}, o)));
  const thr = f('alert-threshold', 'threshold'); const every = f('alert-interval', 'interval', '1m'); const hook = f('alert-webhook', 'webhook URL (optional)');
  sql.style.minWidth = '28em';
  el.append(h('form', { id: 'create-alert', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: name.value, sql: sql.value, op: op.value, threshold: Number(thr.value), interval: every.value };
      if (dbi.value) body.database = dbi.value;
      if (hook.value) body.webhook_url = hook.value;
      await api('POST', '/api/v1/alerts', body); msg.replaceChildren(h('p', { class: 'ok' }, `created ${body.name}`)); await render();
    } catch (e) { msg.replaceChildren(errorBox(e)); }
  } }, h('div', { class: 'row' }, name, sql, dbi), h('div', { class: 'row' }, op, thr, every, hook, h('button', { type: 'submit' }, 'Create alert'))), msg);
  const { alerts } = await api('GET', '/api/v1/alerts');
  el.append(h('div', { id: 'alert-list' }, table(['name', 'state', 'since', 'value', 'condition', 'every', 'last error', ''], alerts.map((a) => [
    h('a', { href: `#/alerts/${a.id}` }, a.name), h('span', { class: a.state, 'data-state': a.name }, a.state), ago(a.state_since), a.last_value ?? '—',
    `${a.op} ${a.threshold}`, `${a.interval_seconds} s`, a.last_error ?? '',
    h('button', { class: 'secondary', onclick: async () => { if (!window.confirm(`Delete alert ${a.name}?`)) return; try { await api('DELETE', `/api/v1/alerts/${a.id}`); await render(); } catch (e) { msg.replaceChildren(errorBox(e)); } } }, 'delete'),
  ]), (v) => v)));
}

async function alertPage(el, id) {
  const { alert, events } = await api('GET', `/api/v1/alerts/${id}`);
  el.append(h('h2', {}, `Alert ${alert.name}`), h('p', {}, h('a', { href: '#/alerts' }, '← alerts')),
    table(['field', 'value'], Object.entries(alert)), h('h3', {}, 'History'),
    table(['at', 'state', 'value', 'webhook'], events.map((e) => [e.at, e.state, e.value ?? '—', e.webhook_status ?? '—'])));
}

// ---------------------------------------------------------------- shell

const PAGES = [
  ['fleet', 'Fleet', fleetPage, 'read!'],
  ['hub', 'Hub', hubPage, 'read'],
  ['query', 'Query', queryPage, 'read'],
  ['tokens', 'Tokens', tokensPage, 'admin'],
  ['data', 'Data', dataPage, 'read'],
  ['alerts', 'Alerts', alertsPage, 'admin'],
];

function logout() { sessionStorage.removeItem('ferry-token'); me = null; render(); }

function loginPage(el, why) {
  const input = h('input', { id: 'token', type: 'password', placeholder: 'ferry_…', autocomplete: 'off', size: 50 });
  el.append(h('h2', {}, 'Log in'), h('form', { id: 'login', onsubmit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('ferry-token', input.value.trim());
    if (location.hash === '#/fleet') await render(); else location.hash = '#/fleet';
  } }, h('p', {}, 'A hub token (kept in this browser tab only):'), h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Log in'))),
  ...(why ? [errorBox(why)] : []));
}

// Each render builds the page off-screen and shows it only if no later
// render started meanwhile (a hash change during a login, say).
let generation = 0;

async function render() {
  const mine = ++generation;
  const el = h('div');
  const nav = h('span', { class: 'links' });
  const who = h('span');
  const show = () => {
    if (mine !== generation) return;
    main().replaceChildren(...el.childNodes);
    $('#nav').replaceChildren(...nav.childNodes);
    $('#who').replaceChildren(...who.childNodes);
  };
  if (!token()) { loginPage(el); show(); return; }
  try { me = await api('GET', '/api/v1/auth/whoami'); } catch (e) { sessionStorage.removeItem('ferry-token'); loginPage(el, e); show(); return; }
  const [page, arg] = (location.hash.replace(/^#\//, '') || 'fleet').split('/');
  for (const [key, label, , need] of PAGES) {
    if (can(need)) nav.append(h('a', { href: `#/${key}`, class: key === page ? 'active' : '' }, label));
  }
  who.append(`${me.name} `, h('button', { class: 'secondary', id: 'logout', onclick: logout }, 'Log out'));
  const found = PAGES.find((p) => p[0] === page) || PAGES.find((p) => can(p[3])) || PAGES[0];
  if (!can(found[3])) { el.append(errorBox(`this token may not see ${found[1]}`)); show(); return; }
  try {
    if (page === 'fleet' && arg) await gatewayPage(el, decodeURIComponent(arg));
    else if (page === 'alerts' && arg) await alertPage(el, arg);
    else await found[2](el);
  } catch (e) { el.append(errorBox(e)); }
  show();
}

window.addEventListener('hashchange', render);
render();
