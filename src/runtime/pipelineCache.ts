/**
 * Compiles each (kernel, specialization, entry point) once per device. A
 * specialization is the `const` values, type aliases and `enable`s
 * ({@link specializeWgsl}) and the trip counts of the kernel's `//#for` loops
 * ({@link unrollWgsl}); all of them are part of the cache key. Bind group
 * layouts are built from the reflected bindings, with the `params` binding
 * given a dynamic offset so one pooled buffer serves every call.
 */
import { resolveIncludes } from './wgslIncludes.js';
import { reflectKernel, specializeWgsl, type ReflectedBinding, type WgslConsts, type WgslTypes } from './wgsl.js';
import { unrollWgsl, type UnrollCounts } from './wgslUnroll.js';

/** A WGSL kernel family: one `.wgsl` file (its `//#for` loops and `//#include`s not yet expanded). */
export interface KernelSource {
  name: string;
  code: string;
}

/**
 * The WGSL a pipeline compiles: `//#for` loops unrolled with `unroll` (first,
 * so an unrolling error names a line of the kernel's own file), `//#include`s
 * spliced, then consts and aliases specialized and `enable`s added.
 */
export function pipelineWgsl(kernel: KernelSource, consts: WgslConsts, types: WgslTypes = {}, unroll: UnrollCounts = {}): string {
  return specializeWgsl(resolveIncludes(unrollWgsl(kernel.code, unroll)), consts, types);
}

export interface CompiledKernel {
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
  bindings: ReflectedBinding[];
  key: string;
}

/** Name of the binding that is read at a dynamic offset into a params pool. */
export const PARAMS_BINDING = 'params';

export class PipelineCache {
  private readonly cache = new Map<string, Promise<CompiledKernel>>();
  private compiled = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Number of pipelines compiled so far (a cached lookup does not add one). */
  get compiledCount(): number {
    return this.compiled;
  }

  /**
   * The pipeline of `entryPoint` in `kernel` specialized with `consts` and
   * `types`, its `//#for` loops unrolled with `unroll` (every count a loop of the
   * kernel names; none for a kernel without loops). Compiled on first use.
   */
  get(kernel: KernelSource, entryPoint: string, consts: WgslConsts, types: WgslTypes = {}, unroll: UnrollCounts = {}): Promise<CompiledKernel> {
    const sorted = (o: object) => JSON.stringify(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
    const key = `${kernel.name}:${entryPoint}:${sorted(consts)}:${sorted(types.aliases ?? {})}:${(types.enables ?? []).join(',')}:${sorted(unroll)}`;
    let hit = this.cache.get(key);
    if (!hit) {
      hit = this.compile(kernel, entryPoint, consts, types, unroll, key);
      this.cache.set(key, hit);
      hit.catch(() => this.cache.delete(key));
    }
    return hit;
  }

  private async compile(kernel: KernelSource, entryPoint: string, consts: WgslConsts, types: WgslTypes, unroll: UnrollCounts, key: string): Promise<CompiledKernel> {
    const code = pipelineWgsl(kernel, consts, types, unroll);
    const reflection = reflectKernel(code);
    const bindings = reflection.bindings[entryPoint];
    if (!bindings) throw new Error(`${kernel.name}.wgsl has no compute entry point ${entryPoint}`);
    const bindGroupLayout = this.device.createBindGroupLayout({
      label: `${kernel.name}.${entryPoint}`,
      entries: bindings.map((b) => ({
        binding: b.binding,
        visibility: 4 /* GPUShaderStage.COMPUTE */,
        buffer: { type: b.kind, hasDynamicOffset: b.name === PARAMS_BINDING },
      })),
    });
    const module = this.device.createShaderModule({ label: kernel.name, code });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      throw new Error(`${kernel.name}.wgsl failed to compile:\n${errors.map((m) => `  ${m.lineNum}:${m.linePos} ${m.message}`).join('\n')}`);
    }
    const pipeline = await this.device.createComputePipelineAsync({
      label: `${kernel.name}.${entryPoint}`,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
      compute: { module, entryPoint },
    });
    this.compiled++;
    return { pipeline, bindGroupLayout, bindings, key };
  }
}
