// The pipeline cache unrolls `//#for` loops on compile, and the trip counts are part of its key.
import { describe, expect, it } from 'vitest';
import { pipelineWgsl } from '../../src/runtime/pipelineCache.js';
import { emptyBuffer, readback, sharedRuntime } from '../helpers/gpu.js';

// Writes out[i] = i + 1 for i < N, with one statement per i after unrolling.
const kernel = {
  name: 'unrollCountsTest',
  code: [
    '@group(0) @binding(0) var<storage, read_write> out: array<u32>;',
    'const BASE: u32 = 1u;',
    '@compute @workgroup_size(1) fn main() {',
    '  //#for i in N',
    '  out[{i}u] = {i}u + BASE;',
    '  //#endfor',
    '}',
  ].join('\n'),
};

describe('pipeline cache', () => {
  it('compiles the unrolled source', () => {
    const code = pipelineWgsl(kernel, { BASE: 5 }, {}, { N: 2 });
    expect(code).toContain('const BASE: u32 = 5u;');
    expect(code).toContain('  out[0u] = 0u + BASE;\n  out[1u] = 1u + BASE;\n}');
    expect(code).not.toMatch(/#for|\{i\}/);
  });

  it('keys pipelines by their unroll counts: equal counts share one, different counts never do', async () => {
    const rt = await sharedRuntime();
    const before = rt.pipelines.compiledCount;
    const two = await rt.pipelines.get(kernel, 'main', {}, {}, { N: 2 });
    expect(await rt.pipelines.get(kernel, 'main', {}, {}, { N: 2 })).toBe(two);
    const three = await rt.pipelines.get(kernel, 'main', {}, {}, { N: 3 });
    expect(three).not.toBe(two);
    expect(three.key).not.toBe(two.key);
    expect(rt.pipelines.compiledCount - before).toBe(2);

    // Each pipeline writes as many words as its count.
    const out = emptyBuffer(rt.device, 16);
    for (const k of [two, three]) {
      const encoder = rt.device.createCommandEncoder();
      encoder.clearBuffer(out);
      const pass = encoder.beginComputePass();
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, rt.device.createBindGroup({ layout: k.bindGroupLayout, entries: [{ binding: 0, resource: { buffer: out } }] }));
      pass.dispatchWorkgroups(1);
      pass.end();
      rt.device.queue.submit([encoder.finish()]);
      const words = new Uint32Array((await readback(rt.device, out)).buffer);
      expect([...words]).toEqual(k === two ? [1, 2, 0, 0] : [1, 2, 3, 0]);
    }
    out.destroy();
  });

  it('refuses a kernel whose loops name a count that was not given', async () => {
    const rt = await sharedRuntime();
    await expect(rt.pipelines.get(kernel, 'main', {})).rejects.toThrow(/N: no such count \(given: none\)/);
    await expect(rt.pipelines.get(kernel, 'main', {}, {}, { M: 1 })).rejects.toThrow(/N: no such count \(given: M\)/);
  });
});
