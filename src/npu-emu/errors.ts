/**
 * Typed errors of the NPU emulator. Like the library's own errors they name the
 * offending field and what would have been accepted, so a demo page can show
 * the message as is. They are separate classes (not `FastAttentionError`)
 * because the emulator never touches a GPU and its codes are its own.
 */

export type NpuEmuErrorCode = 'npu-config' | 'npu-capacity' | 'npu-task-graph';

export class NpuEmuError extends Error {
  readonly code: NpuEmuErrorCode;
  /** The value at fault, e.g. `aiCores`, `L1`, `tasks[3].deps`, `devices`. */
  readonly field: string;
  /** Human-readable description of what is accepted. */
  readonly allowed: string;

  constructor(code: NpuEmuErrorCode, field: string, message: string, allowed: string) {
    super(`${field}: ${message} (allowed: ${allowed})`);
    this.name = new.target.name;
    this.code = code;
    this.field = field;
    this.allowed = allowed;
  }
}

/** A machine, problem, schedule or layer parameter that is not usable (non-positive size, heads not divisible, …). */
export class NpuConfigError extends NpuEmuError {
  constructor(field: string, message: string, allowed: string) {
    super('npu-config', field, message, allowed);
  }
}

/** A schedule whose buffers do not fit an on-chip memory; `field` is the memory (`L1`, `L0C`, `UB`, …). */
export class NpuCapacityError extends NpuEmuError {
  constructor(field: string, message: string, allowed: string) {
    super('npu-capacity', field, message, allowed);
  }
}

/** A task graph that cannot run: unknown dependency, cycle, unknown buffer, negative duration, deadlock. */
export class TaskGraphError extends NpuEmuError {
  constructor(field: string, message: string, allowed: string) {
    super('npu-task-graph', field, message, allowed);
  }
}
