/**
 * Node entry point: WebGPU through dawn.node (the npm package `webgpu`), with
 * the Dawn toggles that make NVIDIA expose `shader-f16` and subgroup matrices.
 * Kept apart from the main entry so browser bundles never import `webgpu`.
 */
import { FastAttentionRuntime, type RuntimeOptions } from './runtime/runtime.js';

/** Dawn flags: unsafe APIs (subgroup matrices) and f16 on NVIDIA's Vulkan driver. */
export const DAWN_FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];

/** Create the `GPU` entry point of dawn.node. */
export async function createNodeGPU(flags: readonly string[] = DAWN_FLAGS): Promise<GPU> {
  const webgpu = (await import('webgpu')) as unknown as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  // dawn.node leaves the WebGPU globals (GPUBufferUsage, ...) to the embedder; callers' code expects them.
  for (const [name, value] of Object.entries(webgpu.globals)) if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
  return webgpu.create([...flags]);
}

/**
 * A runtime on dawn.node.
 *
 * @example
 * ```ts
 * import { createNodeRuntime } from 'fastattention-webgpu/node';
 * const rt = await createNodeRuntime();
 * console.log(rt.capabilities.adapter);
 * ```
 */
export async function createNodeRuntime(options: Omit<RuntimeOptions, 'gpu'> = {}): Promise<FastAttentionRuntime> {
  if (options.device) return FastAttentionRuntime.create(options);
  return FastAttentionRuntime.create({ ...options, gpu: await createNodeGPU() });
}

export * from './index.js';
