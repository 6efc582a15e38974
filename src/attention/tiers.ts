/**
 * Capability tiers of the fused kernel and the automatic choice between them.
 * Softmax statistics and accumulators are f32 on every tier; tiers differ in
 * what sits in workgroup memory and which units do the matrix products.
 */
import { UnsupportedError } from '../errors.js';
import type { DeviceCapabilities } from '../runtime/capabilities.js';
import type { AttentionDType } from './problem.js';

export type KernelTier = 'subgroup-matrix' | 'f16' | 'f32';

export const KERNEL_TIERS: readonly KernelTier[] = ['subgroup-matrix', 'f16', 'f32'];

export interface TierAvailability {
  tier: KernelTier;
  available: boolean;
  /** Why it is, or is not, available on this device. */
  reason: string;
}

/** The f16 → f32 16×16×16 subgroup-matrix configuration the tensor-core tier is written for. */
export function hasSubgroupMatrix16(caps: DeviceCapabilities): boolean {
  return (
    caps.features.subgroupMatrix &&
    caps.features.shaderF16 &&
    caps.features.subgroups &&
    // The kernel maps 16 rows to one subgroup of 32 invocations (two per row).
    caps.subgroupSize !== null &&
    caps.subgroupSize.min === 32 &&
    caps.subgroupSize.max === 32 &&
    caps.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16)
  );
}

/** Which tiers this device can run, each with its reason. */
export function tierAvailability(caps: DeviceCapabilities, implemented: ReadonlySet<KernelTier>): TierAvailability[] {
  return KERNEL_TIERS.map((tier) => {
    if (!implemented.has(tier)) return { tier, available: false, reason: 'not implemented in this build' };
    if (tier === 'subgroup-matrix')
      return hasSubgroupMatrix16(caps)
        ? { tier, available: true, reason: 'chromium-experimental-subgroup-matrix with an f16×f16→f32 16×16×16 config, and shader-f16' }
        : { tier, available: false, reason: 'needs chromium-experimental-subgroup-matrix (f16→f32 16×16×16), shader-f16, subgroups of exactly 32' };
    if (tier === 'f16')
      return caps.features.shaderF16 ? { tier, available: true, reason: 'shader-f16' } : { tier, available: false, reason: 'needs shader-f16' };
    return { tier, available: true, reason: 'portable: f32 storage and math, any WebGPU device' };
  });
}

export interface TierChoice {
  tier: KernelTier;
  reason: string;
}

/**
 * Pick the tier for a storage dtype: the fastest available one that keeps the
 * caller's precision (f32 storage stays on the f32 tier unless asked: the other
 * tiers round inputs to f16), or the requested one if the device has it.
 */
export function chooseTier(caps: DeviceCapabilities, implemented: ReadonlySet<KernelTier>, dtype: AttentionDType, headDim: number, requested?: KernelTier): TierChoice {
  const avail = tierAvailability(caps, implemented);
  const ok = (t: KernelTier) => avail.find((a) => a.tier === t)!;
  if (dtype === 'f16' && !caps.features.shaderF16)
    throw new UnsupportedError('dtype', 'f16 storage needs shader-f16, which this device lacks', 'f32');
  if (requested !== undefined) {
    if (!KERNEL_TIERS.includes(requested)) throw new UnsupportedError('tier', `unknown tier ${JSON.stringify(requested)}`, KERNEL_TIERS.join(', '));
    const a = ok(requested);
    if (!a.available) throw new UnsupportedError('tier', `${requested} is not available: ${a.reason}`, avail.filter((x) => x.available).map((x) => x.tier).join(', '));
    if (requested === 'f32' && dtype === 'f16') throw new UnsupportedError('tier', 'the f32 tier reads f32 storage only', 'subgroup-matrix or f16 for f16 storage');
    if (requested === 'subgroup-matrix' && dtype !== 'f16') throw new UnsupportedError('tier', 'the subgroup-matrix tier reads f16 storage only', 'f16 or f32 for f32 storage');
    return { tier: requested, reason: `requested; ${a.reason}` };
  }
  if (dtype === 'f32') return { tier: 'f32', reason: 'f32 storage: the f32 tier keeps full precision (request another tier to trade it for speed)' };
  // Untuned default for f16 storage: tensor cores where the device has them
  // (2.0-2.7× the f16 tier on an H100, bench/results/bench-f16-h100-sweep-2026-11-24-run1.txt), else
  // the f16 tier; a tuning table for the adapter overrides this per shape class.
  if (ok('subgroup-matrix').available) return { tier: 'subgroup-matrix', reason: `${ok('subgroup-matrix').reason}; the untuned default for f16 storage` };
  return { tier: 'f16', reason: `${ok('f16').reason}; the untuned default for f16 storage without subgroup matrices` };
}
