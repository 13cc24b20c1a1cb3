// align annotate: the labelling page. Model text is only ever set with
// textContent (never innerHTML), and the server's Content-Security-Policy
// allows no script but this file.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = 'align-annotate-token';
  const params = new URLSearchParams(location.search);
  let token = params.get('token') || sessionStorage.getItem(KEY) || '';
  if (params.get('token')) {
    sessionStorage.setItem(KEY, token);
    history.replaceState(null, '', location.pathname); // keep the token out of the address bar
  }

  let item = null;      // the item shown (the server's ItemView)
  let busy = false;     // a request is in flight: keys wait
  let dead = false;     // a fatal error is shown: nothing more is sent
  let renders = 0;
  const labelled = [];  // item ids labelled from this page, newest last (for undo)

  function setState(s) { document.body.dataset.state = s; }
  function status(msg, kind) { const s = $('status'); s.textContent = msg; s.className = kind || ''; }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function api(method, path, body) {
    const opt = { method, cache: 'no-store', headers: { 'Authorization': 'Bearer ' + token } };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let data = null;
    if (r.status !== 204) {
      try { data = await r.json(); } catch (e) { data = null; }
    }
    return { status: r.status, data, retryAfter: Number(r.headers.get('Retry-After')) || 0 };
  }

  // persist retries what did not reach the server or found it failing
  // (a restart): labels are idempotent, and an undo names its item, so a
  // retry never counts twice.
  async function persist(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await api(method, path, body);
        if (r.status < 500) {
          if (attempt > 0) status('reconnected');
          return r;
        }
        status('the server answered ' + r.status + ': retrying…', 'error');
      } catch (e) {
        status('cannot reach the server: retrying…', 'error');
      }
      setState('retrying');
      await new Promise((res) => setTimeout(res, Math.min(400 * (attempt + 1), 3000)));
    }
  }

  function fatal(msg) {
    setState('error');
    status(msg, 'error');
    dead = true;
  }

  function errorText(r) {
    return (r.data && r.data.error) ? r.data.error : ('the server answered ' + r.status);
  }

  function showProgress(p) {
    if (!p) return;
    const all = p.done + p.remaining;
    $('bar').value = all > 0 ? p.done / all : 1;
    $('progress-text').textContent = p.done + ' done · ' + p.remaining + ' remaining · ' +
      p.per_minute.toFixed(1) + ' labels/min · ' + p.complete_items + '/' + p.total_items + ' items complete';
  }

  function turn(role, content) {
    const t = el('div', 'turn ' + (role === 'user' || role === 'assistant' || role === 'system' ? role : 'other'));
    t.append(el('span', 'role', role), el('div', 'content', content));
    return t;
  }

  function rubric(box, pos, criteria) {
    box.replaceChildren();
    box.hidden = !criteria;
    if (!criteria) return;
    for (const c of criteria) {
      const row = el('div', 'row');
      row.append(el('span', 'crit', c));
      for (let v = 1; v <= 5; v++) {
        const lab = el('label');
        const inp = document.createElement('input');
        inp.type = 'radio';
        inp.name = pos + '-' + c;
        inp.value = String(v);
        lab.append(inp, document.createTextNode(String(v)));
        row.append(lab);
      }
      box.append(row);
    }
  }

  function scores() {
    if (!item || !item.rubric) return undefined;
    const out = {};
    let any = false;
    for (const pos of ['a', 'b']) {
      const s = {};
      for (const c of item.criteria) {
        const x = document.querySelector('input[name="' + pos + '-' + c + '"]:checked');
        s[c] = x ? Number(x.value) : 0;
        if (x) any = true;
      }
      out[pos] = s;
    }
    return any ? out : undefined;
  }

  function render(v) {
    item = v;
    $('who').textContent = v.annotator;
    const conv = $('conversation');
    conv.replaceChildren();
    if (v.system) conv.append(turn('system', v.system));
    const msgs = v.messages || [{ role: 'user', content: v.prompt }];
    for (const m of msgs) conv.append(turn(m.role, m.content));
    $('text-a').textContent = v.responses[0];
    $('text-b').textContent = v.responses[1];
    rubric($('rubric-a'), 'a', v.rubric ? v.criteria : null);
    rubric($('rubric-b'), 'b', v.rubric ? v.criteria : null);
    $('reason').value = '';
    $('item-id').textContent = 'item ' + v.item_id + (v.objective ? ' · ' + v.objective : '');
    document.body.dataset.item = v.item_id;
    $('work').hidden = false;
    $('done').hidden = true;
    showProgress(v.progress);
    ready();
  }

  function ready() {
    renders++;
    document.body.dataset.renders = String(renders);
    setState('ready');
  }

  let waitTimer = null; // set while others hold items this annotator may still get

  async function showDone(retryAfter) {
    item = null;
    document.body.dataset.item = '';
    $('work').hidden = true;
    $('done').hidden = false;
    const r = await persist('GET', '/api/progress');
    if (r.status === 200) {
      $('who').textContent = r.data.annotator;
      showProgress(r.data.progress);
      $('done-text').textContent = r.data.progress.done + ' labels from you (' + r.data.progress.skipped + ' skipped); ' +
        r.data.progress.complete_items + ' of ' + r.data.progress.total_items + ' items are complete.';
    }
    // Others hold items this annotator may still get (if they skip them or
    // leave): look again after the server's Retry-After.
    $('done-wait').hidden = !retryAfter;
    $('done-title').textContent = retryAfter ? 'Nothing for you right now' : 'Nothing left for you';
    if (retryAfter && !waitTimer) {
      waitTimer = setTimeout(async () => {
        waitTimer = null;
        if (busy || dead || item) return;
        busy = true;
        await loadNext();
        busy = false;
      }, retryAfter * 1000);
    }
    setState('done');
    renders++;
    document.body.dataset.renders = String(renders);
  }

  async function loadNext() {
    const r = await persist('GET', '/api/next');
    if (r.status === 200) return render(r.data);
    if (r.status === 204) return showDone(r.retryAfter);
    if (r.status === 401) return fatal("this link's token is not accepted: ask for your personal URL");
    fatal(errorText(r));
  }

  async function choose(choice) {
    if (busy || dead || !item) return;
    busy = true;
    setState('saving');
    const body = { item_id: item.item_id, choice };
    const sc = scores();
    if (sc) body.scores = sc;
    const reason = $('reason').value.trim();
    if (reason) body.reason = reason;
    const r = await persist('POST', '/api/label', body);
    if (r.status === 401) return fatal("this link's token is not accepted: ask for your personal URL");
    if (r.status === 200) {
      labelled.push(item.item_id);
      status('saved: ' + (choice === 'a' ? 'A' : choice === 'b' ? 'B' : choice));
    } else {
      status(errorText(r), 'error');
    }
    await loadNext();
    busy = false;
  }

  async function undo() {
    if (busy || dead) return;
    busy = true;
    setState('saving');
    const body = labelled.length ? { item_id: labelled[labelled.length - 1] } : {};
    const r = await persist('POST', '/api/undo', body);
    if (r.status === 401) return fatal("this link's token is not accepted: ask for your personal URL");
    if (r.status === 200) {
      if (labelled.length) labelled.pop();
      status(r.data.undone ? 'undone: the item is back' : 'nothing was undone');
    } else {
      status(errorText(r), 'error');
    }
    await loadNext();
    busy = false;
  }

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || (t.tagName === 'INPUT' && t.type !== 'radio'))) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    const choices = { '1': 'a', '2': 'b', '3': 'tie', 's': 'skip', 'S': 'skip' };
    if (choices[e.key]) {
      e.preventDefault();
      choose(choices[e.key]);
    } else if (e.key === 'u' || e.key === 'U') {
      e.preventDefault();
      undo();
    }
  });
  for (const b of document.querySelectorAll('button[data-choice]')) {
    b.addEventListener('click', () => { b.blur(); choose(b.dataset.choice); });
  }
  $('btn-undo').addEventListener('click', () => { $('btn-undo').blur(); undo(); });

  if (!token) {
    fatal('no token: open the personal URL that align annotate serve printed');
  } else {
    busy = true;
    loadNext().then(() => { busy = false; });
  }
})();
