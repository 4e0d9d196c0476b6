// methanemap's map page: detections (chip footprints) and sites from the
// OGC API, drawn in Web Mercator on an SVG, live by server-sent events.
(function () {
  'use strict';
  var CLASSES = [
    ['cafo', 'CAFO', '#e6550d'],
    ['coal_mine', 'Coal mine', '#3f3f8f'],
    ['landfill', 'Landfill', '#8c6d31'],
    ['natural_gas_processing_plant', 'Natural gas processing plant', '#d62728'],
    ['oil_refinery_petroleum_terminal', 'Oil refinery / petroleum terminal', '#9c3f9c'],
    ['wastewater_treatment_plant', 'Wastewater treatment plant', '#1f77b4']
  ];
  var COLOUR = {};
  CLASSES.forEach(function (c) { COLOUR[c[0]] = c[2]; });
  var cfg = window.METHANEMAP || {};
  var NS = 'http://www.w3.org/2000/svg';
  var $ = function (id) { return document.getElementById(id); };
  var svg = $('svg'), mapEl = $('map');
  var feats = { detections: new Map(), sites: new Map() };
  var view = { z: 3, cx: 0.5, cy: 0.5 }; // zoom, centre in Web Mercator units [0, 1]
  var show = new Set(CLASSES.map(function (c) { return c[0]; }));
  var minScore = 0, selected = null, live = false;

  function merc(lon, lat) {
    var s = Math.sin(Math.max(-85.0511, Math.min(85.0511, lat)) * Math.PI / 180);
    return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
  }
  function unmerc(x, y) {
    return [x * 360 - 180, Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180 / Math.PI];
  }
  function size() { return [mapEl.clientWidth || 800, mapEl.clientHeight || 600]; }
  function scale() { return 256 * Math.pow(2, view.z); }
  function toScreen(p) {
    var s = scale(), wh = size();
    return [(p[0] - view.cx) * s + wh[0] / 2, (p[1] - view.cy) * s + wh[1] / 2];
  }
  function toWorld(x, y) {
    var s = scale(), wh = size();
    return [(x - wh[0] / 2) / s + view.cx, (y - wh[1] / 2) / s + view.cy];
  }

  // add keeps one feature (projected once); fresh ones blink when drawn.
  function add(col, f, fresh) {
    if (!feats[col] || !f || !f.geometry) return;
    var p = f.properties || {};
    var g = f.geometry, rings = [];
    if (g.type === 'Polygon') rings = g.coordinates;
    else if (g.type === 'MultiPolygon') g.coordinates.forEach(function (poly) { rings = rings.concat(poly); });
    var item = {
      id: String(f.id), col: col, cls: p['class'], props: p, fresh: !!fresh,
      score: col === 'sites' ? p.max_score : p.score,
      point: g.type === 'Point' ? merc(g.coordinates[0], g.coordinates[1]) : null,
      rings: rings.map(function (r) { return r.map(function (c) { return merc(c[0], c[1]); }); })
    };
    feats[col].set(item.id, item);
  }

  function visible(it) {
    if (it.col === 'sites' && !$('showsites').checked) return false;
    if (it.col === 'detections' && !$('showdets').checked) return false;
    return show.has(it.cls) && (it.score || 0) >= minScore;
  }

  function render() {
    ['detections', 'sites'].forEach(function (col) {
      var layer = $(col);
      while (layer.firstChild) layer.removeChild(layer.firstChild);
      feats[col].forEach(function (it) {
        if (!visible(it)) return;
        var el;
        if (it.point) {
          var q = toScreen(it.point);
          el = document.createElementNS(NS, 'circle');
          el.setAttribute('cx', q[0].toFixed(1)); el.setAttribute('cy', q[1].toFixed(1));
          el.setAttribute('r', 7);
          el.setAttribute('class', 'feature site');
          el.setAttribute('fill', COLOUR[it.cls] || '#555');
        } else {
          var d = it.rings.map(function (r) {
            return r.map(function (c, i) { var q = toScreen(c); return (i ? 'L' : 'M') + q[0].toFixed(1) + ' ' + q[1].toFixed(1); }).join('') + 'Z';
          }).join('');
          el = document.createElementNS(NS, 'path');
          el.setAttribute('d', d);
          el.setAttribute('class', 'feature det');
          el.setAttribute('fill', COLOUR[it.cls] || '#555');
          el.setAttribute('stroke', COLOUR[it.cls] || '#555');
        }
        if (it.fresh) el.classList.add('fresh');
        if (selected === it) el.classList.add('selected');
        el.dataset.id = it.id;
        el.dataset.collection = it.col;
        el.dataset['class'] = it.cls;
        var t = document.createElementNS(NS, 'title');
        t.textContent = it.cls + ' ' + (it.score || 0).toFixed(3) + '\n' + it.id;
        el.appendChild(t);
        layer.appendChild(el);
      });
    });
    drawGrid();
    drawTiles();
    status();
  }

  // graticule: lon/lat lines at a step that gives a handful per view
  function drawGrid() {
    var g = $('grid'), wh = size();
    while (g.firstChild) g.removeChild(g.firstChild);
    var a = unmerc.apply(null, toWorld(0, wh[1])), b = unmerc.apply(null, toWorld(wh[0], 0));
    var span = Math.max(b[0] - a[0], b[1] - a[1]);
    var steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 45, 90];
    var step = steps.find(function (s) { return span / s <= 8; }) || 90;
    var digits = Math.max(0, -Math.floor(Math.log10(step)));
    function line(x1, y1, x2, y2, label, lx, ly) {
      var l = document.createElementNS(NS, 'line');
      l.setAttribute('x1', x1); l.setAttribute('y1', y1); l.setAttribute('x2', x2); l.setAttribute('y2', y2);
      g.appendChild(l);
      var t = document.createElementNS(NS, 'text');
      t.setAttribute('x', lx); t.setAttribute('y', ly); t.textContent = label;
      g.appendChild(t);
    }
    for (var lon = Math.ceil(a[0] / step) * step; lon <= b[0]; lon += step) {
      var x = toScreen(merc(lon, 0))[0];
      line(x, 0, x, wh[1], lon.toFixed(digits) + '°', x + 2, wh[1] - 14);
    }
    for (var lat = Math.ceil(a[1] / step) * step; lat <= b[1]; lat += step) {
      var y = toScreen(merc(0, lat))[1];
      line(0, y, wh[0], y, lat.toFixed(digits) + '°', 44, y - 2);
    }
  }

  // an optional XYZ background layer, configured by URL template
  function drawTiles() {
    var g = $('tiles');
    while (g.firstChild) g.removeChild(g.firstChild);
    if (!cfg.tiles) return;
    $('attribution').textContent = cfg.attribution || '';
    var tz = Math.max(0, Math.min(19, Math.round(view.z))), n = Math.pow(2, tz), wh = size();
    var tl = toWorld(0, 0), br = toWorld(wh[0], wh[1]);
    for (var tx = Math.floor(tl[0] * n); tx <= Math.floor(br[0] * n); tx++) {
      for (var ty = Math.max(0, Math.floor(tl[1] * n)); ty <= Math.min(n - 1, Math.floor(br[1] * n)); ty++) {
        var p = toScreen([tx / n, ty / n]), s = scale() / n;
        var img = document.createElementNS(NS, 'image');
        img.setAttribute('href', cfg.tiles.replace('{z}', tz).replace('{x}', ((tx % n) + n) % n).replace('{y}', ty));
        img.setAttribute('x', p[0]); img.setAttribute('y', p[1]);
        img.setAttribute('width', s + 0.5); img.setAttribute('height', s + 0.5);
        g.appendChild(img);
      }
    }
  }

  function status() {
    var shown = document.querySelectorAll('.feature').length;
    $('status').textContent = feats.detections.size + ' detections, ' + feats.sites.size + ' sites (' + shown + ' shown)' + (live ? ' · live' : '');
    $('status').dataset.detections = feats.detections.size;
    $('status').dataset.sites = feats.sites.size;
    var counts = {};
    feats.detections.forEach(function (it) { counts[it.cls] = (counts[it.cls] || 0) + 1; });
    CLASSES.forEach(function (c) {
      var el = document.querySelector('#legend [data-count="' + c[0] + '"]');
      if (el) el.textContent = '(' + (counts[c[0]] || 0) + ')';
    });
  }

  function legend() {
    var ul = $('legend');
    CLASSES.forEach(function (c) {
      var li = document.createElement('li');
      li.innerHTML = '<input type="checkbox" checked><span class="swatch"></span><span></span><span class="n"></span>';
      var box = li.children[0];
      box.dataset['class'] = c[0];
      box.addEventListener('change', function () { if (box.checked) show.add(c[0]); else show.delete(c[0]); render(); });
      li.children[1].style.background = c[2];
      li.children[2].textContent = c[1];
      li.children[3].dataset.count = c[0];
      ul.appendChild(li);
    });
  }

  function showProps(it) {
    selected = it;
    var div = $('props');
    div.innerHTML = '';
    if (!it) { div.innerHTML = '<p>Click a footprint or a site.</p>'; render(); return; }
    var table = document.createElement('table');
    var rows = [['id', it.id], ['collection', it.col]];
    Object.keys(it.props).sort().forEach(function (k) {
      var v = it.props[k];
      rows.push([k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
    });
    rows.forEach(function (r) {
      var tr = table.insertRow();
      tr.insertCell().textContent = r[0];
      tr.insertCell().textContent = r[1];
    });
    div.appendChild(table);
    var a = document.createElement('a');
    a.href = '/collections/' + it.col + '/items/' + encodeURIComponent(it.id) + '?f=json';
    a.textContent = 'this feature as GeoJSON';
    div.appendChild(a);
    render();
  }

  function fit() {
    var minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
    ['detections', 'sites'].forEach(function (col) {
      feats[col].forEach(function (it) {
        var pts = it.point ? [it.point] : [].concat.apply([], it.rings);
        pts.forEach(function (p) {
          minx = Math.min(minx, p[0]); maxx = Math.max(maxx, p[0]);
          miny = Math.min(miny, p[1]); maxy = Math.max(maxy, p[1]);
        });
      });
    });
    if (!isFinite(minx)) return;
    var wh = size(), w = Math.max(maxx - minx, 1e-7), h = Math.max(maxy - miny, 1e-7);
    view.cx = (minx + maxx) / 2; view.cy = (miny + maxy) / 2;
    view.z = Math.max(1, Math.min(20, Math.log2(Math.min(wh[0] / w, wh[1] / h) * 0.85 / 256)));
  }

  function zoomAt(factor, x, y) {
    var before = toWorld(x, y);
    view.z = Math.max(1, Math.min(21, view.z + Math.log2(factor)));
    var after = toWorld(x, y);
    view.cx += before[0] - after[0]; view.cy += before[1] - after[1];
    render();
  }

  // pointer: drag pans, a click without a drag selects
  var drag = null;
  mapEl.addEventListener('pointerdown', function (e) {
    drag = { x: e.clientX, y: e.clientY, cx: view.cx, cy: view.cy, moved: false, target: e.target };
    mapEl.setPointerCapture(e.pointerId);
  });
  mapEl.addEventListener('pointermove', function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; mapEl.classList.add('dragging'); }
    if (drag.moved) { view.cx = drag.cx - dx / scale(); view.cy = drag.cy - dy / scale(); render(); }
  });
  mapEl.addEventListener('pointerup', function () {
    if (drag && !drag.moved) {
      var el = drag.target.closest ? drag.target.closest('.feature') : null;
      showProps(el ? feats[el.dataset.collection].get(el.dataset.id) : null);
    }
    drag = null;
    mapEl.classList.remove('dragging');
  });
  mapEl.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = mapEl.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  $('zin').addEventListener('click', function (e) { e.stopPropagation(); zoomAt(2, size()[0] / 2, size()[1] / 2); });
  $('zout').addEventListener('click', function (e) { e.stopPropagation(); zoomAt(0.5, size()[0] / 2, size()[1] / 2); });
  $('fit').addEventListener('click', function (e) { e.stopPropagation(); fit(); render(); });
  ['zin', 'zout', 'fit'].forEach(function (id) { $(id).addEventListener('pointerdown', function (e) { e.stopPropagation(); }); });
  $('score').addEventListener('input', function () {
    minScore = parseFloat($('score').value);
    $('scoreval').textContent = minScore.toFixed(2);
    render();
  });
  $('showsites').addEventListener('change', render);
  $('showdets').addEventListener('change', render);
  window.addEventListener('resize', render);

  // every page of a collection, following the OGC API's next links
  function loadAll(col) {
    function page(url) {
      return fetch(url, { headers: { Accept: 'application/geo+json' } }).then(function (r) {
        if (!r.ok) throw new Error(col + ': HTTP ' + r.status);
        return r.json();
      }).then(function (fc) {
        (fc.features || []).forEach(function (f) { add(col, f, false); });
        var next = (fc.links || []).find(function (l) { return l.rel === 'next'; });
        return next ? page(next.href) : null;
      });
    }
    return page('/collections/' + col + '/items?f=json&limit=1000');
  }

  function follow() {
    var es = new EventSource('/map/events');
    es.addEventListener('open', function () { live = true; status(); });
    es.addEventListener('error', function () { live = false; status(); });
    es.addEventListener('feature', function (e) {
      var u = JSON.parse(e.data);
      var first = feats.detections.size + feats.sites.size === 0;
      add(u.collection, u.feature, true);
      if (first) fit();
      render();
    });
  }

  legend();
  follow(); // first, so nothing published while the pages load is missed
  Promise.all([loadAll('detections'), loadAll('sites')]).then(function () {
    fit();
    render();
    document.body.dataset.loaded = String(Date.now());
  }).catch(function (err) {
    $('status').textContent = 'could not load the features: ' + err.message;
  });
})();
