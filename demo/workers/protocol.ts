/**
 * Messages between the page and its two computation workers (the NPU schedule
 * simulator and the Volta tile planner). Both run library code unchanged; the
 * workers only keep the page responsive while a large simulation or the
 * swizzle search runs. Everything here survives structured cloning.
 */
import type { AttentionPrefillProblem, ScheduleKind } from '../../src/npu-emu/schedules.js';
import type { SimulationSummary } from '../../src/npu-emu/simulator.js';
import type { TileDemoJson } from '../../src/volta/demoData.js';

/** A thrown error as plain data: class name, the field at fault and what is allowed when the library says so. */
export interface ErrorInfo {
  name: string;
  message: string;
  field?: string;
  allowed?: string;
}

export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['standard', 'unified', 'twoLevel'];

export interface NpuRequest {
  id: number;
  problem: AttentionPrefillProblem;
  /** The schedule whose Gantt chart is drawn; every schedule is simulated for the comparison. */
  kind: ScheduleKind;
  tilingMask: boolean;
  /** Most bars in the Gantt chart. */
  maxIntervals: number;
}

/** One schedule of the comparison: `simulateAttention`'s numbers, or the error it threw. */
export type NpuScheduleRow =
  | {
      kind: ScheduleKind;
      ok: true;
      label: string;
      latencySeconds: number;
      hbmFloorCycles: number;
      cubeEfficiency: number;
      summary: SimulationSummary;
      /** Wall time of build + simulate in the worker. */
      ms: number;
    }
  | { kind: ScheduleKind; ok: false; error: ErrorInfo; ms: number };

export interface NpuResponse {
  id: number;
  rows: NpuScheduleRow[];
  /** `ganttSvg` of the chosen schedule (null when it threw). */
  svg: string | null;
  ganttMs: number;
  /** Wall time of the whole job. */
  ms: number;
}

export interface VoltaTilesRequest {
  id: number;
  headDim: number;
  br: number;
  bc: number;
  maxSteps: number;
}

export type VoltaTilesResponse = { id: number; ok: true; tiles: TileDemoJson[]; ms: number } | { id: number; ok: false; error: ErrorInfo; ms: number };
