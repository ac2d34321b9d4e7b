// A line chart on a canvas for series the server already reduced to one bucket per pixel:
// each bucket's minimum and maximum are drawn as a vertical stroke (so spikes and fast
// oscillations stay visible), and the line runs through the buckets' first and last values.
// Hover shows the values under the pointer; dragging selects an x range to zoom into (the
// owner fetches it at full resolution); a double click zooms out.

export const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777', '#4b5563', '#65a30d'];

const MARGIN = { left: 64, right: 16, top: 12, bottom: 28 };

/// TensorBoard's smoothing: an exponential moving average, debiased at the start.
export function smooth(values, weight) {
  if (!weight) return values;
  let last = 0;
  let count = 0;
  return values.map((value) => {
    if (!Number.isFinite(value)) return value;
    last = last * weight + (1 - weight) * value;
    count += 1;
    return last / (1 - weight ** count);
  });
}

/// Round tick values between low and high, about `count` of them; whole numbers only when
/// `integer` (steps).
function niceTicks(low, high, count, integer = false) {
  const span = high - low || Math.abs(high) || 1;
  const step = 10 ** Math.floor(Math.log10(span / count));
  const factor = [1, 2, 5, 10].find((f) => span / (f * step) <= count) || 10;
  const unit = integer ? Math.max(1, factor * step) : factor * step;
  const ticks = [];
  for (let tick = Math.ceil(low / unit) * unit; tick <= high + unit * 1e-9; tick += unit) ticks.push(tick);
  return ticks;
}

function label(value, axis) {
  if (axis === 'time') {
    const date = new Date(value);
    return `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}:${String(date.getSeconds()).padStart(2, '0')}`;
  }
  if (axis === 'relative') {
    const seconds = value / 1000;
    return seconds < 120 ? `${Number(seconds.toPrecision(3))}s` : `${Number((seconds / 60).toPrecision(3))}m`;
  }
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(1);
  return String(Number(value.toPrecision(4)));
}

const number = (value) => (typeof value === 'number' ? value : Number(value));

export class Chart {
  /// `options`: { height, onZoom(from, to) }.
  constructor(container, options = {}) {
    this.options = options;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'chart';
    this.canvas.setAttribute('role', 'img');
    this.tip = document.createElement('div');
    this.tip.className = 'chart-tip';
    this.tip.hidden = true;
    this.holder = document.createElement('div');
    this.holder.className = 'chart-holder';
    this.holder.append(this.canvas, this.tip);
    container.append(this.holder);
    this.series = [];
    this.settings = { axis: 'step', log: false, smoothing: 0 };
    this.drag = null;
    this.canvas.addEventListener('mousemove', (event) => this.hover(event));
    this.canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; this.drag = null; this.draw(); });
    this.canvas.addEventListener('mousedown', (event) => { this.drag = { from: event.offsetX, to: event.offsetX }; });
    this.canvas.addEventListener('mouseup', () => this.endDrag());
    this.canvas.addEventListener('dblclick', () => options.onZoom && options.onZoom(null, null));
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.holder);
    this.theme = () => this.draw();
    window.addEventListener('themechange', this.theme);
  }

  /// The width in pixels the server should reduce each series to.
  plotWidth() {
    return Math.max(50, Math.round((this.holder.clientWidth || 800) - MARGIN.left - MARGIN.right));
  }

  /// `series`: [{ label, color, buckets: [[xFirst, xLast, first, last, min, max, count]], xOffset }].
  set(series, settings) {
    this.series = series.map((s) => ({ ...s, buckets: s.buckets.map((b) => b.map(number)) }));
    this.settings = { ...this.settings, ...settings };
    this.canvas.setAttribute('aria-label', `${this.settings.title || 'chart'}: ${series.map((s) => `${s.label} (${s.buckets.length} points)`).join(', ')}`);
    this.draw();
  }

  destroy() {
    this.resize.disconnect();
    window.removeEventListener('themechange', this.theme);
  }

  y(value) {
    return this.settings.log ? (value > 0 ? Math.log10(value) : NaN) : value;
  }

  /// Data bounds over every series, x shifted by each series' offset.
  bounds() {
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const s of this.series) {
      const offset = s.xOffset || 0;
      for (const [xf, xl, , , min, max] of s.buckets) {
        x0 = Math.min(x0, xf - offset);
        x1 = Math.max(x1, xl - offset);
        const lo = this.y(min);
        const hi = this.y(max);
        if (Number.isFinite(lo)) y0 = Math.min(y0, lo);
        if (Number.isFinite(hi)) y1 = Math.max(y1, hi);
      }
    }
    if (!Number.isFinite(x0)) return null;
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const pad = (y1 - y0) * 0.04;
    return { x0, x1, y0: y0 - pad, y1: y1 + pad };
  }

  draw() {
    const width = this.holder.clientWidth || 800;
    const height = this.options.height || 260;
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const style = getComputedStyle(document.documentElement);
    const ink = style.getPropertyValue('--muted').trim() || '#666';
    const grid = style.getPropertyValue('--line').trim() || '#ddd';
    ctx.clearRect(0, 0, width, height);
    const bounds = this.bounds();
    this.geometry = null;
    ctx.font = '11px system-ui, sans-serif';
    if (!bounds) {
      ctx.fillStyle = ink;
      ctx.fillText('no points', width / 2 - 25, height / 2);
      return;
    }
    const plot = { left: MARGIN.left, top: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
    const px = (x) => plot.left + ((x - bounds.x0) / (bounds.x1 - bounds.x0)) * plot.width;
    const py = (y) => plot.top + (1 - (y - bounds.y0) / (bounds.y1 - bounds.y0)) * plot.height;
    this.geometry = { bounds, plot, px, py };

    ctx.strokeStyle = grid;
    ctx.fillStyle = ink;
    ctx.lineWidth = 1;
    for (const tick of niceTicks(bounds.y0, bounds.y1, 5)) {
      const y = Math.round(py(tick)) + 0.5;
      ctx.beginPath(); ctx.moveTo(plot.left, y); ctx.lineTo(plot.left + plot.width, y); ctx.stroke();
      const text = this.settings.log ? label(10 ** tick, 'value') : label(tick, 'value');
      ctx.fillText(text, 4, y + 4);
    }
    const xAxis = this.settings.axis;
    for (const tick of niceTicks(bounds.x0, bounds.x1, Math.max(2, Math.floor(plot.width / 110)), xAxis === 'step')) {
      const x = Math.round(px(tick)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, plot.top); ctx.lineTo(x, plot.top + plot.height); ctx.stroke();
      ctx.fillText(label(tick, xAxis), x - 14, height - 8);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.left, plot.top, plot.width, plot.height);
    ctx.clip();
    this.series.forEach((s, index) => {
      const color = s.color || PALETTE[index % PALETTE.length];
      const offset = s.xOffset || 0;
      // Each pixel's range.
      ctx.strokeStyle = color;
      ctx.globalAlpha = 0.35;
      ctx.beginPath();
      for (const [xf, xl, , , min, max, count] of s.buckets) {
        if (count < 2) continue;
        const x = px((xf + xl) / 2 - offset);
        const lo = this.y(min);
        const hi = this.y(max);
        if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
        ctx.moveTo(x, py(lo));
        ctx.lineTo(x, py(hi) - 0.5);
      }
      ctx.stroke();
      // The line through first and last values, smoothed if asked.
      const xs = [];
      const ys = [];
      for (const [xf, xl, first, last, , , count] of s.buckets) {
        xs.push(xf - offset); ys.push(this.y(first));
        if (count > 1) { xs.push(xl - offset); ys.push(this.y(last)); }
      }
      const smoothing = this.settings.smoothing;
      const lines = smoothing ? [[ys, 0.3, 1], [smooth(ys, smoothing), 1, 2]] : [[ys, 1, 1.5]];
      for (const [values, alpha, lineWidth] of lines) {
        ctx.globalAlpha = alpha;
        ctx.lineWidth = lineWidth;
        ctx.beginPath();
        let drawing = false;
        values.forEach((value, i) => {
          if (!Number.isFinite(value)) { drawing = false; return; }
          if (drawing) ctx.lineTo(px(xs[i]), py(value)); else ctx.moveTo(px(xs[i]), py(value));
          drawing = true;
        });
        ctx.stroke();
        if (xs.length === 1 && Number.isFinite(values[0])) {
          ctx.fillStyle = color;
          ctx.fillRect(px(xs[0]) - 2, py(values[0]) - 2, 4, 4);
        }
      }
      ctx.globalAlpha = 1;
      ctx.lineWidth = 1;
    });
    ctx.restore();

    if (this.drag && Math.abs(this.drag.to - this.drag.from) > 3) {
      ctx.fillStyle = 'rgba(37, 99, 235, 0.15)';
      const left = Math.min(this.drag.from, this.drag.to);
      ctx.fillRect(left, plot.top, Math.abs(this.drag.to - this.drag.from), plot.height);
    }
    this.canvas.dataset.drawn = String(this.series.reduce((n, s) => n + s.buckets.length, 0));
    this.canvas.dataset.series = String(this.series.length);
  }

  dataX(pixel) {
    const { bounds, plot } = this.geometry;
    return bounds.x0 + ((pixel - plot.left) / plot.width) * (bounds.x1 - bounds.x0);
  }

  hover(event) {
    if (!this.geometry) return;
    if (this.drag) {
      this.drag.to = event.offsetX;
      this.draw();
      return;
    }
    const x = this.dataX(event.offsetX);
    const lines = [];
    this.series.forEach((s, index) => {
      const offset = s.xOffset || 0;
      let best = null;
      let distance = Infinity;
      for (const bucket of s.buckets) {
        const d = Math.min(Math.abs(bucket[0] - offset - x), Math.abs(bucket[1] - offset - x));
        if (d < distance) { distance = d; best = bucket; }
      }
      if (!best) return;
      const [xf, xl, first, last, min, max, count] = best;
      const where = xf === xl ? label(xf - offset, this.settings.axis) : `${label(xf - offset, this.settings.axis)}–${label(xl - offset, this.settings.axis)}`;
      const value = count > 1 ? `${label(min, 'value')} … ${label(max, 'value')} (${count} points, last ${label(last, 'value')})` : label(first, 'value');
      lines.push({ color: s.color || PALETTE[index % PALETTE.length], text: `${s.label} @ ${where}: ${value}` });
    });
    this.tip.replaceChildren(...lines.map(({ color, text }) => {
      const line = document.createElement('div');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = color;
      line.append(swatch, document.createTextNode(text));
      return line;
    }));
    this.tip.hidden = lines.length === 0;
    this.tip.style.left = `${Math.min(event.offsetX + 12, this.holder.clientWidth - 260)}px`;
    this.tip.style.top = `${event.offsetY + 12}px`;
  }

  endDrag() {
    const drag = this.drag;
    this.drag = null;
    if (!drag || !this.geometry || Math.abs(drag.to - drag.from) <= 3) { this.draw(); return; }
    const a = this.dataX(Math.min(drag.from, drag.to));
    const b = this.dataX(Math.max(drag.from, drag.to));
    if (this.options.onZoom) this.options.onZoom(a, b); else this.draw();
  }
}
