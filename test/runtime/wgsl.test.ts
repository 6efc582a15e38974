// The typed WGSL generator and the reflection it relies on.
import { describe, expect, it } from 'vitest';
import { flashAttentionPrefillKernel, flashAttentionPrefillMatrixKernel, vectorKernelConsts } from '../../src/attention/flashAttentionPrefill.js';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { declarationsOnly, packStruct, reflectKernel, specializeWgsl, structBytes } from '../../src/runtime/wgsl.js';
import { resolveIncludes } from '../../src/runtime/wgslIncludes.js';
import { checkTileConfig, TILE_CANDIDATES, vectorKernelCounts, type TileConfig, type TileLimits } from '../../src/tiling/tileConfig.js';

// The vector kernel is WGSL once its //#for loops are unrolled (for the default tile at D = 64), its consts left at their defaults.
const prefill = pipelineWgsl(flashAttentionPrefillKernel, {}, {}, vectorKernelCounts(TILE_CANDIDATES[0], 64));
const matrix = resolveIncludes(flashAttentionPrefillMatrixKernel.code);

describe('WGSL specialization', () => {
  it('rewrites consts and aliases, and adds enables in front', () => {
    const out = specializeWgsl(prefill, { HEAD_DIM: 80, KV_STAGES: 1 }, { aliases: { Store4: 'vec4<f16>' }, enables: ['f16'] });
    expect(out.startsWith('enable f16;\n')).toBe(true);
    expect(out).toMatch(/^const HEAD_DIM: u32 = 80u;$/m);
    expect(out).toMatch(/^const KV_STAGES: u32 = 1u;$/m);
    expect(out).toMatch(/^alias Store4 = vec4<f16>;$/m);
    expect(out).toMatch(/^alias Tile4 = vec4<f32>;$/m);
  });

  it('refuses names the shader does not declare, and bad values', () => {
    expect(() => specializeWgsl(prefill, { NOT_THERE: 1 })).toThrow(/NOT_THERE/);
    expect(() => specializeWgsl(prefill, {}, { aliases: { Nope: 'f32' } })).toThrow(/Nope/);
    expect(() => specializeWgsl(prefill, { HEAD_DIM: -1 })).toThrow(/HEAD_DIM/);
    expect(() => specializeWgsl(prefill, { HEAD_DIM: 1.5 })).toThrow(/HEAD_DIM/);
    expect(() => specializeWgsl(prefill, {}, { aliases: { Store4: 'vec4<f32>; var x' } })).toThrow(/not a type/);
  });
});

describe('includes', () => {
  it('splice shared snippets in, once per kernel, and refuse unknown names', () => {
    expect(flashAttentionPrefillKernel.code).toMatch(/^\/\/#include tilingMask$/m);
    expect(prefill).not.toMatch(/#include/);
    expect(prefill.match(/fn classifyEdge\(/g)).toHaveLength(1);
    expect(matrix.match(/struct Params \{/g)).toHaveLength(1);
    expect(() => resolveIncludes('//#include nothingHere')).toThrow(/nothingHere/);
  });
});

describe('reflection', () => {
  it('reads the bindings and the params layout of the vector kernel', () => {
    const r = reflectKernel(prefill);
    const b = r.bindings.main;
    expect(b.map((x) => [x.name, x.binding, x.kind])).toEqual([
      ['params', 0, 'read-only-storage'],
      ['q', 1, 'read-only-storage'],
      ['k', 2, 'read-only-storage'],
      ['v', 3, 'read-only-storage'],
      ['o', 4, 'storage'],
      ['mMask', 5, 'read-only-storage'],
      ['pageTable', 6, 'read-only-storage'],
      ['status', 7, 'storage'],
    ]);
    const layout = b[0].struct!;
    expect(layout.members[0]).toMatchObject({ name: 'seqQ', offset: 0, type: 'u32' });
    const kvLen = layout.members.find((m) => m.name === 'kvLen')!;
    expect(kvLen).toMatchObject({ type: 'array', elementType: 'u32', stride: 4 });
    expect(structBytes(layout, 3)).toBe(kvLen.offset + 12);
  });

  it('reflects the subgroup-matrix kernel from its declarations', () => {
    const src = specializeWgsl(matrix, {}, { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] });
    const decl = declarationsOnly(src);
    expect(decl).not.toMatch(/subgroupMatrix/);
    expect(decl).toMatch(/@group\(0\) @binding\(4\) var<storage, read_write> o: array<vec4<f16>>;/);
    const r = reflectKernel(src);
    expect(r.bindings.main.map((x) => x.name)).toEqual(['params', 'q', 'k', 'v', 'o', 'mMask', 'pageTable']);
    // Same params layout as the vector kernel: one pool format for both tiers.
    expect(r.bindings.main[0].struct!.members.map((m) => [m.name, m.offset])).toEqual(reflectKernel(prefill).bindings.main[0].struct!.members.map((m) => [m.name, m.offset]));
  });

  it('packs values at the reflected offsets and rejects unknown or missing members', () => {
    const layout = reflectKernel(prefill).bindings.main[0].struct!;
    const values: Record<string, number | number[]> = {};
    for (const m of layout.members) values[m.name] = m.type === 'array' ? [7, 9] : 1;
    values.scaleLog2 = 0.5;
    const view = new DataView(new ArrayBuffer(structBytes(layout, 2)));
    packStruct(layout, values, view);
    const at = (n: string) => layout.members.find((m) => m.name === n)!.offset;
    expect(view.getFloat32(at('scaleLog2'), true)).toBe(0.5);
    expect(view.getUint32(at('kvLen') + 4, true)).toBe(9);
    expect(() => packStruct(layout, { ...values, extra: 1 }, view)).toThrow(/extra/);
    const { seqQ: _drop, ...missing } = values;
    expect(() => packStruct(layout, missing, view)).toThrow(/seqQ/);
  });
});

describe('the unrolled vector kernel', () => {
  // Function-scope arrays of the kernel: after unrolling none may be indexed by a loop counter.
  const REGISTER_ARRAYS = /\b(m|l|acc|s|kv|pv|pRow|mx|mRow|qkNext|vNext|col4|part|total)\[[^\]]*\b(i|j|t|u|i4|c|kk)\b/;
  const tiles: TileConfig[] = [
    TILE_CANDIDATES[0],
    TILE_CANDIDATES[6],
    TILE_CANDIDATES[TILE_CANDIDATES.length - 1],
    // Rows that fill two row vectors, the second partly.
    { blockQ: 30, blockKV: 20, rowsPerThread: 5, threadsPerRow: 4, chunk: 4, kvStages: 2 },
  ];
  // Limits no tile above reaches: the geometry (its M-mask block) is all that is needed of the check.
  const unlimited: TileLimits = { maxComputeWorkgroupStorageSize: 1 << 20, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024, registerBudget: Infinity };

  it('has no loop directives or placeholders left, only constant register indices, and reflects', () => {
    for (const tile of tiles)
      for (const headDim of [64, 80, 128]) {
        // What the pipeline cache compiles for the operator's consts and counts.
        const counts = vectorKernelCounts(tile, headDim);
        const consts = vectorKernelConsts(headDim, tile, checkTileConfig(tile, headDim, unlimited, 2).maskBlock, undefined, true);
        const code = pipelineWgsl(flashAttentionPrefillKernel, consts, { aliases: { Tile4: 'vec4<f16>' }, enables: ['f16'] }, counts);
        expect(code).not.toMatch(/\/\/#(for|endfor)|\{[A-Za-z_]\w*\}/);
        const main = code.slice(code.indexOf('fn main(')).replace(/\/\/.*$/gm, '');
        expect(main).not.toMatch(REGISTER_ARRAYS);
        // One Q vec4 per row per head-dim step of a slice, and one V vec4 per output column per key of a slice.
        expect(main.match(/let qv\d+ = /g)).toHaveLength(counts.ROWS_PER_THREAD * counts.CHUNK4);
        expect(main.match(/let vx\d+ = /g)).toHaveLength(counts.DIMS4_PER_THREAD * counts.CHUNK);
        const r = reflectKernel(code);
        expect(r.bindings.main.map((b) => b.name)).toEqual(['params', 'q', 'k', 'v', 'o', 'mMask', 'pageTable', 'status']);
      }
    // The raw file keeps the loops.
    expect(flashAttentionPrefillKernel.code).toMatch(/^\s*\/\/#for i in ROWS_PER_THREAD$/m);
  });
});
