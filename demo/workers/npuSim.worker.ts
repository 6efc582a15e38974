/**
 * Runs `simulateAttention` (src/npu-emu) for every schedule on the 910B machine
 * config and draws the chosen one's Gantt chart with `ganttSvg`. Imports the
 * simulator's own modules rather than the npu-emu index, which also pulls in
 * the WebGPU pipelines and their shaders.
 */
import { NpuCapacityError, NpuConfigError, NpuEmuError, TaskGraphError } from '../../src/npu-emu/errors.js';
import { ganttSvg } from '../../src/npu-emu/gantt.js';
import { ascend910B } from '../../src/npu-emu/machine.js';
import { simulateAttention, type AttentionSimulation } from '../../src/npu-emu/schedules.js';
import { SCHEDULE_KINDS, type ErrorInfo, type NpuRequest, type NpuResponse, type NpuScheduleRow } from './protocol.js';

/** Class names by instanceof: a minified bundle renames classes, so `constructor.name` is not reliable. */
function errorInfo(e: unknown): ErrorInfo {
  if (e instanceof NpuEmuError) {
    const name = e instanceof NpuCapacityError ? 'NpuCapacityError' : e instanceof NpuConfigError ? 'NpuConfigError' : e instanceof TaskGraphError ? 'TaskGraphError' : 'NpuEmuError';
    return { name, message: e.message, field: e.field, allowed: e.allowed };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

self.onmessage = (ev: MessageEvent<NpuRequest>) => {
  const req = ev.data;
  const t0 = performance.now();
  const rows: NpuScheduleRow[] = [];
  let chosen: AttentionSimulation | null = null;
  for (const kind of SCHEDULE_KINDS) {
    const s0 = performance.now();
    try {
      const r = simulateAttention(ascend910B, req.problem, { kind, tilingMask: req.tilingMask });
      if (kind === req.kind) chosen = r;
      rows.push({ kind, ok: true, label: r.label, latencySeconds: r.latencySeconds, hbmFloorCycles: r.hbmFloorCycles, cubeEfficiency: r.cubeEfficiency, summary: r.summary, ms: performance.now() - s0 });
    } catch (e) {
      rows.push({ kind, ok: false, error: errorInfo(e), ms: performance.now() - s0 });
    }
  }
  const g0 = performance.now();
  const svg = chosen ? ganttSvg(chosen.graph, chosen.result, { maxIntervals: req.maxIntervals }) : null;
  const res: NpuResponse = { id: req.id, rows, svg, ganttMs: performance.now() - g0, ms: performance.now() - t0 };
  self.postMessage(res);
};
