import { describe, expect, it } from 'vitest';
import {
  bMaskFromWindows,
  buildMMask,
  classifyBlock,
  countBlocks,
  denseMask,
  denseMaskBytes,
  isMasked,
  keyBlockRange,
  mMaskBytes,
  sequenceConstraints,
  type SequenceMask,
} from '../../src/tiling/mask.js';

const blockSizes: Array<[number, number]> = [
  [16, 16],
  [32, 16],
  [16, 64],
  [64, 64],
  [24, 40],
  [128, 32],
];

const masks: Array<[string, (s: number) => SequenceMask]> = [
  ['causal', (s) => ({ seqQ: s, kvLen: s, causal: true })],
  ['sliding window 100', (s) => ({ seqQ: s, kvLen: s, causal: true, window: 100 })],
  ['sliding window 7, no causal', (s) => ({ seqQ: s, kvLen: s, window: 7 })],
  ['causal, query chunk against a longer cache', (s) => ({ seqQ: Math.ceil(s / 3), kvLen: s, causal: true })],
  ['causal + window + padding', (s) => ({ seqQ: s, kvLen: s - 37, causal: true, window: 300 })],
  ['padding only', (s) => ({ seqQ: s, kvLen: Math.floor(s / 2) + 1 })],
];

describe('tiling-mask: every B-mask from the M-mask equals the dense mask', () => {
  for (const S of [1024, 333]) {
    for (const [name, make] of masks) {
      it(`${name}, S=${S}`, () => {
        const mask = make(S);
        const dense = denseMask(mask, S);
        const cons = sequenceConstraints(mask);
        for (const [bq, bk] of blockSizes) {
          const bMax = Math.max(bq, bk);
          const mMask = buildMMask(bMax);
          for (let q0 = 0; q0 < mask.seqQ; q0 += bq) {
            for (let k0 = 0; k0 < S; k0 += bk) {
              const block = { qStart: q0, rows: Math.min(bq, mask.seqQ - q0), kStart: k0, cols: Math.min(bk, S - k0) };
              const cls = classifyBlock(cons, block, bMax);
              let masked = 0;
              const expected = new Uint8Array(block.rows * block.cols);
              for (let r = 0; r < block.rows; r++)
                for (let c = 0; c < block.cols; c++) {
                  expected[r * block.cols + c] = dense[(q0 + r) * S + k0 + c];
                  masked += expected[r * block.cols + c];
                }
              if (cls.kind === 'empty') expect(masked, `block (${q0},${k0}) ${bq}x${bk}`).toBe(block.rows * block.cols);
              else if (cls.kind === 'full') expect(masked, `block (${q0},${k0}) ${bq}x${bk}`).toBe(0);
              else {
                expect(bMaskFromWindows(mMask, bMax, cls.windows, block.rows, block.cols)).toEqual(expected);
              }
            }
          }
        }
      });
    }
  }
});

describe('tiling-mask: block counts', () => {
  it('causal skipped blocks are exactly those wholly above the diagonal', () => {
    for (const S of [64, 100, 512, 1000, 1024]) {
      for (const [bq, bk] of blockSizes) {
        let above = 0;
        for (let q0 = 0; q0 < S; q0 += bq)
          for (let k0 = 0; k0 < S; k0 += bk) {
            // wholly above the diagonal: even the block's last row cannot see its first key
            const lastRow = Math.min(q0 + bq, S) - 1;
            if (k0 > lastRow) above++;
          }
        expect(countBlocks({ seqQ: S, kvLen: S, causal: true }, S, bq, bk).empty, `S=${S} ${bq}x${bk}`).toBe(above);
      }
    }
  });

  it('the kernel loop range visits exactly the non-empty key blocks', () => {
    for (const [, make] of masks) {
      for (const S of [257, 1024]) {
        const mask = make(S);
        const cons = sequenceConstraints(mask);
        for (const [bq, bk] of blockSizes) {
          const bMax = Math.max(bq, bk);
          for (let q0 = 0; q0 < mask.seqQ; q0 += bq) {
            const rows = Math.min(bq, mask.seqQ - q0);
            const [first, end] = keyBlockRange(mask, q0, rows, bk);
            for (let kb = 0; kb * bk < S; kb++) {
              const kind = classifyBlock(cons, { qStart: q0, rows, kStart: kb * bk, cols: Math.min(bk, S - kb * bk) }, bMax).kind;
              expect(kb >= first && kb < end, `q0=${q0} kb=${kb} ${bq}x${bk}`).toBe(kind !== 'empty');
            }
          }
        }
      }
    }
  });

  it('a non-causal, unpadded mask has only full blocks', () => {
    expect(countBlocks({ seqQ: 300, kvLen: 300 }, 300, 32, 32)).toEqual({ empty: 0, full: 100, partial: 0 });
  });
});

describe('tiling-mask: size', () => {
  it('stays at or below 256 KiB where a dense fp16 mask at S = 64K takes 8 GiB', () => {
    expect(denseMaskBytes(65536, 65536, 2)).toBe(8 * 2 ** 30);
    expect(mMaskBytes(128)).toBeLessThanOrEqual(256 * 1024);
  });

  it('M-mask is bMax × 3·bMax with M[r][x] = (x − r ≥ bMax)', () => {
    const m = buildMMask(4);
    expect(m.length).toBe(48);
    expect(m[0 * 12 + 3]).toBe(0);
    expect(m[0 * 12 + 4]).toBe(1);
    expect(m[3 * 12 + 6]).toBe(0);
    expect(m[3 * 12 + 7]).toBe(1);
  });

  it('isMasked follows the definitions', () => {
    const m = { seqQ: 4, kvLen: 10, causal: true, window: 3 };
    // query 0 sits at key position 6: sees keys 4, 5, 6
    expect([3, 4, 5, 6, 7].map((j) => isMasked(m, 0, j))).toEqual([true, false, false, false, true]);
  });
});
