// Loop unrolling of WGSL sources (pure text; no GPU).
import { describe, expect, it } from 'vitest';
import { flashAttentionPrefillMatrixKernel } from '../../src/attention/flashAttentionPrefill.js';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { reflectKernel } from '../../src/runtime/wgsl.js';
import { unrollWgsl } from '../../src/runtime/wgslUnroll.js';
import { matrixKernelCounts } from '../../src/tiling/matrixTile.js';

describe('unrollWgsl', () => {
  it('repeats a body once per value, substituting the variable, and nests', () => {
    const src = ['a;', '//#for t in T', '  x{t} = y{t};', '  //#for n in N', '  z{t}{n} += {n}u * {t}u;', '  //#endfor', '//#endfor', 'b{t};'].join('\n');
    expect(unrollWgsl(src, { T: 2, N: 3 }).split('\n')).toEqual([
      'a;',
      '  x0 = y0;',
      '  z00 += 0u * 0u;',
      '  z01 += 1u * 0u;',
      '  z02 += 2u * 0u;',
      '  x1 = y1;',
      '  z10 += 0u * 1u;',
      '  z11 += 1u * 1u;',
      '  z12 += 2u * 1u;',
      // Outside a loop {t} is left alone.
      'b{t};',
    ]);
  });

  it('drops a body of zero trips and leaves sources without loops unchanged', () => {
    expect(unrollWgsl('a\n//#for i in Z\nx{i}\n//#endfor\nb', { Z: 0 })).toBe('a\nb');
    const plain = 'fn f() { let x = array<u32, 2>(1u, 2u); }';
    expect(unrollWgsl(plain, {})).toBe(plain);
  });

  it('names what is wrong with a malformed loop', () => {
    expect(() => unrollWgsl('//#for i in MISSING\n//#endfor', { N: 1 })).toThrow(/MISSING.*given: N/);
    expect(() => unrollWgsl('//#for i in N\nx', { N: 1 })).toThrow(/not closed/);
    expect(() => unrollWgsl('x\n//#endfor', {})).toThrow(/line 2: \/\/#endfor without/);
    expect(() => unrollWgsl('//#for i in N\n//#for i in N\n//#endfor\n//#endfor', { N: 2 })).toThrow(/shadows/);
    expect(() => unrollWgsl('//#for i in N\n//#endfor', { N: 1.5 })).toThrow(/N = 1.5/);
  });
});

describe('the unrolled subgroup-matrix kernel', () => {
  it('has no loop directives or placeholders left, and one matrix per tile', () => {
    for (const [headDim, subgroups, blockKV] of [[128, 8, 32], [64, 4, 32], [80, 2, 64], [256, 1, 16]]) {
      const tile = { blockQ: 16 * subgroups, blockKV, subgroups };
      const counts = matrixKernelCounts(tile, headDim);
      const consts = { HEAD_DIM: headDim, BLOCK_KV: blockKV, SUBGROUPS: subgroups };
      const code = pipelineWgsl(flashAttentionPrefillMatrixKernel, consts, { enables: ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'] }, counts);
      expect(code).not.toMatch(/\/\/#(for|endfor)|\{[a-z]\}/);
      expect(code.match(/var om\d+ = /g)).toHaveLength(counts.D16);
      expect(code.match(/var qm\d+: /g)).toHaveLength(counts.D16);
      // Every Q round's words are loaded before the first is staged.
      expect(code.match(/let qw\d+_\d+ = qWord\(/g)).toHaveLength(counts.Q_ROUNDS * counts.Q_WORDS);
      const firstQStore = code.indexOf('storeWord(false, e / D8, e % D8, qw0_0)');
      expect(firstQStore).toBeGreaterThan(0);
      expect(code.lastIndexOf('let qw', firstQStore)).toBe(code.lastIndexOf('let qw'));
      expect(code.match(/var st\d+ = /g)).toHaveLength(counts.KV16);
      // S = Q·Kᵀ and O += P·V each take D16 × KV16 matrix steps.
      expect(code.match(/subgroupMatrixMultiplyAccumulate/g)).toHaveLength(2 * counts.D16 * counts.KV16);
      expect(reflectKernel(code).bindings.main.map((b) => b.name)).toEqual(['params', 'q', 'k', 'v', 'o', 'mMask', 'pageTable']);
    }
    expect(flashAttentionPrefillMatrixKernel.code).toMatch(/^\s*\/\/#for t in D16$/m);
  });

  it('counts the staged words per invocation with a ragged last round', () => {
    // 32 keys × 128 dims = 512 words over 256 invocations; 16 × 80 = 160 words over 64.
    // Q: 128 rows in 4 rounds of 32 (2 words each per invocation); 32 rows in 2 rounds of 16 (160 words over 64: 3).
    expect(matrixKernelCounts({ blockQ: 128, blockKV: 32, subgroups: 8 }, 128)).toEqual({ D16: 8, KV16: 2, HALF_KV: 16, WORDS_PER_THREAD: 2, Q_ROUNDS: 4, Q_WORDS: 2 });
    expect(matrixKernelCounts({ blockQ: 32, blockKV: 16, subgroups: 2 }, 80)).toEqual({ D16: 5, KV16: 1, HALF_KV: 8, WORDS_PER_THREAD: 3, Q_ROUNDS: 2, Q_WORDS: 3 });
    // A last round past the block (128 rows in rounds of 48) is still a round.
    expect(matrixKernelCounts({ blockQ: 128, blockKV: 48, subgroups: 8 }, 64).Q_ROUNDS).toBe(3);
  });
});
