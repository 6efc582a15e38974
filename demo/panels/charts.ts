/**
 * Live charts of the benchmark (Chart.js): TFLOP/s vs sequence length for every
 * variant, and the fused kernel's speedup over standard attention. Updated
 * after every measured row; no animation, so a screenshot shows the data.
 */
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Title,
  Tooltip,
  type ChartDataset,
} from 'chart.js';
import type { BenchRow } from '../../src/bench/suite.js';
import { hooks } from '../state.js';

Chart.register(LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Title, Tooltip);

/** Stable colors per variant (red: the baseline; blue, green, purple: the fused tiers); causal series dashed in a second shade. */
const COLORS: Record<string, [string, string]> = {
  standard: ['#dc2626', '#f97316'],
  'fused:f32': ['#2563eb', '#0891b2'],
  fused: ['#2563eb', '#0891b2'],
  'fused:f16': ['#16a34a', '#65a30d'],
  'fused:subgroup-matrix': ['#9333ea', '#db2777'],
};
const EXTRA = ['#0f766e', '#a16207', '#4338ca', '#be185d'];

type Point = { x: string; y: number | null };

function seriesKey(r: BenchRow, multiDim: boolean): string {
  const who = r.variant === 'standard' ? `standard attention (${r.tier})` : `FastAttention (${r.tier})`;
  return `${who}${r.shape.causal ? ', causal' : ''}${multiDim ? `, D${r.shape.headDim}` : ''}`;
}

/** Axis numbers: plain when readable, `1.5e-5` for the tiny throughputs of a software adapter. */
function tick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 0.01 && a < 1e5) return String(Number(v.toPrecision(3)));
  return v.toExponential(1).replace('e-', 'e−');
}

function makeChart(canvas: HTMLCanvasElement, title: string, yTitle: string, id: string): Chart<'line', Point[], string> {
  const chart = new Chart<'line', Point[], string>(canvas, {
    type: 'line',
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      spanGaps: true,
      plugins: {
        title: { display: true, text: title, font: { size: 14 } },
        legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 6, boxHeight: 6 } },
        tooltip: { mode: 'nearest', intersect: false },
      },
      scales: {
        x: { type: 'category', title: { display: true, text: 'sequence length S (Sq = Sk)' } },
        y: { type: 'linear', beginAtZero: true, title: { display: true, text: yTitle }, ticks: { callback: (v) => tick(Number(v)) } },
      },
    },
    plugins: [
      {
        id: 'reportArea',
        afterRender: (c) => {
          const a = c.chartArea;
          hooks.chartAreas[id] = a ? { left: a.left, top: a.top, right: a.right, bottom: a.bottom } : null;
        },
      },
    ],
  });
  return chart;
}

export class BenchCharts {
  private readonly tflops: Chart<'line', Point[], string>;
  private readonly speedup: Chart<'line', Point[], string>;

  constructor(tflopsCanvas: HTMLCanvasElement, speedupCanvas: HTMLCanvasElement) {
    this.tflops = makeChart(tflopsCanvas, 'Throughput (unmasked FLOPs)', 'TFLOP/s', 'tflops');
    this.speedup = makeChart(speedupCanvas, 'Speedup of FastAttention over standard attention', '× standard attention', 'speedup');
  }

  /** Redraw both charts from the rows measured so far. */
  update(rows: readonly BenchRow[], seqs: readonly number[]): void {
    const labels = [...new Set(seqs)].sort((a, b) => a - b).map(String);
    const multiDim = new Set(rows.map((r) => r.shape.headDim)).size > 1;
    const group = (pick: (r: BenchRow) => number | null, filter: (r: BenchRow) => boolean): ChartDataset<'line', Point[]>[] => {
      const dims = [...new Set(rows.map((r) => r.shape.headDim))].sort((a, b) => a - b);
      const bySeries = new Map<string, { color: string; causal: boolean; data: Point[] }>();
      for (const r of rows) {
        if (!filter(r)) continue;
        const y = pick(r);
        const key = seriesKey(r, multiDim);
        if (!bySeries.has(key)) {
          const pair = COLORS[r.variant] ?? [EXTRA[bySeries.size % EXTRA.length], EXTRA[(bySeries.size + 1) % EXTRA.length]];
          const di = dims.indexOf(r.shape.headDim);
          // Further head dims: the other shade, then the spare palette.
          const color = di === 0 ? pair[r.shape.causal ? 1 : 0] : EXTRA[(2 * di + (r.shape.causal ? 1 : 0)) % EXTRA.length];
          bySeries.set(key, { color, causal: r.shape.causal, data: [] });
        }
        bySeries.get(key)!.data.push({ x: String(r.shape.seq), y: y !== null && Number.isFinite(y) ? y : null });
      }
      return [...bySeries.entries()].map(([label, { color, causal, data }]) => ({
        label,
        data: data.sort((a, b) => Number(a.x) - Number(b.x)),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2.5,
        pointRadius: 4,
        pointStyle: causal ? 'rectRot' : 'circle',
        borderDash: causal ? [6, 4] : [],
      }));
    };
    this.tflops.data.labels = labels;
    this.tflops.data.datasets = group((r) => r.tflops, () => true);
    this.tflops.update();
    this.speedup.data.labels = labels;
    const ds = group((r) => r.speedupVsStandard, (r) => r.variant !== 'standard');
    if (ds.length > 0)
      ds.push({ label: 'standard attention (1×)', data: labels.map((x) => ({ x, y: 1 })), borderColor: '#94a3b8', backgroundColor: '#94a3b8', borderWidth: 1.5, pointRadius: 0, pointStyle: 'line', borderDash: [3, 3] });
    this.speedup.data.datasets = ds;
    this.speedup.update();
  }

  clear(seqs: readonly number[]): void {
    this.update([], seqs);
  }
}
