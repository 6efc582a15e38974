/** Tuning tables shipped with the library, measured on real adapters (src/tuning/tuned/*.json, written by `fastattn tune`). */
import { parseTuningTable, type TuningTable } from './tuning.js';

const files = import.meta.glob<{ default: unknown }>('./tuned/*.json', { eager: true });

export const SHIPPED_TUNING: readonly TuningTable[] = Object.values(files).map((m) => parseTuningTable(m.default as object));

export function shippedTuningFor(adapter: string): TuningTable | undefined {
  return SHIPPED_TUNING.find((t) => t.adapter === adapter);
}
