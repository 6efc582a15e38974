/**
 * The model's weights on the GPU, laid out for the runner's kernels: q/k/v
 * projections fused into one [(Hq + 2·Hkv)·D, H] matrix and gate/up into one
 * [2·I, H] matrix (one matrix product each instead of three and two), linear
 * layers and the embedding as f32 or f16 words, norm gains as f32.
 */
import { UnsupportedError } from '../errors.js';
import type { FastAttentionRuntime } from '../runtime/runtime.js';
import { BufferUsage } from '../runtime/usage.js';
import { llamaTensorSpecs, type LoadedCheckpoint, type TensorSpec } from './checkpoint.js';
import { validateLlamaConfig, type LlamaConfig } from './config.js';
import { grid, llmKernels, LlmKernelSet } from './kernels.js';
import { initRange, tensorSeed } from './random.js';
import { tensorToF16, tensorToF32 } from './safetensors.js';

/** Storage type of the linear layers and the embedding. Activations and norms are always f32. */
export type WeightDType = 'f32' | 'f16';

export interface LlamaLayerWeights {
  attnNorm: GPUBuffer;
  /** [q; k; v] rows, each [out, hidden]. */
  qkv: GPUBuffer;
  o: GPUBuffer;
  mlpNorm: GPUBuffer;
  /** [gate; up] rows. */
  gateUp: GPUBuffer;
  down: GPUBuffer;
}

/** Where each checkpoint tensor lives: buffer and element offset. */
interface Placement {
  buffer: GPUBuffer;
  elementOffset: number;
  f32: boolean;
}

const OWNER = 'llm.weights';

export class LlamaWeights {
  private constructor(
    private readonly runtime: FastAttentionRuntime,
    readonly config: LlamaConfig,
    readonly dtype: WeightDType,
    readonly embed: GPUBuffer,
    readonly layers: LlamaLayerWeights[],
    readonly finalNorm: GPUBuffer,
    /** The embedding buffer itself when embeddings are tied. */
    readonly lmHead: GPUBuffer,
    private readonly placements: Map<string, Placement>,
  ) {}

  /** Bytes of weights on the GPU. */
  get bytes(): number {
    const seen = new Set<GPUBuffer>();
    for (const p of this.placements.values()) seen.add(p.buffer);
    let n = 0;
    for (const b of seen) n += b.size;
    return n;
  }

  private static allocate(runtime: FastAttentionRuntime, config: LlamaConfig, dtype: WeightDType): LlamaWeights {
    validateLlamaConfig(config);
    if (dtype !== 'f32' && dtype !== 'f16') throw new UnsupportedError('dtype', `weight dtype ${JSON.stringify(dtype)} is not supported`, 'f32, f16');
    const c = config;
    const wBytes = dtype === 'f16' ? 2 : 4;
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const maxBinding = runtime.capabilities.limits.maxStorageBufferBindingSize;
    const make = (label: string, elements: number, f32: boolean): GPUBuffer => {
      const size = elements * (f32 ? 4 : wBytes);
      if (size > maxBinding) throw new UnsupportedError(label, `${size} bytes exceed maxStorageBufferBindingSize (${maxBinding})`, `tensors of at most ${maxBinding} bytes`);
      return runtime.ledger.create(OWNER, { label: `${OWNER}.${label}`, size, usage });
    };
    const H = c.hiddenSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const placements = new Map<string, Placement>();
    const place = (name: string, buffer: GPUBuffer, elementOffset: number, f32: boolean): void => void placements.set(name, { buffer, elementOffset, f32 });
    const embed = make('embed', c.vocabSize * H, false);
    place('model.embed_tokens.weight', embed, 0, false);
    const layers: LlamaLayerWeights[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}.`;
      const w: LlamaLayerWeights = {
        attnNorm: make(`${l}.attnNorm`, H, true),
        qkv: make(`${l}.qkv`, (q + 2 * kv) * H, false),
        o: make(`${l}.o`, H * q, false),
        mlpNorm: make(`${l}.mlpNorm`, H, true),
        gateUp: make(`${l}.gateUp`, 2 * c.intermediateSize * H, false),
        down: make(`${l}.down`, H * c.intermediateSize, false),
      };
      place(`${p}input_layernorm.weight`, w.attnNorm, 0, true);
      place(`${p}self_attn.q_proj.weight`, w.qkv, 0, false);
      place(`${p}self_attn.k_proj.weight`, w.qkv, q * H, false);
      place(`${p}self_attn.v_proj.weight`, w.qkv, (q + kv) * H, false);
      place(`${p}self_attn.o_proj.weight`, w.o, 0, false);
      place(`${p}post_attention_layernorm.weight`, w.mlpNorm, 0, true);
      place(`${p}mlp.gate_proj.weight`, w.gateUp, 0, false);
      place(`${p}mlp.up_proj.weight`, w.gateUp, c.intermediateSize * H, false);
      place(`${p}mlp.down_proj.weight`, w.down, 0, false);
      layers.push(w);
    }
    const finalNorm = make('finalNorm', H, true);
    place('model.norm.weight', finalNorm, 0, true);
    let lmHead = embed;
    if (!c.tieWordEmbeddings) {
      lmHead = make('lmHead', c.vocabSize * H, false);
      place('lm_head.weight', lmHead, 0, false);
    }
    return new LlamaWeights(runtime, c, dtype, embed, layers, finalNorm, lmHead, placements);
  }

  /**
   * Upload a loaded (and already checked) checkpoint, converting each tensor to
   * the weight dtype: F16/BF16/F32 files all load as f32 or f16.
   */
  static fromCheckpoint(runtime: FastAttentionRuntime, checkpoint: LoadedCheckpoint, dtype: WeightDType = 'f32'): LlamaWeights {
    runtime.assertAlive();
    const w = LlamaWeights.allocate(runtime, checkpoint.config, dtype);
    for (const [name, at] of w.placements) {
      const t = checkpoint.tensors.get(name)!;
      const data = at.f32 || dtype === 'f32' ? tensorToF32(t) : tensorToF16(t);
      runtime.device.queue.writeBuffer(at.buffer, at.elementOffset * data.BYTES_PER_ELEMENT, data);
    }
    return w;
  }

  /**
   * Deterministic random weights generated on the GPU (no upload), identical to
   * `randomCheckpointTensors(config, seed, …)` up to f16 rounding of ties.
   */
  static async random(runtime: FastAttentionRuntime, config: LlamaConfig, options: { seed?: number; dtype?: WeightDType } = {}): Promise<LlamaWeights> {
    runtime.assertAlive();
    const dtype = options.dtype ?? 'f32';
    const seed = options.seed ?? 0;
    const w = LlamaWeights.allocate(runtime, config, dtype);
    const kernels = new LlmKernelSet(runtime);
    try {
      const [op32, op16] = await Promise.all([
        kernels.op(llmKernels.init, 'initWeights', { WEIGHT_F16: false }),
        kernels.op(llmKernels.init, 'initWeights', { WEIGHT_F16: true }),
      ]);
      const specs = new Map<string, TensorSpec>(llamaTensorSpecs(config).map((s) => [s.name, s]));
      const maxGroups = runtime.capabilities.limits.maxComputeWorkgroupsPerDimension;
      // One command buffer per few tensors keeps the params pool's 64 slots from being reused before a submit.
      let encoder = runtime.device.createCommandEncoder();
      let pass = encoder.beginComputePass();
      let pending = 0;
      for (const [name, at] of w.placements) {
        const spec = specs.get(name)!;
        const n = spec.shape.reduce((a, b) => a * b, 1);
        const f16 = !at.f32 && dtype === 'f16';
        const words = f16 ? n / 2 : n;
        const range = initRange(spec);
        const base = f16 ? at.elementOffset / 2 : at.elementOffset;
        kernels.dispatch(pass, f16 ? op16 : op32, { base, words, seed: tensorSeed(seed, name), scale: range.scale, shift: range.shift }, [at.buffer], grid(Math.ceil(words / 256), maxGroups));
        if (++pending === 32) {
          pass.end();
          runtime.device.queue.submit([encoder.finish()]);
          encoder = runtime.device.createCommandEncoder();
          pass = encoder.beginComputePass();
          pending = 0;
        }
      }
      pass.end();
      runtime.device.queue.submit([encoder.finish()]);
      await runtime.device.queue.onSubmittedWorkDone();
    } finally {
      kernels.destroy();
    }
    return w;
  }

  /** The buffer and element offset holding a checkpoint tensor (tests read weights back through it). */
  placement(name: string): { buffer: GPUBuffer; elementOffset: number; f32: boolean } | undefined {
    return this.placements.get(name);
  }

  destroy(): void {
    const seen = new Set<GPUBuffer>();
    for (const p of this.placements.values()) seen.add(p.buffer);
    for (const b of seen) this.runtime.ledger.destroy(b);
    this.placements.clear();
  }
}
