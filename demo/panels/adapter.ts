/** The adapter panel: who the adapter is, which features the runtime got, and the limits tiles are checked against. */
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { SUPPORTED_HEAD_DIMS } from '../../src/attention/problem.js';
import { chooseTileConfig } from '../../src/tiling/tileConfig.js';
import { $, el, errorText, fmtBytes } from '../state.js';

function kv(rows: Array<[string, string]>): HTMLDListElement {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of rows) dl.append(el('dt', {}, k), el('dd', {}, v));
  return dl;
}

export function renderAdapter(rt: FastAttentionRuntime): void {
  const c = rt.capabilities;
  const a = c.adapter;
  const body = $('adapter-body');
  body.classList.remove('muted');
  const feats = el('div', { id: 'adapter-features' });
  const names: Array<[keyof typeof c.features, string]> = [
    ['shaderF16', 'shader-f16'],
    ['subgroups', 'subgroups'],
    ['subgroupMatrix', 'subgroup-matrix'],
    ['timestampQuery', 'timestamp-query'],
  ];
  for (const [k, label] of names) feats.append(el('span', { class: `feat ${c.features[k] ? 'yes' : 'no'}`, 'data-feature': label }, label));

  const L = c.limits;
  const tiles = SUPPORTED_HEAD_DIMS.map((d) => {
    try {
      const t = chooseTileConfig(d, rt.tileLimits);
      return `D${d}: ${t.blockQ}×${t.blockKV} ${t.rowsPerThread}×${t.threadsPerRow} c${t.chunk} s${t.kvStages}`;
    } catch (e) {
      return `D${d}: none fits (${errorText(e)})`;
    }
  });
  body.replaceChildren(
    kv([
      ['vendor', a.vendor || '—'],
      ['architecture', a.architecture || '—'],
      ['device', a.device || '—'],
      ['description', a.description || '—'],
      ['kind', a.isSoftware ? 'software adapter (CPU emulation: timings are not GPU timings)' : 'hardware'],
      ['subgroup size', c.subgroupSize ? `${c.subgroupSize.min}–${c.subgroupSize.max}` : 'not reported'],
      ['subgroup-matrix configs', c.subgroupMatrixConfigs.length ? c.subgroupMatrixConfigs.map((m) => `${m.componentType}→${m.resultComponentType} ${m.M}×${m.N}×${m.K}`).join(', ') : 'none'],
    ]),
    el('h3', { class: 'small' }, 'Features'),
    feats,
    el('h3', { class: 'small' }, 'Limits'),
    kv([
      ['maxComputeWorkgroupStorageSize', `${L.maxComputeWorkgroupStorageSize} (${fmtBytes(L.maxComputeWorkgroupStorageSize)})`],
      ['maxComputeInvocationsPerWorkgroup', String(L.maxComputeInvocationsPerWorkgroup)],
      ['maxComputeWorkgroupSizeX', String(L.maxComputeWorkgroupSizeX)],
      ['maxComputeWorkgroupsPerDimension', String(L.maxComputeWorkgroupsPerDimension)],
      ['maxStorageBufferBindingSize', `${L.maxStorageBufferBindingSize} (${fmtBytes(L.maxStorageBufferBindingSize)})`],
      ['maxBufferSize', `${L.maxBufferSize} (${fmtBytes(L.maxBufferSize)})`],
      ['maxStorageBuffersPerShaderStage', String(L.maxStorageBuffersPerShaderStage)],
      ['minStorageBufferOffsetAlignment', String(L.minStorageBufferOffsetAlignment)],
      ['register budget (tiles)', String(rt.registerBudget)],
    ]),
    el('h3', { class: 'small' }, 'Default tiles (Br×Bc TM×C chunk stages)'),
    el('div', { class: 'small', id: 'adapter-tiles' }, tiles.join(' · ')),
  );
}
