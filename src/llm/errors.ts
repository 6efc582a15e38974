/**
 * Errors of the LLM runner's checkpoint loading. A checkpoint that does not
 * match its config, or a truncated file, is reported before anything touches
 * the GPU, naming the tensor (or file) at fault and what was expected.
 */
import { FastAttentionError, type FastAttentionErrorCode } from '../errors.js';

/** Why a checkpoint was rejected. */
export type CheckpointProblem = 'missing' | 'unexpected' | 'shape' | 'dtype' | 'truncated' | 'header';

/**
 * A checkpoint whose tensors disagree with the config, or a malformed or
 * truncated safetensors file. `field` is the tensor name (or the file name for
 * header problems); `problem` says which check failed.
 */
export class CheckpointError extends FastAttentionError {
  readonly problem: CheckpointProblem;

  constructor(problem: CheckpointProblem, field: string, message: string, allowed: string) {
    // The shared code union has no checkpoint member yet (see the runner's report); shape errors are the nearest kind.
    super((problem === 'dtype' ? 'unsupported' : 'shape') satisfies FastAttentionErrorCode, field, message, allowed);
    this.problem = problem;
  }
}
