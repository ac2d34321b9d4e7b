// Two plots of many runs at once, drawn on a canvas: a scatter of one value against another,
// and parallel coordinates of a sweep's parameters against its metric.

import { PALETTE } from './chart.js';

function setup(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const style = getComputedStyle(document.documentElement);
  return { ctx, ink: style.getPropertyValue('--muted').trim(), grid: style.getPropertyValue('--line').trim(), fg: style.getPropertyValue('--fg').trim() };
}

const short = (value) => (Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(2) : String(Number(value.toPrecision(4))));

/// A value axis for numbers (logarithmic when asked and every value is above 0), or evenly
/// spaced categories for anything else.
function axisOf(values, log = false) {
  const numeric = values.every((v) => v === undefined || (v !== '' && Number.isFinite(Number(v))));
  const present = values.filter((v) => v !== undefined).map(Number);
  if (numeric && log && present.length && present.every((v) => v > 0)) {
    let low = Math.log10(Math.min(...present));
    let high = Math.log10(Math.max(...present));
    if (low === high) { low -= 1; high += 1; }
    return { at: (v) => (Math.log10(Number(v)) - low) / (high - low), labels: [[0, short(10 ** low)], [1, short(10 ** high)]] };
  }
  if (numeric) {
    const numbers = present;
    let low = Math.min(...numbers);
    let high = Math.max(...numbers);
    if (!numbers.length) { low = 0; high = 1; }
    if (low === high) { low -= 1; high += 1; }
    return { at: (v) => (Number(v) - low) / (high - low), labels: [[0, short(low)], [1, short(high)]] };
  }
  const categories = [...new Set(values.filter((v) => v !== undefined))].sort();
  const at = (v) => (categories.length < 2 ? 0.5 : categories.indexOf(v) / (categories.length - 1));
  return { at, labels: categories.slice(0, 12).map((c) => [at(c), c]) };
}

/// points: [{ x, y, label, color }].
export function scatter(canvas, points, { width = 640, height = 360, xLabel = '', yLabel = '' } = {}) {
  const { ctx, ink, grid, fg } = setup(canvas, width, height);
  const plot = { left: 70, top: 10, right: width - 48, bottom: height - 40 };
  const usable = points.filter((p) => p.x !== undefined && p.y !== undefined);
  const xa = axisOf(usable.map((p) => p.x));
  const ya = axisOf(usable.map((p) => p.y));
  const px = (v) => plot.left + xa.at(v) * (plot.right - plot.left);
  const py = (v) => plot.bottom - ya.at(v) * (plot.bottom - plot.top);
  ctx.strokeStyle = grid;
  ctx.strokeRect(plot.left, plot.top, plot.right - plot.left, plot.bottom - plot.top);
  ctx.fillStyle = ink;
  ctx.font = '11px system-ui, sans-serif';
  for (const [at, text] of xa.labels) ctx.fillText(String(text).slice(0, 14), plot.left + at * (plot.right - plot.left) - 10, plot.bottom + 14);
  for (const [at, text] of ya.labels) ctx.fillText(String(text).slice(0, 10), 4, plot.bottom - at * (plot.bottom - plot.top) + 4);
  ctx.fillStyle = fg;
  ctx.fillText(xLabel, (plot.left + plot.right) / 2 - 30, height - 6);
  ctx.save(); ctx.translate(12, (plot.top + plot.bottom) / 2 + 30); ctx.rotate(-Math.PI / 2); ctx.fillText(yLabel, 0, 0); ctx.restore();
  usable.forEach((p, i) => {
    ctx.fillStyle = p.color || PALETTE[i % PALETTE.length];
    ctx.beginPath(); ctx.arc(px(p.x), py(p.y), 5, 0, Math.PI * 2); ctx.fill();
  });
  canvas.dataset.points = String(usable.length);
  canvas.setAttribute('aria-label', `${yLabel} against ${xLabel}: ${usable.length} runs`);
}

/// rows: [{ values: { axis: value }, state }], axes: names, the last one the metric; `logAxes`
/// names the axes drawn on a log scale. Early-stopped runs are dashed, failed ones red and
/// dotted.
export function parallelCoordinates(canvas, rows, axes, { width = 900, height = 360, goal = 'minimize', logAxes = [] } = {}) {
  const { ctx, ink, grid, fg } = setup(canvas, width, height);
  const plot = { left: 40, top: 24, right: width - 60, bottom: height - 30 };
  const scales = axes.map((axis) => axisOf(rows.map((r) => r.values[axis]), logAxes.includes(axis)));
  const ax = (i) => plot.left + (axes.length < 2 ? 0 : (i / (axes.length - 1)) * (plot.right - plot.left));
  const ay = (i, v) => plot.bottom - scales[i].at(v) * (plot.bottom - plot.top);
  const metric = axes.length - 1;
  const metricScale = scales[metric];
  const colour = (row) => {
    if (row.state === 'failed') return '#dc2626';
    const v = row.values[axes[metric]];
    if (v === undefined) return ink;
    let t = metricScale.at(v);
    if (goal === 'minimize') t = 1 - t;
    return `hsl(${Math.round(220 - 180 * t)}, 75%, 50%)`;
  };
  for (const row of rows) {
    ctx.strokeStyle = colour(row);
    ctx.globalAlpha = row.state === 'finished' || row.state === 'active' ? 0.75 : 0.5;
    ctx.setLineDash(row.state === 'stopped' ? [6, 4] : row.state === 'failed' ? [2, 3] : []);
    ctx.beginPath();
    let drawing = false;
    axes.forEach((axis, i) => {
      const v = row.values[axis];
      if (v === undefined) { drawing = false; return; }
      if (drawing) ctx.lineTo(ax(i), ay(i, v)); else ctx.moveTo(ax(i), ay(i, v));
      drawing = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
  ctx.font = '11px system-ui, sans-serif';
  axes.forEach((axis, i) => {
    ctx.strokeStyle = grid;
    ctx.beginPath(); ctx.moveTo(ax(i), plot.top); ctx.lineTo(ax(i), plot.bottom); ctx.stroke();
    ctx.fillStyle = fg;
    ctx.fillText(axis.slice(0, 18), ax(i) - 16, 14);
    ctx.fillStyle = ink;
    for (const [at, text] of scales[i].labels) ctx.fillText(String(text).slice(0, 10), ax(i) + 3, plot.bottom - at * (plot.bottom - plot.top) + 4);
  });
  canvas.dataset.lines = String(rows.length);
  canvas.setAttribute('aria-label', `parallel coordinates of ${rows.length} trials over ${axes.join(', ')}`);
}
