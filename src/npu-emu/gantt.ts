/**
 * Gantt chart of a simulation as a standalone SVG string (no DOM needed), one
 * row per unit, one bar per task, a tooltip (`<title>`) per bar. Long runs are
 * cut to a window holding at most `maxIntervals` bars so a page stays light.
 */
import type { TaskGraph, TaskKind } from './taskGraph.js';
import type { SimulationResult } from './simulator.js';

export interface GanttOptions {
  /** Chart width in pixels; default 1200. */
  width?: number;
  /** Height of one unit row; default 22. */
  rowHeight?: number;
  /** Most bars drawn; the window is shortened to fit; default 3000. */
  maxIntervals?: number;
  /** Window start in cycles; default 0. */
  fromCycle?: number;
  /** Window end in cycles; default the end of the run (or earlier, to respect maxIntervals). */
  toCycle?: number;
  title?: string;
}

const KIND_COLORS: Record<TaskKind, string> = {
  compute: '#2f6fde',
  transfer: '#26a269',
  sync: '#e01b24',
  comm: '#9141ac',
  barrier: '#77767b',
};

/** Row order: control, Cube side in pipeline order, syncs, Vector side, then the rest by name. */
const UNIT_ORDER = ['ctrl', 'cube.mte2', 'cube.mte1', 'cube', 'cube.fixpipe', 'sync.c2v', 'vec.mte2', 'vec.alu', 'vec.mte3', 'sync.v2c'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function unitRank(u: string): [number, string] {
  const i = UNIT_ORDER.indexOf(u);
  return [i < 0 ? UNIT_ORDER.length : i, u];
}

/** Render `result` (of `graph`) as an SVG document string. */
export function ganttSvg(graph: TaskGraph, result: SimulationResult, options: GanttOptions = {}): string {
  const width = options.width ?? 1200;
  const rowH = options.rowHeight ?? 22;
  const maxBars = options.maxIntervals ?? 3000;
  const from = options.fromCycle ?? 0;
  let to = options.toCycle ?? result.latencyCycles;
  // Shorten the window until it holds at most maxBars bars (by start time).
  const inWindow = graph.tasks.map((t) => t.id).filter((i) => result.ends[i] > from && result.starts[i] < to && graph.tasks[i].cycles > 0);
  if (inWindow.length > maxBars) {
    inWindow.sort((a, b) => result.starts[a] - result.starts[b] || a - b);
    to = result.starts[inWindow[maxBars]];
  }
  const bars = inWindow.filter((i) => result.starts[i] < to);
  const units = [...new Set(graph.tasks.map((t) => t.unit))].sort((a, b) => {
    const [ra, na] = unitRank(a);
    const [rb, nb] = unitRank(b);
    return ra - rb || (na < nb ? -1 : na > nb ? 1 : 0);
  });
  const labelW = 110;
  const top = 30;
  const plotW = width - labelW - 10;
  const height = top + units.length * rowH + 30;
  const span = Math.max(1, to - from);
  const x = (c: number): number => labelW + ((Math.min(Math.max(c, from), to) - from) / span) * plotW;
  const toUs = (c: number): string => ((c / graph.clockHz) * 1e6).toFixed(2);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  const title = options.title ?? `${graph.name}: ${toUs(result.latencyCycles)} µs, ${result.syncs} syncs`;
  out.push(`<text x="4" y="16" font-size="13">${escapeXml(title)}${to < result.latencyCycles ? escapeXml(` (window ${toUs(from)}–${toUs(to)} µs)`) : ''}</text>`);
  units.forEach((u, r) => {
    const y = top + r * rowH;
    out.push(`<text x="4" y="${y + rowH * 0.7}">${escapeXml(u)}</text>`);
    out.push(`<line x1="${labelW}" y1="${y + rowH}" x2="${width - 10}" y2="${y + rowH}" stroke="#ddd"/>`);
  });
  const row = new Map(units.map((u, i) => [u, i]));
  for (const i of bars) {
    const t = graph.tasks[i];
    const x0 = x(result.starts[i]);
    const w = Math.max(0.5, x(result.ends[i]) - x0);
    const y = top + row.get(t.unit)! * rowH + 2;
    out.push(
      `<rect x="${x0.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${rowH - 4}" fill="${KIND_COLORS[t.kind]}"><title>${escapeXml(`${t.name} [${t.unit}] ${result.starts[i]}–${result.ends[i]} cycles`)}</title></rect>`,
    );
  }
  const axisY = top + units.length * rowH + 14;
  for (let k = 0; k <= 5; k++) {
    const c = from + (span * k) / 5;
    out.push(`<text x="${x(c).toFixed(1)}" y="${axisY}" text-anchor="middle">${toUs(c)} µs</text>`);
  }
  out.push('</svg>');
  return out.join('\n');
}
