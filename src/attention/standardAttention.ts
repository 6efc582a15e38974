/**
 * The paper's *standard attention* on WebGPU, the baseline speedups are quoted
 * against: Q·Kᵀ → ·scale + dense mask → softmax → P·V as four dispatches with
 * Sq×Sk intermediates in memory. Heads are processed in chunks so the score
 * buffer fits one storage binding; the mask is materialized densely on purpose.
 */
import standardWgsl from '../../shaders/standardAttention.wgsl?raw';
import { BufferError, UnsupportedError } from '../errors.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { PARAMS_BINDING, type CompiledKernel } from '../runtime/pipelineCache.js';
import { ParamsPool } from '../runtime/paramsPool.js';
import { BufferUsage } from '../runtime/usage.js';
import { isMasked } from '../tiling/mask.js';
import { encodeDispatch, submitAndWait, type EncodeTarget } from './encode.js';
import { normalizeKvLengths, normalizeProblem, resolveAttentionBuffers, type AttentionBuffers, type AttentionOptions, type AttentionProblem } from './problem.js';

export const standardAttentionKernel = { name: 'standardAttention', code: standardWgsl };

const GEMM_TILE = 64;
const ELEMENT_THREADS = 256;
const MASK_VALUE = -1e30;

export interface StandardAttentionOptions extends AttentionOptions {
  /** Valid keys per sequence, fixed at creation because the dense mask is built from them. */
  kvLengths?: ArrayLike<number>;
  /** Upper bound on the bytes of the score buffer (heads are chunked to fit); default: the binding limit. */
  maxScoreBytes?: number;
}

interface Dispatch {
  kernel: CompiledKernel;
  offset: number;
  groups: [number, number, number];
  /** Which buffers bind where: names of the call's tensors or the operator's own. */
  bind: Array<[number, 'q' | 'k' | 'v' | 'o' | 'scores' | 'mask']>;
}

/** Split n items into a 2-D grid of at most `maxPerDim` along x. */
function grid2d(n: number, maxPerDim: number): [number, number, number] {
  const x = Math.min(n, maxPerDim);
  return [x, Math.ceil(n / x), 1];
}

export class StandardAttention {
  /** Heads per chunk of the score buffer. */
  readonly headChunk: number;
  /** Bytes of the S×S intermediates this operator holds (scores + dense mask). */
  readonly intermediateBytes: number;

  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly problem: AttentionProblem,
    private readonly scores: GPUBuffer,
    private readonly mask: GPUBuffer,
    private readonly params: ParamsPool,
    private readonly dispatches: Dispatch[],
    headChunk: number,
  ) {
    this.headChunk = headChunk;
    this.intermediateBytes = scores.size + mask.size;
  }

  static async create(runtime: FastAttentionRuntime, options: StandardAttentionOptions): Promise<StandardAttention> {
    runtime.assertAlive();
    const p = normalizeProblem(options);
    const kvLengths = normalizeKvLengths(p, options.kvLengths, new Uint32Array(p.batch));
    const L = runtime.capabilities.limits;
    const headBytes = p.seqQ * p.seqK * 4;
    const budget = Math.min(options.maxScoreBytes ?? Infinity, L.maxStorageBufferBindingSize, L.maxBufferSize);
    const headChunk = Math.min(p.headsQ, Math.floor(budget / headBytes));
    if (headChunk < 1)
      throw new BufferError('q.shape[2]', `one head's ${p.seqQ}×${p.seqK} score matrix needs ${headBytes} bytes`, `at most ${budget} bytes (standard attention materializes S×S; use the fused operator)`);

    // The dense mask: one Sq×Sk plane, or one per sequence when key lengths differ.
    const perSequence = kvLengths.some((n) => n !== p.seqK);
    const planes = perSequence ? p.batch : 1;
    const maskData = new Float32Array(planes * p.seqQ * p.seqK);
    for (let b = 0; b < planes; b++) {
      const m = { seqQ: p.seqQ, kvLen: kvLengths[b], causal: p.causal, window: p.window };
      for (let i = 0; i < p.seqQ; i++)
        for (let j = 0; j < p.seqK; j++) if (isMasked(m, i, j)) maskData[(b * p.seqQ + i) * p.seqK + j] = MASK_VALUE;
    }
    const mask = runtime.ledger.create('standardAttention', { label: 'standardAttention.mask', size: maskData.byteLength, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    runtime.device.queue.writeBuffer(mask, 0, maskData);
    const scores = runtime.ledger.create('standardAttention', { label: 'standardAttention.scores', size: headChunk * headBytes, usage: BufferUsage.STORAGE });

    if (p.dtype === 'f16' && !runtime.capabilities.features.shaderF16)
      throw new UnsupportedError('dtype', 'f16 storage needs shader-f16, which this device lacks', 'f32');
    // Scores stay f32; with f16 storage the two GEMMs read/write f16 operands.
    const store = p.dtype;
    const types = (aliases: Record<string, string>) => ({ aliases, enables: store === 'f16' ? ['f16'] : [] });
    const [gemm, gemmPV, scaleMask, softmax] = await Promise.all([
      runtime.pipelines.get(standardAttentionKernel, 'batchedGemm', {}, types({ AElem: store, BElem: store, CElem: 'f32' })),
      runtime.pipelines.get(standardAttentionKernel, 'batchedGemm', {}, types({ AElem: 'f32', BElem: store, CElem: store })),
      runtime.pipelines.get(standardAttentionKernel, 'scaleAddMask', {}, types({})),
      runtime.pipelines.get(standardAttentionKernel, 'softmaxRows', {}, types({})),
    ]);
    const chunks = Math.ceil(p.headsQ / headChunk);
    const params = new ParamsPool(
      runtime.device.queue,
      runtime.ledger,
      'standardAttention',
      gemm.bindings.find((b) => b.name === PARAMS_BINDING)!.struct!,
      0,
      L.minStorageBufferOffsetAlignment,
      4 * p.batch * chunks,
    );
    const s = p.strides;
    const zero = {
      M: 0, N: 0, K: 0,
      aBase: 0, aZ0: 0, aGroup: 1, aBatch: 0, aRow: 0, aCol: 0,
      bBase: 0, bZ0: 0, bGroup: 1, bBatch: 0, bRow: 0, bCol: 0,
      cBase: 0, cZ0: 0, cGroup: 1, cBatch: 0, cRow: 0, cCol: 0,
      rows: 0, cols: 0, scale: 0, maskBase: 0, maskRows: 0,
    };
    const maxGroups = L.maxComputeWorkgroupsPerDimension;
    const dispatches: Dispatch[] = [];
    for (let b = 0; b < p.batch; b++) {
      for (let h0 = 0; h0 < p.headsQ; h0 += headChunk) {
        const heads = Math.min(headChunk, p.headsQ - h0);
        const rows = heads * p.seqQ;
        // S[z] = Q[h0+z] · K[(h0+z)/group]ᵀ
        dispatches.push({
          kernel: gemm,
          offset: params.offsetFor({
            ...zero, M: p.seqQ, N: p.seqK, K: p.headDim,
            aBase: b * s.q.batch, aZ0: h0, aBatch: s.q.head, aRow: s.q.seq, aCol: 1,
            bBase: b * s.k.batch, bZ0: h0, bGroup: p.groupSize, bBatch: s.k.head, bRow: 1, bCol: s.k.seq,
            cBatch: p.seqQ * p.seqK, cRow: p.seqK, cCol: 1,
          }),
          groups: [Math.ceil(p.seqK / GEMM_TILE), Math.ceil(p.seqQ / GEMM_TILE), heads],
          bind: [[1, 'q'], [2, 'k'], [3, 'scores']],
        });
        dispatches.push({
          kernel: scaleMask,
          offset: params.offsetFor({ ...zero, rows, cols: p.seqK, scale: p.scale, maskBase: perSequence ? b * p.seqQ * p.seqK : 0, maskRows: p.seqQ }),
          groups: grid2d(Math.ceil((rows * p.seqK) / ELEMENT_THREADS), maxGroups),
          bind: [[4, 'scores'], [5, 'mask']],
        });
        dispatches.push({
          kernel: softmax,
          offset: params.offsetFor({ ...zero, rows, cols: p.seqK }),
          groups: grid2d(rows, maxGroups),
          bind: [[4, 'scores']],
        });
        // O[h0+z] = P[z] · V[(h0+z)/group]
        dispatches.push({
          kernel: gemmPV,
          offset: params.offsetFor({
            ...zero, M: p.seqQ, N: p.headDim, K: p.seqK,
            aBatch: p.seqQ * p.seqK, aRow: p.seqK, aCol: 1,
            bBase: b * s.v.batch, bZ0: h0, bGroup: p.groupSize, bBatch: s.v.head, bRow: s.v.seq, bCol: 1,
            cBase: b * s.o.batch, cZ0: h0, cBatch: s.o.head, cRow: s.o.seq, cCol: 1,
          }),
          groups: [Math.ceil(p.headDim / GEMM_TILE), Math.ceil(p.seqQ / GEMM_TILE), heads],
          bind: [[1, 'scores'], [2, 'v'], [3, 'o']],
        });
      }
    }
    return new StandardAttention(runtime, p, scores, mask, params, dispatches, headChunk);
  }

  /** Record the four dispatches per head chunk into the caller's encoder or compute pass. */
  encode(target: EncodeTarget, buffers: AttentionBuffers): void {
    this.runtime.assertAlive();
    const p = this.problem;
    const limits = this.runtime.capabilities.limits;
    const bound = {
      ...resolveAttentionBuffers(buffers, p, limits),
      scores: { buffer: this.scores, offset: 0, size: this.scores.size },
      mask: { buffer: this.mask, offset: 0, size: this.mask.size },
    };
    for (const d of this.dispatches) {
      const group = this.runtime.bindGroups.get(d.kernel.bindGroupLayout, d.kernel.key, [
        { binding: 0, buffer: this.params.buffer, offset: 0, size: this.params.bindingBytes },
        ...d.bind.map(([binding, name]) => ({ binding, ...bound[name] })),
      ]);
      encodeDispatch(target, d.kernel.pipeline, group, [d.offset], d.groups, 'standardAttention');
    }
  }

  async run(buffers: AttentionBuffers): Promise<void> {
    await submitAndWait(this.runtime.device, (encoder) => this.encode(encoder, buffers));
  }

  /** Release the S×S intermediates. */
  destroy(): void {
    this.runtime.ledger.destroy(this.scores);
    this.runtime.ledger.destroy(this.mask);
    this.runtime.ledger.destroy(this.params.buffer);
  }
}
