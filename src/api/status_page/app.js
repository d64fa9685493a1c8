// The keyward status page: signs in with an admin token, then shows the role, replication
// health, snapshot history, a license search and the recent audit log from the admin API.
// Every value from the server is inserted as text, never as HTML.
'use strict';

const TOKEN_KEY = 'keyward.adminToken';
const REFRESH_MS = 30000;
const SVG_NS = 'http://www.w3.org/2000/svg';

const byId = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A token passed as #token=... (by a script or a test) is moved into session storage and
// removed from the address bar and the history entry. Returns true when there was one.
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (!token) {
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: 'Bearer ' + storedToken() },
    cache: 'no-store',
  });
  if (response.status === 401) {
    throw new Unauthorized('the admin token was rejected');
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const code = body && body.code ? body.code : '';
    const message = body && body.message ? body.message : '';
    throw new Error(`${path} failed: HTTP ${response.status} ${code} ${message}`.trim());
  }
  return body;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  if (className) {
    node.className = className;
  }
  return node;
}

function tableRow(cells) {
  const row = document.createElement('tr');
  for (const cell of cells) {
    const [text, className] = Array.isArray(cell) ? cell : [cell, undefined];
    row.appendChild(element('td', text, className));
  }
  return row;
}

function fillRows(tbody, rows, columns, emptyText) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const row = tableRow([emptyText]);
    row.className = 'empty';
    row.firstChild.colSpan = columns;
    tbody.appendChild(row);
    return;
  }
  for (const row of rows) {
    tbody.appendChild(row);
  }
}

function fillFacts(list, facts) {
  list.replaceChildren();
  for (const [name, value] of facts) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    list.appendChild(element('dt', name));
    list.appendChild(element('dd', value));
  }
}

function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function secondsSince(time) {
  return Math.max(0, (Date.now() - Date.parse(time)) / 1000);
}

function formatAge(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function ago(time) {
  return time ? `${time} (${formatAge(secondsSince(time))} ago)` : null;
}

function renderRole(status) {
  const role = status.role.role;
  const roleNode = byId('role');
  roleNode.textContent = role;
  roleNode.className = `big role-${role}`;
  byId('site-id').textContent = status.site_id;
  const epochs = status.position.epochs;
  const epoch = epochs.length > 0 ? epochs[epochs.length - 1] : null;
  fillFacts(byId('site-facts'), [
    ['Site', status.site_id],
    ['Accepts writes', status.writable ? 'yes' : 'no'],
    ['Role since', ago(status.role.changed_at)],
    ['Reason', status.role.reason],
    ['Active site', status.role.active_url],
    ['Epoch', epoch ? `${epoch.epoch} (${epoch.epoch_id}, from ${epoch.site_id})` : 'none'],
    ['Write sequence', status.position.write_seq],
    ['Database', `${formatBytes(status.database_bytes)}, id ${status.position.database_id}`],
    ['Licenses', status.licenses],
    ['Active activations', status.activations],
    ['Version', status.keyward_version],
  ]);
}

// Returns the one-word health and its class, worst condition first.
function replicationHealth(status) {
  const replication = status.replication;
  if (replication.divergence) return ['diverged', 'health-bad'];
  if (status.peer && !status.peer.reachable) return ['peer unreachable', 'health-bad'];
  if (replication.ship_failure_streak > 0) return ['shipping failing', 'health-warn'];
  if (!status.peer_url) return ['no peer', 'health-warn'];
  return ['healthy', 'health-good'];
}

function describeSnapshot(summary) {
  if (!summary) return 'none';
  const age = formatAge(secondsSince(summary.created_at));
  return `#${summary.sequence}, ${formatBytes(summary.size)}, write sequence ${summary.write_seq}, taken ${age} ago`;
}

function describeFailure(failure) {
  return failure ? `${failure.code} ${ago(failure.at)}: ${failure.message}` : null;
}

function renderReplication(status) {
  const replication = status.replication;
  const [health, healthClass] = replicationHealth(status);
  const healthNode = byId('health');
  healthNode.textContent = health;
  healthNode.className = `big ${healthClass}`;

  let peer = 'none configured';
  if (status.peer) {
    peer = status.peer.reachable
      ? `${status.peer.url} reachable (${status.peer.elapsed_ms} ms)`
      : `${status.peer.url} unreachable: ${status.peer.error}`;
  }
  const rejections = Object.entries(replication.rejections_by_code)
    .map(([code, count]) => `${code} ${count}`)
    .join(', ');
  const applied = replication.last_applied;
  fillFacts(byId('replication-facts'), [
    ['Peer', peer],
    ['Last snapshot', describeSnapshot(replication.last_snapshot)],
    ['Last shipped', replication.last_shipped ? describeSnapshot(replication.last_shipped) : null],
    ['Shipped at', ago(replication.last_shipped_at)],
    ['Failed shipments in a row', replication.ship_failure_streak],
    ['Last ship failure', describeFailure(replication.last_ship_failure)],
    ['Last applied', applied ? `write sequence ${applied.write_seq}, ${ago(applied.at)}` : null],
    ['Rejected snapshots', rejections || 'none'],
    ['Last rejection', describeFailure(replication.last_rejection)],
    ['Divergence', describeFailure(replication.divergence)],
  ]);
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

// Draws one bar per snapshot, oldest on the left: the height is the size, the label the age.
function renderChart(snapshots) {
  const figure = byId('snapshot-chart');
  figure.replaceChildren();
  if (snapshots.length === 0) {
    return;
  }
  const width = 720;
  const height = 140;
  const bottom = 24;
  const top = 16;
  const largest = Math.max(...snapshots.map((s) => s.size), 1);
  const slot = width / snapshots.length;
  const barWidth = Math.max(4, Math.min(48, slot * 0.6));

  const svg = svgNode('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img' });
  svg.appendChild(svgNode('title', {}, 'Snapshot sizes and ages, oldest on the left'));
  svg.appendChild(svgNode('line', {
    x1: 0, y1: height - bottom, x2: width, y2: height - bottom, class: 'axis',
  }));

  snapshots.forEach((snapshot, index) => {
    const barHeight = Math.max(2, ((height - bottom - top) * snapshot.size) / largest);
    const x = index * slot + (slot - barWidth) / 2;
    const y = height - bottom - barHeight;
    const newest = index === snapshots.length - 1;
    const bar = svgNode('rect', {
      x, y, width: barWidth, height: barHeight, class: newest ? 'bar bar-newest' : 'bar',
    });
    const age = formatAge(secondsSince(snapshot.created_at));
    bar.appendChild(svgNode('title', {}, `#${snapshot.sequence}: ${formatBytes(snapshot.size)}, ${age} old`));
    svg.appendChild(bar);

    const center = x + barWidth / 2;
    svg.appendChild(svgNode('text', {
      x: center, y: height - 8, 'text-anchor': 'middle', class: 'chart-label',
    }, age));
    svg.appendChild(svgNode('text', {
      x: center, y: y - 4, 'text-anchor': 'middle', class: 'chart-label',
    }, formatBytes(snapshot.size)));
  });
  figure.appendChild(svg);
}

function renderSnapshots(snapshots) {
  const oldestFirst = [...snapshots].sort((a, b) => a.sequence - b.sequence);
  renderChart(oldestFirst);
  const rows = oldestFirst.reverse().map((snapshot) => tableRow([
    [snapshot.sequence, 'number'],
    snapshot.created_at,
    formatAge(secondsSince(snapshot.created_at)),
    [formatBytes(snapshot.size), 'number'],
    [snapshot.position.write_seq, 'number'],
    snapshot.source_site_id,
  ]));
  fillRows(byId('snapshot-rows'), rows, 6, 'No snapshots yet.');
}

function renderLicenses(licenses) {
  const rows = licenses.map((license) => {
    const customer = [license.customer_name, license.customer_company, license.customer_email]
      .filter((part) => part)
      .join(', ');
    return tableRow([
      [license.key, 'key'],
      license.product,
      license.status,
      customer,
      [`${license.seats_used} / ${license.seats}`, 'number'],
      license.effective_expires_at || 'never',
    ]);
  });
  fillRows(byId('license-results'), rows, 6, 'No license matches.');
}

function renderAudit(entries) {
  const rows = entries.map((entry) => tableRow([entry.at, entry.actor, entry.action, entry.object]));
  fillRows(byId('audit-rows'), rows, 4, 'No audit entries.');
}

function showLogin(message) {
  byId('dashboard').hidden = true;
  byId('role').textContent = '';
  byId('health').textContent = '';
  byId('refresh').hidden = true;
  byId('logout').hidden = true;
  byId('login').hidden = false;
  byId('login-error').textContent = message || '';
  byId('site-id').textContent = '';
  byId('updated').textContent = '';
  byId('token').focus();
}

function showDashboard() {
  byId('login').hidden = true;
  byId('dashboard').hidden = false;
  byId('refresh').hidden = false;
  byId('logout').hidden = false;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

async function handleFailure(error) {
  if (error instanceof Unauthorized) {
    signOut('The admin token was rejected; sign in again.');
    return;
  }
  byId('load-error').textContent = error.message;
}

async function searchLicenses(query) {
  const params = new URLSearchParams({ limit: '50' });
  if (query) {
    params.set('q', query);
  }
  renderLicenses(await api(`/v1/admin/licenses?${params}`));
}

async function refresh() {
  if (!storedToken()) {
    showLogin();
    return;
  }
  try {
    const [status, snapshots, audit] = await Promise.all([
      api('/v1/admin/status'),
      api('/v1/admin/snapshots'),
      api('/v1/admin/audit?limit=25'),
    ]);
    showDashboard();
    byId('load-error').textContent = '';
    renderRole(status);
    renderReplication(status);
    renderSnapshots(snapshots);
    renderAudit(audit);
    byId('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    await handleFailure(error);
  }
}

function loadDashboard() {
  refresh().then(() => (storedToken() ? searchLicenses('') : null)).catch(handleFailure);
}

async function signIn(event) {
  event.preventDefault();
  const token = byId('token').value.trim();
  if (!token) {
    showLogin('Enter an admin token.');
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  byId('token').value = '';
  await refresh();
  if (storedToken()) {
    await searchLicenses('').catch(handleFailure);
  }
}

async function search(event) {
  event.preventDefault();
  await searchLicenses(byId('search-q').value.trim()).catch(handleFailure);
}

function start() {
  byId('login-form').addEventListener('submit', signIn);
  byId('search-form').addEventListener('submit', search);
  byId('refresh').addEventListener('click', refresh);
  byId('logout').addEventListener('click', () => signOut());
  setInterval(() => {
    if (storedToken() && !byId('dashboard').hidden) {
      refresh();
    }
  }, REFRESH_MS);
  window.addEventListener('hashchange', () => {
    if (takeTokenFromFragment()) {
      loadDashboard();
    }
  });
  takeTokenFromFragment();
  if (!storedToken()) {
    showLogin();
    return;
  }
  loadDashboard();
}

start();
