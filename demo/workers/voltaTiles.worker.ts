/**
 * The bank-conflict part of `voltaDemoData` (src/volta/demoData.ts): planning
 * the Q, K and V tiles runs the swizzle search, which takes about a second per
 * head dimension, so it runs here, off the page's thread.
 */
import { voltaDemoData } from '../../src/volta/demoData.js';
import type { VoltaTilesRequest, VoltaTilesResponse } from './protocol.js';

self.onmessage = (ev: MessageEvent<VoltaTilesRequest>) => {
  const req = ev.data;
  const t0 = performance.now();
  let res: VoltaTilesResponse;
  try {
    const { tiles } = voltaDemoData({ headDims: [req.headDim], br: req.br, bc: req.bc, maxSteps: req.maxSteps });
    res = { id: req.id, ok: true, tiles, ms: performance.now() - t0 };
  } catch (e) {
    res = { id: req.id, ok: false, error: { name: e instanceof Error ? e.name : 'Error', message: e instanceof Error ? e.message : String(e) }, ms: performance.now() - t0 };
  }
  self.postMessage(res);
};
