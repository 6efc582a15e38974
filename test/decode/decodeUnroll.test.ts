// The decode kernel's `//#for` loops (unrolled by the pipeline cache): trip
// counts from the specialization consts, and an expansion for every
// specialization the planner can produce (pure text, then a WGSL compile of
// each distinct variant).
import { describe, expect, it } from 'vitest';
import { chooseDecodeTiling, DECODE_COMBINE_UNROLL, DECODE_KEYS_PER_SLOT, DECODE_THREADS, decodeKernelConsts, decodeKernelCounts, decodeKernelVariant, flashDecodeKernel, type DecodeKernelConsts, type DecodeTilingOptions } from '../../src/decode/flashDecode.js';
import { SUPPORTED_HEAD_DIMS } from '../../src/attention/problem.js';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { reflectKernel } from '../../src/runtime/wgsl.js';
import { sharedRuntime } from '../helpers/gpu.js';

const LIMITS = [
  { maxComputeWorkgroupStorageSize: 16384, maxComputeWorkgroupsPerDimension: 65535 },
  { maxComputeWorkgroupStorageSize: 49152, maxComputeWorkgroupsPerDimension: 65535 },
];
// (group size, queries): row blocks of 1, 2, 3, 4, 5, 8 and 16 rows, and many blocks.
const ROWS = [[1, 1], [2, 1], [1, 3], [4, 1], [1, 5], [8, 1], [2, 4], [8, 2], [16, 16]] as const;

/** The consts of every tiling chooseDecodeTiling accepts over head dims, dtypes, row counts and options, one per distinct kernel source. */
function everySpecialization(): { consts: DecodeKernelConsts; nativeF16: boolean }[] {
  const seen = new Map<string, { consts: DecodeKernelConsts; nativeF16: boolean }>();
  for (const headDim of SUPPORTED_HEAD_DIMS)
    for (const dtype of ['f16', 'f32'] as const) {
      const words = headDim / (dtype === 'f16' ? 8 : 4);
      const divisors = Array.from({ length: words }, (_, i) => i + 1).filter((c) => words % c === 0);
      for (const [groupSize, seqQ] of ROWS)
        for (const limits of LIMITS)
          for (const threads of DECODE_THREADS)
            for (const wordsPerLane of [undefined, ...divisors])
              for (const keysPerSlot of [undefined, ...DECODE_KEYS_PER_SLOT])
                for (const sg of [0, 4, 8, 16, 32, 64, 128]) {
                  const options: DecodeTilingOptions = { computeUnits: 8, threads, wordsPerLane, keysPerSlot, subgroupMinSize: sg, reduction: sg ? 'subgroup' : 'workgroup' };
                  let tiling;
                  try {
                    tiling = chooseDecodeTiling({ batch: 1, headsKV: 2, groupSize, seqQ, seqK: 4096, headDim, dtype }, limits, options);
                  } catch {
                    continue;
                  }
                  for (const nativeF16 of dtype === 'f16' ? [false, true] : [false]) {
                    const consts = decodeKernelConsts({ headDim, dtype, paged: false }, tiling, 1);
                    const key = JSON.stringify([decodeKernelCounts(consts), consts.SUBGROUPS, nativeF16]);
                    if (!seen.has(key)) seen.set(key, { consts, nativeF16 });
                  }
                }
    }
  return [...seen.values()];
}

describe('decode kernel unrolling', () => {
  it('counts follow the const block: row groups of four, vec4s of dims per lane', () => {
    const base = { CW: 1, KU: 8, ROWS: 4, UNROLL: DECODE_COMBINE_UNROLL };
    // f16 D128, one word a lane: 8 dims = 2 vec4s.
    expect(decodeKernelCounts({ ...base, EPW: 8 })).toEqual({ KU: 8, CW: 1, R4: 1, ROWS4: 4, DV: 2, DV4: 8, UNROLL: 4 });
    // f32, 2 words a lane, 6 rows padded to two groups of four.
    expect(decodeKernelCounts({ ...base, EPW: 4, CW: 2, KU: 2, ROWS: 6 })).toEqual({ KU: 2, CW: 2, R4: 2, ROWS4: 8, DV: 2, DV4: 8, UNROLL: 4 });
    expect(decodeKernelCounts({ ...base, EPW: 8, CW: 5, KU: 1, ROWS: 1 })).toEqual({ KU: 1, CW: 5, R4: 1, ROWS4: 4, DV: 10, DV4: 40, UNROLL: 4 });
    expect(() => decodeKernelCounts({ ...base, EPW: 8, CW: 0 })).toThrow(/CW = 0/);
    expect(() => decodeKernelCounts({ ...base, EPW: 6 })).toThrow(/EPW/);
    // The operator's consts map the tiling one to one.
    const consts = decodeKernelConsts({ headDim: 64, dtype: 'f32', paged: true }, { wordsPerLane: 2, lanes: 8, slots: 8, keysPerSlot: 4, rowBlock: 5, prefetch: false, reduction: 'subgroup' }, 3);
    expect(consts).toEqual({ HEAD_DIM: 64, F16: false, PAGED: true, POOLS: 3, EPW: 4, CW: 2, LANES: 8, SLOTS: 8, KU: 4, ROWS: 5, PREFETCH: false, SUBGROUPS: true, UNROLL: DECODE_COMBINE_UNROLL });
    expect(decodeKernelCounts(consts)).toMatchObject({ R4: 2, ROWS4: 8, DV: 2, DV4: 8 });
  });

  it('every specialization expands: no directives or placeholders left, register arrays indexed by constants, and it reflects', () => {
    const all = everySpecialization();
    expect(all.length).toBeGreaterThan(20);
    // Reflection is slow (tens of ms a variant): once per feature set.
    const reflected = new Set<string>();
    for (const { consts, nativeF16 } of all) {
      const { kernel, enables } = decodeKernelVariant({ nativeF16, subgroups: consts.SUBGROUPS });
      // What the pipeline cache compiles for these consts.
      const code = pipelineWgsl(kernel, consts, { enables }, decodeKernelCounts(consts));
      const where = JSON.stringify({ ...consts, nativeF16 });
      expect(code, where).not.toMatch(/^\s*\/\/#(for|endfor|if|else|endif)\b|\{[A-Za-z_]\w*\}/m);
      // No counted loop over the register arrays survives, and every index into them is a constant expression.
      expect(code, where).not.toMatch(/for \(var (u|g|d|j|r|i) = 0u;/);
      const indices = [...code.replaceAll(/\/\/.*$/gm, '').matchAll(/(?:\b(?:qT|acc|sc|m|l|lim|kw|vw|w|ml)|\.k|\.v)\[([^\]]*)\]/g)].map((x) => x[1]);
      expect(indices.length, where).toBeGreaterThan(50);
      expect(indices.filter((x) => !/^[\d\s()*+/%A-Z_]*$/.test(x.replaceAll(/\d+u/g, '0'))), where).toEqual([]);
      const n = decodeKernelCounts(consts);
      // Q·Kᵀ and P·V: one K and one V widening per (key, row group, vec4 of dims); one rescale per accumulator.
      expect(code.match(/let kx\d+ = widen\(cur\.k\[\d+u \* CW \+ \d+u \/ VPW\]/g), where).toHaveLength(n.KU * n.R4 * n.DV);
      expect(code.match(/let vx\d+ = widen\(cur\.v\[/g), where).toHaveLength(n.KU * n.R4 * n.DV);
      expect(code.match(/acc\[\d+u \* R4 \+ \d+u\] \*= alpha;/g), where).toHaveLength(n.R4 * n.DV4);
      expect(code.match(/^\s*if \(\d+u < rows\) \{$/gm), where).toHaveLength(n.ROWS4);
      if (reflected.has(kernel.name)) continue;
      reflected.add(kernel.name);
      const { bindings } = reflectKernel(code);
      expect(bindings.main.map((b) => b.name), where).toEqual(['params', 'q', 'pool0', 'pool1', 'pool2', 'pool3', 'pageTable', 'work']);
      expect(bindings.combine.map((b) => b.name), where).toEqual(['params', 'work', 'o']);
    }
    expect(reflected.size).toBe(4);
    expect(flashDecodeKernel.code).toMatch(/^\s*\/\/#for u in KU$/m);
  });

  it('every distinct expansion compiles (WGSL validation on the software adapter, paged and contiguous)', async () => {
    const rt = await sharedRuntime();
    const f = rt.capabilities.features;
    let compiled = 0;
    for (const { consts, nativeF16 } of everySpecialization()) {
      if ((nativeF16 && !f.shaderF16) || (consts.SUBGROUPS && !f.subgroups)) continue;
      for (const paged of [false, true]) {
        const c = { ...consts, PAGED: paged, POOLS: paged ? 4 : 1 };
        const { kernel, enables } = decodeKernelVariant({ nativeF16, subgroups: c.SUBGROUPS });
        const module = rt.device.createShaderModule({ code: pipelineWgsl(kernel, c, { enables }, decodeKernelCounts(c)) });
        const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
        expect(errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), JSON.stringify(c)).toEqual([]);
        compiled++;
      }
    }
    expect(compiled).toBeGreaterThan(100);
  });
});
