/**
 * Typed errors. Every misuse is reported before anything is dispatched, with the
 * offending field and what would have been accepted, so callers can show the
 * message as is or branch on `code`.
 */

export type FastAttentionErrorCode =
  | 'shape'
  | 'unsupported'
  | 'buffer'
  | 'scale'
  | 'tile-config'
  | 'device-lost'
  | 'no-adapter'
  | 'numeric-overflow';

export class FastAttentionError extends Error {
  // Literal names: minifiers rename classes, and `name` is part of what users see.
  override name = 'FastAttentionError';
  readonly code: FastAttentionErrorCode;
  /** The option or argument at fault, e.g. `shape.headDim` or `buffers.k`. */
  readonly field: string;
  /** Human-readable description of what is accepted. */
  readonly allowed: string;

  constructor(code: FastAttentionErrorCode, field: string, message: string, allowed: string) {
    super(`${field}: ${message} (allowed: ${allowed})`);
    this.code = code;
    this.field = field;
    this.allowed = allowed;
  }
}

/** Shapes, layouts or head counts that disagree with each other. */
export class ShapeError extends FastAttentionError {
  override name = 'ShapeError';
  constructor(field: string, message: string, allowed: string) {
    super('shape', field, message, allowed);
  }
}

/** A value outside what the kernels implement (head dim, dtype, layout name). */
export class UnsupportedError extends FastAttentionError {
  override name = 'UnsupportedError';
  constructor(field: string, message: string, allowed: string) {
    super('unsupported', field, message, allowed);
  }
}

/** A buffer that is missing, too small, misaligned or lacks a usage flag. */
export class BufferError extends FastAttentionError {
  override name = 'BufferError';
  constructor(field: string, message: string, allowed: string) {
    super('buffer', field, message, allowed);
  }
}

/** A non-finite or non-positive softmax scale. */
export class ScaleError extends FastAttentionError {
  override name = 'ScaleError';
  constructor(field: string, message: string, allowed: string) {
    super('scale', field, message, allowed);
  }
}

/** A tile configuration that the device cannot run (storage, invocations, registers). */
export class TileConfigError extends FastAttentionError {
  override name = 'TileConfigError';
  constructor(field: string, message: string, allowed: string) {
    super('tile-config', field, message, allowed);
  }
}

/** The GPUDevice was lost; the runtime must be recreated. */
export class DeviceLostError extends FastAttentionError {
  override name = 'DeviceLostError';
  constructor(reason: string) {
    super('device-lost', 'device', `the GPUDevice was lost (${reason})`, 'a live device: create a new runtime');
  }
}

/** No WebGPU adapter could be found. */
export class NoAdapterError extends FastAttentionError {
  override name = 'NoAdapterError';
  constructor(message: string) {
    super('no-adapter', 'adapter', message, 'an environment with WebGPU (a browser with navigator.gpu, or Node with the `webgpu` package)');
  }
}

/** A tensor whose values do not survive rounding to f16 (checked on the GPU; see `checkF16Range`). */
export type OverflowTensor = 'q' | 'k' | 'v';

/**
 * Inputs of a finished call held values outside the f16 range where the kernel
 * rounds to f16 (Q after scale·log2 e): its result contains ±inf or NaN.
 * `field` is the first such tensor, `tensors` all of them.
 */
export class NumericOverflowError extends FastAttentionError {
  override name = 'NumericOverflowError';
  readonly tensors: readonly OverflowTensor[];
  constructor(tensors: readonly OverflowTensor[]) {
    const what = tensors.map((t) => (t === 'q' ? 'q · scale · log2 e' : t)).join(', ');
    super(
      'numeric-overflow',
      tensors[0],
      `${what} held values that are not finite or exceed 65504 in magnitude, so rounding to f16 overflowed and the output is not valid`,
      tensors[0] === 'q' ? 'finite |q · scale · log2 e| ≤ 65504 (f16): rescale q or lower the scale, or use the f32 tier' : `finite |${tensors[0]}| ≤ 65504 (f16), or the f32 tier`,
    );
    this.tensors = tensors;
  }
}
