/**
 * What every panel shares: the page's automation hooks (read by the headless
 * runner and the e2e test), typed-error rendering, URL parameters, and a lock
 * so only one GPU job (self-check or benchmark) runs at a time.
 */
import {
  BufferError,
  DeviceLostError,
  FastAttentionError,
  NoAdapterError,
  ScaleError,
  ShapeError,
  TileConfigError,
  UnsupportedError,
} from '../src/errors.js';
import type { SelfCheckCase } from '../src/bench/selfCheck.js';
import type { AttentionDType } from '../src/attention/problem.js';
import type { KernelTier, TierAvailability } from '../src/attention/tiers.js';
import type { BenchReport } from '../src/bench/suite.js';
import type { BlockCounts } from '../src/tiling/mask.js';
import type { DeviceCapabilities } from '../src/runtime/capabilities.js';
import type { TileLimits } from '../src/tiling/tileConfig.js';
import type { AttentionPrefillProblem, ScheduleKind } from '../src/npu-emu/schedules.js';
import type { ReuseSummary } from '../src/volta/fragmentConverter.js';
import type { ErrorInfo, NpuScheduleRow } from './workers/protocol.js';

/** The self-check of every kernel tier this device runs, each on its storage type. */
export interface DemoSelfCheckReport {
  passed: boolean;
  runs: Array<{ tier: KernelTier; dtype: AttentionDType; tolerance: number; passed: boolean; cases: number }>;
  cases: Array<SelfCheckCase & { tier: KernelTier; dtype: AttentionDType; tolerance: number }>;
}

export type JobState = 'idle' | 'running' | 'passed' | 'failed' | 'done' | 'error';

/** The page's state as scripts see it: `window.fastattnDemo`. */
export interface DemoHooks {
  webgpu: 'pending' | 'available' | 'missing' | 'error';
  webgpuMessage: string;
  /** What the runtime found (null until a device exists), and the limits tiles are checked against. */
  capabilities: DeviceCapabilities | null;
  tileLimits: TileLimits | null;
  /** The library's kernel tiers on this device, with reasons. */
  tiers: TierAvailability[] | null;
  selfCheck: { state: JobState; report: DemoSelfCheckReport | null; error: string | null };
  bench: { state: JobState; report: BenchReport | null; table: string | null; error: string | null; progress: [number, number] };
  mask: {
    input: { seqQ: number; seqK: number; kvLen: number; blockQ: number; blockKV: number; causal: boolean; window: number | undefined } | null;
    counts: BlockCounts | null;
    selected: { qBlock: number; kBlock: number; kind: string } | null;
    error: string | null;
  };
  /** NPU timeline: the simulated problem, every schedule's numbers (as `simulateAttention` returned them) and the chosen one. */
  npu: {
    state: JobState;
    input: { problem: AttentionPrefillProblem; kind: ScheduleKind; tilingMask: boolean } | null;
    rows: NpuScheduleRow[] | null;
    /** Wall time of the whole simulation job (all schedules + the Gantt chart), in the worker. */
    ms: number | null;
    ganttBars: number;
    error: string | null;
  };
  /** Volta fragment map: the fragment drawn, the accumulator-reuse summaries and the bank heatmaps shown. */
  volta: {
    fragment: { name: string; rows: number; cols: number; lanes: number; valuesPerLane: number; maxOwners: number; colorBy: 'group' | 'lane' } | null;
    selectedCell: { row: number; col: number; owners: Array<[number, number]> } | null;
    conversions: Array<{ arch: string; accumulator: 'f16' | 'f32'; grid: string; summary: ReuseSummary }>;
    conversionShown: string | null;
    heatmap: {
      state: JobState;
      headDim: number | null;
      tile: string | null;
      before: { wavefronts: number; ideal: number; maxDegree: number; conflictedSteps: number; steps: number } | null;
      after: { wavefronts: number; ideal: number; maxDegree: number; conflictedSteps: number; steps: number } | null;
      swizzle: string | null;
      ms: number | null;
      error: string | null;
    };
  };
  /** Plot areas of the charts in CSS pixels relative to their canvas, updated after each draw. */
  chartAreas: Record<string, { left: number; top: number; right: number; bottom: number } | null>;
  /** Every error message shown in the page, oldest first. */
  errors: string[];
  /** Start the self-check / benchmark from a script (same as the buttons). */
  runSelfCheck?: () => Promise<void>;
  runBench?: () => Promise<void>;
  /** Select a block of the tiling-mask grid (same as clicking it). */
  selectMaskBlock?: (qBlock: number, kBlock: number) => void;
}

export const hooks: DemoHooks = {
  webgpu: 'pending',
  webgpuMessage: '',
  capabilities: null,
  tileLimits: null,
  tiers: null,
  selfCheck: { state: 'idle', report: null, error: null },
  bench: { state: 'idle', report: null, table: null, error: null, progress: [0, 0] },
  mask: { input: null, counts: null, selected: null, error: null },
  npu: { state: 'idle', input: null, rows: null, ms: null, ganttBars: 0, error: null },
  volta: {
    fragment: null,
    selectedCell: null,
    conversions: [],
    conversionShown: null,
    heatmap: { state: 'idle', headDim: null, tile: null, before: null, after: null, swizzle: null, ms: null, error: null },
  },
  chartAreas: {},
  errors: [],
};

declare global {
  interface Window {
    fastattnDemo: DemoHooks;
  }
}
window.fastattnDemo = hooks;

export function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

export function input(id: string): HTMLInputElement {
  return $(id) as HTMLInputElement;
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, string>> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) if (v !== undefined) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/**
 * The class name of a library error. Not `e.name`: the library sets it from
 * `new.target.name`, which a minified bundle (this page's production build) renames.
 */
export function errorClass(e: FastAttentionError): string {
  const classes: Array<[new (...args: never[]) => FastAttentionError, string]> = [
    [ShapeError, 'ShapeError'],
    [UnsupportedError, 'UnsupportedError'],
    [BufferError, 'BufferError'],
    [ScaleError, 'ScaleError'],
    [TileConfigError, 'TileConfigError'],
    [DeviceLostError, 'DeviceLostError'],
    [NoAdapterError, 'NoAdapterError'],
  ];
  for (const [cls, name] of classes) if (e instanceof cls) return name;
  return (e.constructor as { displayName?: string }).displayName ?? 'FastAttentionError';
}

/** One-line text of an error, as the page shows it. */
export function errorText(e: unknown): string {
  if (e instanceof FastAttentionError) return `${errorClass(e)}: ${e.message}`;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Show an error in a box: the library's typed errors with their class, field
 * and what is allowed; anything else with its message. The page keeps working.
 */
export function showError(box: HTMLElement, e: unknown): string {
  if (e instanceof FastAttentionError) return showErrorInfo(box, { name: errorClass(e), field: e.field, message: e.message, allowed: e.allowed });
  return showErrorInfo(box, { name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) });
}

/** The same box for an error that arrives as data (from a worker): class, field and what is allowed when known. */
export function showErrorInfo(box: HTMLElement, e: ErrorInfo): string {
  const text = `${e.name}: ${e.message}`;
  box.replaceChildren(el('strong', {}, e.name));
  if (e.field !== undefined) box.append(' ', el('code', {}, e.field));
  box.append(el('div', {}, e.message));
  if (e.allowed !== undefined) box.append(el('div', { class: 'allowed' }, `Allowed: ${e.allowed}`));
  box.dataset.errorName = e.name;
  if (e.field !== undefined) box.dataset.field = e.field;
  else delete box.dataset.field;
  box.hidden = false;
  hooks.errors.push(text);
  console.warn(`[fastattn-demo] ${text}`);
  return text;
}

export function clearError(box: HTMLElement): void {
  box.hidden = true;
  box.replaceChildren();
  delete box.dataset.errorName;
  delete box.dataset.field;
}

export const params = new URLSearchParams(location.search);

let busy: Promise<unknown> = Promise.resolve();
const busyListeners = new Set<(busy: boolean) => void>();
let running = 0;

/** Run GPU jobs one after another; listeners can disable buttons meanwhile. */
export function exclusive<T>(job: () => Promise<T>): Promise<T> {
  const next = busy.then(async () => {
    running++;
    busyListeners.forEach((f) => f(true));
    try {
      return await job();
    } finally {
      running--;
      busyListeners.forEach((f) => f(running > 0));
    }
  });
  busy = next.catch(() => undefined);
  return next;
}

export function onBusy(f: (busy: boolean) => void): void {
  busyListeners.add(f);
}

/** Numbers in the way the page shows them. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}
