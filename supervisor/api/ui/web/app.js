// The status page's script (package supervisor/api/ui). It talks only to the
// daemon's JSON API with the session cookie and inserts data only as text, attributes and
// properties, never as markup: the page's Content-Security-Policy allows no inline script.
'use strict';

(function () {
  const ENDED = new Set(['completed', 'failed', 'cancelled', 'stopped', 'lost', 'rejected']);
  const LIVE_TYPES = ['training.progress', 'training.status', 'training.validation', 'validation.image',
    'training.checkpoint', 'job.status'];
  const HISTORY_TYPES = 'training.progress,training.validation,validation.image';
  const REFRESH_MS = 2000;
  const MAX_POINTS = 400; // points drawn on the loss curve (the series is thinned to this)
  const MAX_IMAGES = 8;
  const HISTORY_PAGES = 5; // pages of 10000 stored events read for a job's curve

  const $ = (id) => document.getElementById(id);

  // state is the page's whole state. jobs: per job id, what the event stream told about it
  // (progress, loss series, latest images); the selected job's history is loaded once.
  const state = {
    me: null,
    perms: new Set(),
    list: [],
    jobs: new Map(),
    selected: null,
    loading: null, // job id whose history is being loaded; its live events wait in pending
    pending: [],
    es: null,
    timer: 0,
    gpuIndex: new Map(), // GPU UUID → index, from the last GPU table
    // gen counts sessions on this page: an answer to a call made under an earlier one
    // (in flight at logout) is dropped, so no data of the last user comes back.
    gen: 0,
  };

  // fresh wraps a renderer so that it runs only while the session that asked is current.
  function fresh(render) {
    const gen = state.gen;
    return (body) => { if (gen === state.gen) render(body); };
  }

  // api calls the daemon and returns the decoded JSON; a failure throws an Error with the
  // daemon's message ({"detail": …}) and the status.
  async function api(method, url, body) {
    const opt = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    const res = await fetch(url, opt);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error(detailOf(data) || (res.status + ' ' + res.statusText));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function detailOf(d) {
    if (!d) return '';
    if (typeof d.detail === 'string') return d.detail;
    if (Array.isArray(d.detail)) return d.detail.map((x) => (x.loc || []).join('.') + ': ' + x.msg).join('; ');
    return typeof d.message === 'string' ? d.message : '';
  }

  // el makes an element with text content (never markup).
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? '' : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  function fillTable(id, rows) {
    const body = $(id).tBodies[0];
    body.replaceChildren(...rows);
    $(id + '-empty').hidden = rows.length > 0;
  }

  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function jobState(id) {
    let s = state.jobs.get(id);
    if (!s) {
      s = { progress: null, loss: [], images: [], caption: '', lastIndex: 0, history: false };
      state.jobs.set(id, s);
    }
    return s;
  }

  // --- Log in -------------------------------------------------------------------------

  // showLogin shows the login form (or the first-administrator form) and nothing else: the
  // session ended (logout, expiry, revocation) or never was.
  async function showLogin() {
    stopLive();
    clearData();
    $('app').hidden = true;
    $('logout').hidden = true;
    $('whoami').textContent = '';
    $('login').hidden = false;
    try {
      const st = await api('GET', '/api/auth/setup/status');
      $('setup').hidden = !st.needs_setup;
      $('login-form').hidden = !!st.needs_setup;
    } catch (e) {
      $('setup').hidden = true;
    }
  }

  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      await api('POST', '/api/auth/login', { username: $('login-user').value, password: $('login-password').value });
      $('login-password').value = '';
      await showApp();
    } catch (e) {
      $('login-error').textContent = e.message;
    }
  }

  async function setup(ev) {
    ev.preventDefault();
    $('setup-error').textContent = '';
    const body = { email: $('setup-email').value, username: $('setup-user').value, password: $('setup-password').value };
    if ($('setup-token').value) body.setup_token = $('setup-token').value;
    try {
      await api('POST', '/api/auth/setup/first-admin', body);
      $('setup-password').value = '';
      await showApp();
    } catch (e) {
      $('setup-error').textContent = e.message;
    }
  }

  async function logout() {
    try { await api('POST', '/api/auth/logout'); } catch (e) { /* the session is gone either way */ }
    state.me = null;
    state.perms = new Set();
    $('login-user').value = '';
    $('login-password').value = '';
    $('login-error').textContent = '';
    await showLogin();
  }

  // clearData removes everything the last user was shown, so that the next one to log in
  // on this browser sees none of it, not even in the hidden parts of the page.
  function clearData() {
    state.gen++;
    state.selected = null;
    state.list = [];
    state.jobs.clear();
    for (const id of ['jobs', 'gpus', 'queue', 'schedules']) fillTable(id, []);
    for (const id of ['job-id', 'job-status', 'job-step', 'job-message', 'loss-last', 'validation-caption', 'log', 'app-error']) $(id).textContent = '';
    $('loss-line').setAttribute('points', '');
    $('images').replaceChildren();
    $('job-progress').value = 0;
    $('job').hidden = true;
  }

  // --- The dashboard ------------------------------------------------------------------

  async function showApp() {
    state.me = await api('GET', '/api/auth/me');
    state.perms = new Set(state.me.permissions || []);
    $('whoami').textContent = state.me.display_name || state.me.username;
    $('login').hidden = true;
    $('logout').hidden = false;
    $('app').hidden = false;
    startLive();
    await refresh();
  }

  function startLive() {
    stopLive();
    const es = new EventSource('/api/events');
    for (const t of LIVE_TYPES) es.addEventListener(t, onEvent);
    es.addEventListener('auth_revoked', () => showLogin());
    state.es = es;
    state.timer = setInterval(refresh, REFRESH_MS);
  }

  function stopLive() {
    if (state.es) state.es.close();
    state.es = null;
    clearInterval(state.timer);
    state.timer = 0;
  }

  // refresh reloads the lists; a 401 means the session ended.
  async function refresh() {
    const calls = [
      api('GET', '/api/jobs').then(fresh(renderJobs)),
      api('GET', '/api/system/status?include_allocation=true').then(fresh(renderGPUs)),
      may('queue.view') ? api('GET', '/api/queue').then(fresh(renderQueue)) : Promise.resolve(hideSection('queue-section')),
      api('GET', '/api/schedules').then(fresh(renderSchedules)),
    ];
    // An ended job's log no longer changes: it is read once, when the job is selected.
    const sel = state.list.find((j) => j.job_id === state.selected);
    if (state.selected && !(sel && ENDED.has(sel.status) && $('log').textContent)) calls.push(loadLog(state.selected));
    const gen = state.gen;
    const results = await Promise.allSettled(calls);
    if (gen !== state.gen) return;
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    if (failed.some((e) => e.status === 401)) {
      await showLogin();
      return;
    }
    $('app-error').textContent = failed.map((e) => e.message).join('; ');
  }

  function hideSection(id) { $(id).hidden = true; }

  // may reports whether the user's permissions grant p, with the API's wildcards: "*" and
  // "job.*" (supervisor/auth HasPermission).
  function may(p) {
    for (const g of state.perms) {
      if (g === '*' || g === p) return true;
      if (g.endsWith('.*') && p.startsWith(g.slice(0, -1))) return true;
    }
    return false;
  }

  function progressOf(job) {
    const live = state.jobs.get(job.job_id);
    if (live && live.progress) return live.progress;
    const p = job.progress;
    if (p && p.total_steps) return { current: p.step, total: p.total_steps, percent: (100 * p.step) / p.total_steps };
    return null;
  }

  function renderJobs(body) {
    state.list = body.jobs || [];
    const rows = state.list.map((j) => {
      const link = el('button', j.job_id, 'link');
      link.type = 'button';
      link.dataset.job = j.job_id;
      link.addEventListener('click', () => select(j.job_id));
      const bar = document.createElement('progress');
      bar.max = 100;
      bar.className = 'mini';
      bar.dataset.job = j.job_id;
      const p = progressOf(j);
      bar.value = p ? p.percent : ENDED.has(j.status) && j.status === 'completed' ? 100 : 0;
      const gpus = (j.gpus || []).map((u) => (state.gpuIndex.has(u) ? '#' + state.gpuIndex.get(u) : u)).join(', ');
      const tr = row([link, j.environment, j.owner, el('span', j.status, 'status ' + j.status), bar, gpus]);
      if (j.job_id === state.selected) tr.className = 'selected';
      return tr;
    });
    fillTable('jobs', rows);
    if (!state.selected && state.list.length) {
      const running = state.list.find((j) => !ENDED.has(j.status));
      select((running || state.list[0]).job_id);
    } else if (state.selected) {
      renderJob();
    }
  }

  function renderGPUs(body) {
    const alloc = body.gpu_allocation || { devices: [] };
    const use = new Map((body.gpus || []).map((g) => [g.index, g]));
    const owners = new Map(state.list.map((j) => [j.job_id, j.owner]));
    state.gpuIndex = new Map((alloc.devices || []).map((d) => [d.uuid, d.index]));
    const rows = (alloc.devices || []).map((d) => {
      const g = use.get(d.index) || {};
      const held = d.job_id ? d.job_id + (owners.has(d.job_id) ? ' (' + owners.get(d.job_id) + ')' : '') : 'free';
      const mem = d.memory_gb ? d.memory_gb + ' GB' + (g.memory_percent != null ? ', ' + g.memory_percent + '% used' : '') : '';
      return row([d.index, d.name, mem, g.utilization_percent != null ? g.utilization_percent + '%' : '', held, d.healthy ? 'yes' : 'no']);
    });
    fillTable('gpus', rows);
  }

  function renderQueue(body) {
    $('queue-section').hidden = false;
    const rows = (body.entries || []).map((e) => row([e.queue_position != null ? e.queue_position : '', e.job_id, e.environment, e.owner, e.status, e.priority]));
    fillTable('queue', rows);
  }

  function renderSchedules(body) {
    const rows = (body.schedules || []).map((s) => row([s.name, s.spec, s.action, s.owner, when(s.next_run_at), when(s.last_run_at),
      s.last_outcome ? s.last_outcome + (s.last_error ? ': ' + s.last_error : '') : '']));
    fillTable('schedules', rows);
  }

  // --- One job ------------------------------------------------------------------------

  async function select(id) {
    state.selected = id;
    for (const tr of $('jobs').tBodies[0].rows) {
      const b = tr.querySelector('button[data-job]');
      tr.className = b && b.dataset.job === id ? 'selected' : '';
    }
    $('job').hidden = false;
    $('job-message').textContent = '';
    $('log').textContent = '';
    renderJob();
    const s = jobState(id);
    if (!s.history) await loadHistory(id, s);
    if (state.selected === id) await loadLog(id).catch(() => {});
  }

  // loadHistory reads the job's stored progress and validation events; live events of the
  // job that arrive meanwhile wait in pending and are applied after, without repeats.
  async function loadHistory(id, s) {
    const gen = state.gen;
    state.loading = id;
    state.pending = [];
    // What the stream told before now is stored (the hub stores an event before it sends
    // it), so the history replaces it: otherwise those events' indexes would mark the
    // older stored ones as repeats.
    s.loss = [];
    s.lastIndex = 0;
    try {
      let since = 0;
      for (let page = 0; page < HISTORY_PAGES; page++) {
        const body = await api('GET', '/api/training/events?job_id=' + encodeURIComponent(id) + '&types=' + HISTORY_TYPES +
          '&limit=10000&since_index=' + since);
        if (gen !== state.gen) return;
        for (const ev of body.events || []) apply(ev);
        if (!body.events || body.events.length === 0 || body.next_index <= since) break;
        since = body.next_index;
      }
      s.history = true;
    } catch (e) {
      $('job-message').textContent = e.message;
    } finally {
      state.loading = null;
      const pending = state.pending;
      state.pending = [];
      if (gen === state.gen) for (const ev of pending) apply(ev);
      if (gen === state.gen && state.selected === id) renderJob();
    }
  }

  async function loadLog(id) {
    const gen = state.gen;
    const body = await api('GET', '/api/cloud/jobs/' + encodeURIComponent(id) + '/logs');
    if (gen !== state.gen || state.selected !== id) return;
    const lines = (body.logs || '').split('\n');
    const pre = $('log');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.slice(-200).join('\n');
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  function onEvent(msg) {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    if (!ev || typeof ev.job_id !== 'string') return;
    if (state.loading === ev.job_id) {
      state.pending.push(ev);
      return;
    }
    apply(ev);
    if (ev.type === 'job.status') refresh();
    if (ev.job_id === state.selected) renderJob();
    else updateRowProgress(ev.job_id);
  }

  // apply folds one event into its job's state; events at or below the last index seen
  // are repeats (history and stream overlap).
  function apply(ev) {
    const s = jobState(ev.job_id);
    if (ev.index && ev.index <= s.lastIndex) return;
    if (ev.index) s.lastIndex = ev.index;
    if (ev.progress && ev.progress.total > 0) {
      s.progress = { current: ev.progress.current, total: ev.progress.total, percent: ev.progress.percent };
      if (ev.type === 'training.progress' && typeof ev.progress.loss === 'number' && isFinite(ev.progress.loss)) {
        s.loss.push([ev.progress.current, ev.progress.loss]);
      }
    }
    if ((ev.type === 'training.validation' || ev.type === 'validation.image') && Array.isArray(ev.images)) {
      const imgs = ev.images.filter((im) => im && typeof im.src === 'string' && /^data:image\/(png|jpeg|webp|gif);base64,/.test(im.src));
      if (imgs.length) {
        s.images = imgs.slice(0, MAX_IMAGES).map((im) => im.src);
        const v = ev.validation || {};
        s.caption = (ev.type === 'validation.image' ? 'preview ' : '') + (v.step_label || (v.step ? 'step ' + v.step : '')) + (v.prompt ? ' — ' + v.prompt : '');
      }
    }
  }

  function updateRowProgress(id) {
    const s = state.jobs.get(id);
    if (!s || !s.progress) return;
    for (const bar of $('jobs').querySelectorAll('progress[data-job]')) {
      if (bar.dataset.job === id) bar.value = s.progress.percent;
    }
  }

  function renderJob() {
    const id = state.selected;
    if (!id) return;
    const job = state.list.find((j) => j.job_id === id) || { job_id: id, status: '' };
    const s = jobState(id);
    $('job-id').textContent = id + (job.environment ? ' · ' + job.environment : '');
    $('job-status').textContent = job.status;
    $('job-status').className = 'status ' + job.status;
    const p = s.progress || progressOf(job);
    $('job-progress').value = p ? p.percent : job.status === 'completed' ? 100 : 0;
    $('job-step').textContent = p ? 'step ' + p.current + ' / ' + p.total + ' (' + p.percent.toFixed(1) + '%)' : '';
    updateRowProgress(id);
    drawLoss(s.loss);
    drawImages(s);
    setButtons(job);
  }

  // drawLoss draws the series as one polyline scaled to the chart (x: step, y: loss).
  function drawLoss(points) {
    const line = $('loss-line');
    if (points.length === 0) {
      line.setAttribute('points', '');
      $('loss-last').textContent = '';
      return;
    }
    const stride = Math.ceil(points.length / MAX_POINTS);
    const shown = points.filter((_, i) => i % stride === 0 || i === points.length - 1);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of shown) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const W = 400, H = 160, pad = 4;
    const sx = (x) => pad + (x1 > x0 ? ((x - x0) / (x1 - x0)) * (W - 2 * pad) : 0);
    const sy = (y) => H - pad - (y1 > y0 ? ((y - y0) / (y1 - y0)) * (H - 2 * pad) : (H - 2 * pad) / 2);
    line.setAttribute('points', shown.map(([x, y]) => sx(x).toFixed(1) + ',' + sy(y).toFixed(1)).join(' '));
    // The range drawn, for people (a tooltip) and for tests.
    $('loss').dataset.from = String(points[0][0]);
    $('loss').dataset.to = String(points[points.length - 1][0]);
    const last = points[points.length - 1];
    $('loss-last').textContent = 'step ' + last[0] + ': ' + last[1].toPrecision(4);
  }

  function drawImages(s) {
    const box = $('images');
    const have = Array.from(box.children).map((i) => i.src);
    if (have.length === s.images.length && have.every((src, i) => src === s.images[i])) return;
    box.replaceChildren(...s.images.map((src) => {
      const img = document.createElement('img');
      img.alt = 'validation image';
      img.src = src;
      return img;
    }));
    $('validation-caption').textContent = s.caption;
  }

  // setButtons shows the buttons the user's permissions allow for this job (as the API
  // checks them: docs/security.md) and enables those the job's state allows.
  function setButtons(job) {
    const own = state.me && job.owner === state.me.username;
    const all = may('job.cancel.all');
    const mayStop = all || (own && may('job.cancel.own'));
    const maySteer = all || (own && may('job.submit'));
    const running = job.status === 'running';
    const ended = ENDED.has(job.status) || !job.status;
    const set = (id, shown, enabled) => { $(id).hidden = !shown; $(id).disabled = !enabled; };
    set('btn-stop', mayStop, running);
    set('btn-cancel', mayStop, !ended);
    set('btn-checkpoint', maySteer, running);
    set('btn-validate', maySteer, running);
  }

  async function act(what) {
    const id = state.selected;
    if (!id) return;
    const q = '?job_id=' + encodeURIComponent(id);
    const urls = {
      stop: '/api/training/stop' + q,
      cancel: '/api/queue/' + encodeURIComponent(id) + '/cancel',
      checkpoint: '/api/training/checkpoint/run' + q,
      validate: '/api/training/validation/run' + q,
    };
    $('job-message').textContent = '';
    try {
      const body = await api('POST', urls[what]);
      $('job-message').textContent = (body && (body.message || body.detail)) || 'Done.';
    } catch (e) {
      $('job-message').textContent = e.message;
    }
    refresh();
  }

  // --- Start --------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', async () => {
    $('login-form').addEventListener('submit', login);
    $('setup-form').addEventListener('submit', setup);
    $('logout').addEventListener('click', logout);
    for (const what of ['stop', 'cancel', 'checkpoint', 'validate']) {
      $('btn-' + what).addEventListener('click', () => act(what));
    }
    try {
      const chk = await api('GET', '/api/auth/check');
      if (chk.authenticated) {
        await showApp();
        return;
      }
    } catch (e) { /* fall through to the login form */ }
    await showLogin();
  });
})();
