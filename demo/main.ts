/**
 * The demo page: detects WebGPU, shows the adapter, runs the library's
 * self-check and benchmark suite, draws the tiling-mask, the NPU emulator's
 * schedule timeline and the Volta fragment layouts. Each panel lives
 * in panels/; `window.fastattnDemo` (state.ts) is what scripts read.
 *
 * URL parameters: the controls (seq, dim, heads, batch, causal, dtype, tile,
 * samples, minSampleMs), check=N self-check cases (0: skip the automatic one), autorun=check|bench|none
 * (default check), maskSq/maskSk/maskKvLen/maskBq/maskBkv/maskWindow/maskCausal,
 * npuSeq/npuHeads/npuDim/npuSchedule/npuCausal/npuMask, and voltaFragment/voltaColor/voltaDim/voltaTile.
 */
import { FastAttentionRuntime } from '../src/runtime/runtime.js';
import { $, errorText, hooks, params } from './state.js';
import { renderAdapter } from './panels/adapter.js';
import { controlsReady, initControls } from './panels/controls.js';
import { initSelfCheck } from './panels/selfCheck.js';
import { initBench } from './panels/bench.js';
import { initTilingMask } from './panels/tilingMask.js';
import { initNpuTimeline } from './panels/npuTimeline.js';
import { initVoltaFragments } from './panels/voltaFragments.js';

let rt: FastAttentionRuntime | null = null;
const getRt = () => rt;

function setWebGpu(state: typeof hooks.webgpu, message: string): void {
  hooks.webgpu = state;
  hooks.webgpuMessage = message;
  const s = $('webgpu-status');
  s.dataset.state = state;
  s.textContent = message;
}

async function main(): Promise<void> {
  // The NPU and Volta panels need no GPU: they start first and work without WebGPU.
  initNpuTimeline();
  initVoltaFragments();
  initTilingMask(getRt);
  const bench = initBench(getRt);
  initControls(getRt, () => undefined);
  const runCheck = initSelfCheck(getRt);
  hooks.runSelfCheck = runCheck;
  hooks.runBench = bench.run;

  if (!('gpu' in navigator) || !navigator.gpu) {
    setWebGpu(
      'missing',
      'WebGPU is not available in this browser (navigator.gpu is missing). Use a recent Chrome or Edge on a machine with a GPU (or Chromium with --enable-unsafe-webgpu), served from https or localhost. The tiling-mask, NPU timeline and Volta fragment views below still work: they need no GPU.',
    );
    $('adapter-body').textContent = 'No WebGPU: nothing to show.';
    return;
  }
  try {
    rt = await FastAttentionRuntime.create();
  } catch (e) {
    setWebGpu('error', `WebGPU is present but no device could be created: ${errorText(e)}. The tiling-mask, NPU timeline and Volta fragment views below still work.`);
    $('adapter-body').textContent = 'No adapter: nothing to show.';
    return;
  }
  hooks.capabilities = rt.capabilities;
  hooks.tileLimits = rt.tileLimits;
  hooks.tiers = rt.tiers;
  const a = rt.capabilities.adapter;
  setWebGpu('available', `WebGPU available: ${[a.vendor, a.architecture, a.device].filter(Boolean).join(' ')}${a.isSoftware ? ' (software adapter: correct, but slow; timings are CPU emulation)' : ''}`);
  rt.device.lost.then((info) => {
    if (info.reason !== 'destroyed') setWebGpu('error', `The GPU device was lost (${info.reason}: ${info.message}). Reload the page.`);
  });
  renderAdapter(rt);
  controlsReady(rt);
  bench.ready(rt);
  ($('btn-check') as HTMLButtonElement).disabled = false;
  ($('btn-bench') as HTMLButtonElement).disabled = false;

  const autorun = params.get('autorun') ?? 'check';
  if ((autorun === 'check' || autorun === 'bench') && params.get('check') !== '0') await runCheck();
  if (autorun === 'bench') await bench.run();
}

main().catch((e) => {
  setWebGpu('error', `The page failed to start: ${errorText(e)}`);
  console.error(e);
});
