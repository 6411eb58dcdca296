// Small SVG charts built element by element (createElementNS, text through textContent).
// Colours come from style.css through classes: no style attributes (the CSP forbids them).

const NS = 'http://www.w3.org/2000/svg';
let serial = 0;

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (/^on/i.test(k) || k === 'style') throw new Error(`refused attribute: ${k}`);
    if (k === 'testid') el.setAttribute('data-testid', v);
    else el.setAttribute(k, String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// The chart's root: scales to its container, described for screen readers by its title.
// Its own direction is always ltr: in an rtl page SVG text anchors would otherwise swap
// (start/end follow `direction`); mirroring, where wanted, is done by the x coordinates.
function root(width, height, title, description, testid, extraClass) {
  const id = `chart-${++serial}`;
  return svg('svg', {
    viewBox: `0 0 ${width} ${height}`, class: ['chart', extraClass].filter(Boolean).join(' '),
    direction: 'ltr',
    role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, testid,
    preserveAspectRatio: 'xMinYMin meet',
  },
  svg('title', {id: `${id}-title`}, title),
  svg('desc', {id: `${id}-desc`}, description ?? ''));
}

// Horizontal stacked bars of shares (0..1), one bar per row:
//   rows:   [{label, segments: [{value, cls, title}]}]
//   legend: [{cls, label}]
// Right to left when `rtl` (labels on the right, bars growing leftwards).
export function stackedBars({rows, legend, title, description, testid, rtl = false, emptyText = ''}) {
  const width = 720;
  const labelWidth = 200;
  const pad = 12;
  const barHeight = 22;
  const gap = 10;
  const legendHeight = legend?.length ? 28 : 0;
  const axisHeight = 22;
  const farPad = 24;  // room for the "100%" tick label at the far end
  const plotWidth = width - labelWidth - pad - farPad;
  const height = legendHeight + Math.max(rows.length, 1) * (barHeight + gap) + axisHeight + pad;
  const el = root(width, height, title, description, testid, 'chart-bars');
  // x of share `s` measured from the bar's start edge.
  const x = (s) => (rtl ? width - labelWidth - pad - s * plotWidth : labelWidth + pad + s * plotWidth);
  const top = legendHeight;

  if (legend?.length) {
    let lx = rtl ? width - pad : pad;
    for (const item of legend) {
      const approx = 22 + item.label.length * 7.5;
      const boxX = rtl ? lx - 14 : lx;
      el.append(svg('rect', {x: boxX, y: 6, width: 14, height: 14, class: `swatch ${item.cls}`}));
      el.append(svg('text', {
        x: rtl ? boxX - 6 : boxX + 20, y: 18, class: 'legend',
        'text-anchor': rtl ? 'end' : 'start',
      }, item.label));
      lx += rtl ? -approx - 18 : approx + 18;
    }
  }

  // Grid lines and the percentage axis.
  const plotBottom = top + Math.max(rows.length, 1) * (barHeight + gap);
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    el.append(svg('line', {x1: x(s), x2: x(s), y1: top, y2: plotBottom, class: 'grid'}));
    el.append(svg('text', {x: x(s), y: plotBottom + 16, class: 'axis', 'text-anchor': 'middle'},
      `${Math.round(s * 100)}%`));
  }

  if (rows.length === 0 && emptyText) {
    el.append(svg('text', {x: width / 2, y: top + barHeight, class: 'empty', 'text-anchor': 'middle'},
      emptyText));
  }

  rows.forEach((row, i) => {
    const y = top + i * (barHeight + gap) + gap / 2;
    const label = row.label.length > 26 ? `${row.label.slice(0, 25)}…` : row.label;
    el.append(svg('text', {
      x: rtl ? width - pad : pad, y: y + barHeight * 0.7, class: 'label',
      'text-anchor': rtl ? 'end' : 'start',
    }, svg('title', null, row.label), label));
    el.append(svg('rect', {
      x: rtl ? x(1) : x(0), y, width: plotWidth, height: barHeight, class: 'track',
    }));
    let at = 0;
    for (const seg of row.segments) {
      const v = Math.max(0, Math.min(1 - at, Number(seg.value) || 0));
      if (v > 0) {
        const start = x(at);
        const end = x(at + v);
        el.append(svg('rect', {
          x: Math.min(start, end), y, width: Math.abs(end - start), height: barHeight,
          class: `bar ${seg.cls}`,
        }, svg('title', null, seg.title ?? '')));
      }
      at += v;
    }
  });
  return el;
}

// "Nice" upper bound for an axis: 1, 2, 5 x 10^k at or above `v`.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// Lines over time:
//   series: [{label, cls, points: [{t: ms, v}]}]
// The time axis runs left to right in both directions of text (a clock, not prose).
export function lineChart({series, title, description, testid, formatX, emptyText = '', yMax}) {
  const width = 720;
  const height = 240;
  const left = 48;
  const right = 16;
  const top = 34;
  const bottom = 30;
  const el = root(width, height, title, description, testid, 'chart-lines');
  const all = series.flatMap((s) => s.points);
  const plotW = width - left - right;
  const plotH = height - top - bottom;

  // Legend along the top.
  let lx = left;
  for (const s of series) {
    el.append(svg('line', {x1: lx, x2: lx + 18, y1: 14, y2: 14, class: `line ${s.cls}`}));
    el.append(svg('text', {x: lx + 24, y: 18, class: 'legend'}, s.label));
    lx += 40 + s.label.length * 7.5;
  }

  const maxV = niceMax(yMax ?? Math.max(1, ...all.map((p) => p.v)));
  const tMin = all.length ? Math.min(...all.map((p) => p.t)) : 0;
  const tMax = all.length ? Math.max(...all.map((p) => p.t)) : 1;
  const span = Math.max(tMax - tMin, 1000);
  const px = (tv) => left + ((tv - tMin) / span) * plotW;
  const py = (v) => top + plotH - (v / maxV) * plotH;

  for (const f of [0, 0.5, 1]) {
    const v = maxV * f;
    el.append(svg('line', {x1: left, x2: width - right, y1: py(v), y2: py(v), class: 'grid'}));
    el.append(svg('text', {x: left - 6, y: py(v) + 4, class: 'axis', 'text-anchor': 'end'},
      Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }

  if (all.length === 0) {
    el.append(svg('text', {x: left + plotW / 2, y: top + plotH / 2, class: 'empty', 'text-anchor': 'middle'},
      emptyText));
    return el;
  }

  const ticks = tMax > tMin ? [tMin, tMin + span / 2, tMax] : [tMin];
  let shown = '';
  ticks.forEach((tv, i) => {
    const anchor = ticks.length === 1 ? 'start' : ['start', 'middle', 'end'][i];
    const text = formatX ? formatX(tv) : String(tv);
    if (text === shown) return;  // a span of a few seconds: one label, not three on top of each other
    shown = text;
    el.append(svg('text', {x: px(tv), y: height - 8, class: 'axis', 'text-anchor': anchor}, text));
  });

  for (const s of series) {
    if (s.points.length === 0) continue;
    const points = s.points.map((p) => `${px(p.t).toFixed(1)},${py(p.v).toFixed(1)}`).join(' ');
    el.append(svg('polyline', {points, class: `line ${s.cls}`, fill: 'none'}));
    const last = s.points[s.points.length - 1];
    el.append(svg('circle', {cx: px(last.t), cy: py(last.v), r: 3.5, class: `dot ${s.cls}`},
      svg('title', null, `${s.label}: ${last.v}`)));
  }
  return el;
}
