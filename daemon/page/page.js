// page.js - the status page's script: fetches the JSON API and renders it; every figure comes from the API, the page only formats.
'use strict';
(function () {
  var COUNTS = ['expected_departures', 'in_time_departures', 'late_departures',
    'in_country_overstays', 'status_changes', 'no_shows', 'reentries',
    'stay_limit_breaches', 'present'];
  var RATES = ['overstay_rate', 'in_country_overstay_rate', 'return_compliance_rate',
    'reentry_rate'];
  // The column heads of `circmonctl ... --format table`, shown beside each value on a phone.
  var LABELS = { expected_departures: 'expected', in_time_departures: 'in_time',
    late_departures: 'late', in_country_overstays: 'in_country', status_changes: 'status',
    no_shows: 'no_show', reentries: 'reentry', stay_limit_breaches: 'breaches', present: 'present',
    overstay_rate: 'overstay', in_country_overstay_rate: 'ico_rate',
    return_compliance_rate: 'returned', reentry_rate: 'reentry rate' };
  var DQ = ['invalid', 'duplicates', 'too_late', 'out_of_order', 'exits_without_entry',
    'entries_while_present', 'entries_without_permit', 'unknown_permit', 'late_admin_events'];
  // Lag right after the partition: the figure to see first, also on a phone.
  var PART_COLS = ['partition', 'lag', 'assigned', 'owner', 'position', 'stored_position', 'high',
    'high_watermark'];
  var STATUS_FIRST = ['ready', 'phase', 'redis.connected', 'redis.read_side_connected',
    'redis.error', 'kafka.topic_known', 'lag', 'lag_unknown', 'assigned_partitions', 'figures.read',
    'figures.as_of', 'figures.read_at_ms', 'figures.last_error', 'figures.last_error_at_ms'];
  var SVG = 'http://www.w3.org/2000/svg';
  var DEFAULT_REFRESH_MS = 5000, MIN_REFRESH_MS = 1000, MAX_REFRESH_MS = 300000;
  var FETCH_TIMEOUT_MS = 4000;
  var refreshMs = DEFAULT_REFRESH_MS;
  var timer = null;
  var lastDoc = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  // A missing counter reads as 0 (INDICATORS.md section 4).
  function count(o, k) { return isNum(o[k]) ? o[k] : 0; }
  function fmtCount(v) { return String(v); }
  function fmtRate(v) { return isNum(v) ? (100 * v).toFixed(2) + '%' : '-'; }
  function sortedKeys(o) { return isObj(o) ? Object.keys(o).sort() : []; }
  function fmtInstant(s) {
    if (!isNum(s)) return String(s);
    return new Date(s * 1000).toISOString().replace('.000Z', 'Z');
  }

  function fetchJson(path) {
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    var t = ctl ? setTimeout(function () { ctl.abort(); }, FETCH_TIMEOUT_MS) : null;
    return fetch(path, { cache: 'no-store', signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
        return r.json();
      })
      .finally(function () { if (t) clearTimeout(t); });
  }

  function renderSchemes(doc) {
    var tb = $('schemes').tBodies[0];
    clear(tb);
    var schemes = doc.schemes;
    sortedKeys(schemes).forEach(function (id) {
      var s = schemes[id];
      if (!isObj(s)) return;
      var tr = el('tr', { 'data-scheme': id });
      tr.appendChild(el('th', { scope: 'row', 'data-field': 'scheme' }, id));
      COUNTS.forEach(function (k) {
        var v = count(s, k);
        tr.appendChild(el('td', { 'data-field': k, 'data-value': String(v), 'data-label': LABELS[k] },
          fmtCount(v)));
      });
      RATES.forEach(function (k) {
        var v = isNum(s[k]) ? s[k] : null;
        tr.appendChild(el('td', { 'data-field': k, 'data-value': v === null ? 'null' : String(v),
          'data-label': LABELS[k] }, fmtRate(v)));
      });
      tb.appendChild(tr);
    });
    if (!tb.rows.length) {
      var tr = el('tr');
      tr.appendChild(el('td', { colspan: '14', 'class': 'empty' }, 'no scheme has figures yet'));
      tb.appendChild(tr);
    }
  }

  // "YYYY-MM" to a month number (a position on the time axis, not a figure); NaN if not a month.
  function monthNo(m) {
    var r = /^(\d{4})-(\d{2})$/.exec(m);
    return r ? Number(r[1]) * 12 + Number(r[2]) - 1 : NaN;
  }
  function monthStr(n) {
    var y = Math.floor(n / 12), m = n % 12 + 1;
    return y + '-' + (m < 10 ? '0' : '') + m;
  }

  // One chart, W px wide: x = cohort month on a time axis, y = rate in [0, 1];
  // a month without a rate (null, or no cohort: nothing counted) leaves a gap.
  function chart(id, cohorts, W) {
    var months = sortedKeys(cohorts).filter(function (m) { return !isNaN(monthNo(m)); });
    var H = Math.round(Math.max(160, Math.min(240, W * 0.42))), L = 40, R = 12, T = 10, B = 30;
    var pw = W - L - R, ph = H - T - B;
    var box = el('figure', { 'class': 'chart', 'data-scheme': id });
    box.appendChild(el('figcaption', {}, id));
    var g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img',
      'aria-label': id + ': overstay and return-compliance rate by cohort month' });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      var y = T + ph * (1 - f);
      g.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, 'class': 'grid' }));
      var t = svg('text', { x: L - 5, y: y + 4, 'class': 'ylab' });
      t.textContent = (f * 100) + '%';
      g.appendChild(t);
    });
    g.appendChild(svg('line', { x1: L, x2: W - R, y1: T + ph, y2: T + ph, 'class': 'axis' }));
    if (!months.length) {
      var t = svg('text', { x: L + pw / 2, y: T + ph / 2, 'class': 'none' });
      t.textContent = 'no cohort yet';
      g.appendChild(t);
      box.appendChild(g);
      return box;
    }
    var first = monthNo(months[0]), last = monthNo(months[months.length - 1]);
    var span = Math.max(1, last - first);
    function x(n) { return L + (last === first ? pw / 2 : pw * (n - first) / span); }
    function y(v) { return T + ph * (1 - Math.max(0, Math.min(1, v))); }
    // Month labels about every 80 px, the first and the last kept inside the plot.
    var nlab = Math.max(1, Math.min(Math.floor(pw / 80), span));
    for (var i = 0; i <= nlab; i++) {
      var n = last === first ? first : first + Math.round(span * i / nlab);
      var anchor = last === first ? 'middle' : i === 0 ? 'start' : i === nlab ? 'end' : 'middle';
      var t = svg('text', { x: x(n), y: H - B + 15, 'class': 'xlab', 'text-anchor': anchor });
      t.textContent = monthStr(n);
      g.appendChild(t);
      if (last === first) break;
    }
    [['overstay_rate', 'over'], ['return_compliance_rate', 'ret']].forEach(function (p) {
      var d = '', prev = NaN, dots = [];
      months.forEach(function (m) {
        var c = cohorts[m], v = isObj(c) ? c[p[0]] : null, n = monthNo(m);
        if (!isNum(v)) { prev = NaN; return; }
        d += (n === prev + 1 ? 'L' : 'M') + x(n).toFixed(1) + ' ' + y(v).toFixed(1);
        prev = n;
        dots.push([x(n), y(v), m, v]);
      });
      if (d) g.appendChild(svg('path', { d: d, 'class': 'line ' + p[1] }));
      dots.forEach(function (q) {
        var c = svg('circle', { cx: q[0].toFixed(1), cy: q[1].toFixed(1), r: 2, 'class': 'dot ' + p[1] });
        var t = svg('title', {});
        t.textContent = q[2] + ' ' + p[0].replace(/_/g, ' ') + ' ' + fmtRate(q[3]);
        c.appendChild(t);
        g.appendChild(c);
      });
    });
    box.appendChild(g);
    return box;
  }

  function renderCharts(doc) {
    var c = $('charts');
    clear(c);
    // Drawn at the width of one grid column, so that labels keep their size on a phone.
    var cw = c.clientWidth || 900;
    drawnWidth = c.clientWidth;
    var cols = Math.max(1, Math.floor((cw + 10) / 310));
    var W = Math.max(260, Math.min(640, Math.floor((cw - 10 * (cols - 1)) / cols)));
    sortedKeys(doc.schemes).forEach(function (id) {
      var s = doc.schemes[id];
      if (isObj(s)) c.appendChild(chart(id, isObj(s.by_cohort) ? s.by_cohort : {}, W));
    });
  }

  // /v1/alerts: the instances whose state is firing, as the API gives them.
  var ALERT_COLS = ['alert', 'scheme', 'nationality', 'value', 'expected_departures', 'since',
    'evaluated_at'];
  function renderAlerts(doc) {
    var tb = $('alerts').tBodies[0];
    clear(tb);
    var list = Array.isArray(doc.alerts) ? doc.alerts : [];
    list.filter(function (a) { return isObj(a) && a.state === 'firing'; }).forEach(function (a) {
      var tr = el('tr', { 'data-alert': String(a.alert), 'data-scheme': String(a.scheme),
        'data-nationality': String(a.nationality), 'class': 'firing' });
      ALERT_COLS.forEach(function (k) {
        var v = k in a ? a[k] : null, text;
        if (k === 'value') text = fmtRate(v);
        else if (k === 'since' || k === 'evaluated_at') text = isNum(v) ? fmtInstant(v) : '-';
        else if (k === 'nationality') text = v ? String(v) : 'all';
        else text = v === null ? '-' : String(v);
        tr.appendChild(el(k === 'alert' ? 'th' : 'td', { 'data-field': k,
          'data-value': v === null ? 'null' : String(v), 'data-label': k.replace(/_/g, ' ') }, text));
      });
      tb.appendChild(tr);
    });
    if (!tb.rows.length) {
      var tr = el('tr');
      tr.appendChild(el('td', { colspan: String(ALERT_COLS.length), 'class': 'empty' },
        doc.evaluating ? 'no alert is firing' : 'no alert rule is evaluated here'));
      tb.appendChild(tr);
    }
  }

  function renderDq(doc) {
    var dl = $('dq'), dq = isObj(doc.data_quality) ? doc.data_quality : {};
    clear(dl);
    var names = DQ.slice();
    sortedKeys(dq).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); });
    names.forEach(function (k) {
      var v = count(dq, k);
      var d = el('div', { 'class': 'dqitem' });
      d.appendChild(el('dt', {}, k.replace(/_/g, ' ')));
      d.appendChild(el('dd', { 'data-dq': k, 'data-value': String(v) }, fmtCount(v)));
      dl.appendChild(d);
    });
  }

  function scalar(v) { return v === null || typeof v !== 'object'; }
  function fmtScalar(k, v) {
    if (v === null) return '-';
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (isNum(v) && /_at_ms$/.test(k) && v > 1e11) return fmtInstant(Math.floor(v / 1000));
    if (isNum(v) && /(_at|_time|as_of)$/.test(k) && v > 1e8) return fmtInstant(v);
    return String(v);
  }

  // /v1/status: the partitions as a table (whatever columns the API gives),
  // the other top-level fields (connections, last read) as key: value.
  function renderStatus(st) {
    var meta = $('status-meta');
    clear(meta);
    var parts = null, items = [];
    Object.keys(st).forEach(function (k) {
      var v = st[k];
      if (k === 'partitions' && Array.isArray(v)) { parts = v; return; }
      if (scalar(v)) {
        items.push([k, k, v]);
      } else if (isObj(v)) {
        Object.keys(v).forEach(function (k2) {
          if (scalar(v[k2])) items.push([k + '.' + k2, k + ' ' + k2, v[k2]]);
        });
      }
    });
    // What an operator looks for first, then the rest in the API's order.
    items.sort(function (a, b) {
      var ia = STATUS_FIRST.indexOf(a[0]), ib = STATUS_FIRST.indexOf(b[0]);
      ia = ia < 0 ? STATUS_FIRST.length : ia;
      ib = ib < 0 ? STATUS_FIRST.length : ib;
      return ia - ib || items.indexOf(a) - items.indexOf(b);
    });
    items.forEach(function (it) { meta.appendChild(kv(it[0], it[1], it[2])); });
    var rms = isNum(st.refresh_ms) ? st.refresh_ms
      : isObj(st.figures) && isNum(st.figures.refresh_ms) ? st.figures.refresh_ms : null;
    if (rms !== null) setRefresh(rms);
    var table = $('partitions');
    clear(table.tHead);
    clear(table.tBodies[0]);
    if (!parts) return;
    var cols = [];
    PART_COLS.forEach(function (c) {
      if (parts.some(function (p) { return isObj(p) && c in p; })) cols.push(c);
    });
    parts.forEach(function (p) {
      if (isObj(p)) Object.keys(p).forEach(function (c) {
        if (cols.indexOf(c) < 0 && scalar(p[c])) cols.push(c);
      });
    });
    var hr = el('tr');
    cols.forEach(function (c) { hr.appendChild(el('th', { scope: 'col' }, c.replace(/_/g, ' '))); });
    table.tHead.appendChild(hr);
    parts.forEach(function (p) {
      if (!isObj(p)) return;
      var tr = el('tr', { 'data-partition': String(p.partition) });
      cols.forEach(function (c) {
        var v = c in p ? p[c] : null;
        var td = el('td', { 'data-field': c, 'data-value': v === null ? 'null' : String(v) },
          scalar(v) ? fmtScalar(c, v) : '');
        if (c === 'lag' && isNum(v) && v > 0) td.className = 'lagging';
        tr.appendChild(td);
      });
      table.tBodies[0].appendChild(tr);
    });
  }
  function kv(key, label, v) {
    var d = el('span', { 'class': 'kvitem' });
    // An instant in ms is shown as a date (or '-'): its label loses the unit.
    var shown = /_at_ms$/.test(label) ? label.replace(/_ms$/, '') : label;
    d.appendChild(el('span', { 'class': 'k' }, shown.replace(/_/g, ' ')));
    var cls = v === true ? 'ok' : v === false ? 'bad' : '';
    d.appendChild(el('span', { 'class': 'v ' + cls, 'data-status': key }, fmtScalar(label, v)));
    return d;
  }

  function setRefresh(ms) {
    ms = Math.max(MIN_REFRESH_MS, Math.min(MAX_REFRESH_MS, Math.round(ms)));
    if (ms !== refreshMs) { refreshMs = ms; schedule(); }
  }
  function schedule() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(refresh, refreshMs);
  }

  function showError(msg) {
    var e = $('error');
    if (msg) { e.textContent = msg; e.hidden = false; } else { e.hidden = true; }
  }

  function refresh() {
    var errs = [];
    var a = fetchJson('/v1/indicators').then(function (doc) {
      if (!isObj(doc) || !isObj(doc.schemes)) throw new Error('/v1/indicators: not an indicators document');
      renderSchemes(doc);
      lastDoc = doc;
      renderCharts(doc);
      renderDq(doc);
      $('as-of').textContent = fmtInstant(doc.as_of);
      document.body.setAttribute('data-as-of', String(doc.as_of));
      document.body.setAttribute('data-state', 'loaded');
    }).catch(function (e) { errs.push(e.message || String(e)); });
    var b = fetchJson('/v1/status').then(function (st) {
      if (!isObj(st)) throw new Error('/v1/status: not an object');
      renderStatus(st);
      document.body.setAttribute('data-status', 'loaded');
    }).catch(function (e) { errs.push(e.message || String(e)); });
    var c = fetchJson('/v1/alerts').then(function (al) {
      if (!isObj(al)) throw new Error('/v1/alerts: not an object');
      renderAlerts(al);
      document.body.setAttribute('data-alerts', 'loaded');
    }).catch(function (e) { errs.push(e.message || String(e)); });
    Promise.all([a, b, c]).then(function () {
      $('updated').textContent = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      $('conn').textContent = errs.length ? 'not reachable' : 'live, every ' + refreshMs / 1000 + ' s';
      $('conn').className = errs.length ? 'bad' : 'ok';
      showError(errs.join('; '));
      schedule();
    });
  }

  // Charts are drawn at their column's width: drawn again when it changes.
  var drawnWidth = -1;
  function onResize() {
    var w = $('charts').clientWidth;
    if (lastDoc && w !== drawnWidth) renderCharts(lastDoc);
  }
  if (typeof ResizeObserver === 'function') new ResizeObserver(onResize).observe($('charts'));
  else window.addEventListener('resize', onResize);

  refresh();
})();
