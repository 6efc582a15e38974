/**
 * The correctness panel: the library's self-check (fused and standard vs the
 * float64 CPU reference) for every kernel tier this device runs: the f32 tier
 * on f32 storage, the f16 and subgroup-matrix tiers on f16 storage (their
 * inputs are rounded to f16, so they are checked at the f16 tolerance).
 */
import type { AttentionDType } from '../../src/attention/problem.js';
import type { KernelTier } from '../../src/attention/tiers.js';
import { selfCheck } from '../../src/bench/selfCheck.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import { $, el, errorText, exclusive, hooks, input, onBusy, params, type DemoSelfCheckReport } from '../state.js';

export function initSelfCheck(getRt: () => FastAttentionRuntime | null): () => Promise<void> {
  const count = params.get('check');
  if (count !== null && count !== '0') input('check-count').value = count;
  const button = $('btn-check') as HTMLButtonElement;
  const status = $('selfcheck-status');
  const tbody = $('selfcheck-table').querySelector('tbody')!;
  const setState = (state: typeof hooks.selfCheck.state, text: string) => {
    hooks.selfCheck.state = state;
    status.dataset.state = state;
    status.textContent = text;
  };

  const run = () =>
    exclusive(async () => {
      const rt = getRt();
      if (!rt) return;
      const n = Number(input('check-count').value);
      if (!Number.isInteger(n) || n < 1 || n > 64) {
        input('check-count').setAttribute('aria-invalid', 'true');
        setState('error', `cases must be an integer in [1, 64], got ${input('check-count').value}`);
        return;
      }
      input('check-count').removeAttribute('aria-invalid');
      tbody.replaceChildren();
      hooks.selfCheck.report = null;
      hooks.selfCheck.error = null;
      const plan: Array<[KernelTier, AttentionDType]> = rt.tiers.filter((t) => t.available).map((t) => [t.tier, t.tier === 'f32' ? 'f32' : 'f16']);
      const total = 2 * n * plan.length;
      const report: DemoSelfCheckReport = { passed: true, runs: [], cases: [] };
      setState('running', `running 0/${total}…`);
      const t0 = performance.now();
      try {
        for (const [tier, dtype] of plan) {
          const r = await selfCheck(rt, {
            count: n,
            dtype,
            tier,
            onCase: (c) => {
              tbody.append(
                el(
                  'tr',
                  { 'data-passed': String(c.passed) },
                  el('td', {}, c.variant),
                  el('td', {}, c.label),
                  el('td', { class: 'num' }, c.maxAbsError.toExponential(2)),
                  el('td', { class: c.passed ? 'ok' : 'bad' }, c.passed ? 'ok' : 'FAIL'),
                ),
              );
              status.textContent = `running ${tbody.rows.length}/${total}…`;
            },
          });
          report.runs.push({ tier, dtype, tolerance: r.tolerance, passed: r.passed, cases: r.cases.length });
          report.cases.push(...r.cases.map((c) => ({ ...c, tier, dtype, tolerance: r.tolerance })));
          report.passed &&= r.passed;
        }
        hooks.selfCheck.report = report;
        const failed = report.cases.filter((c) => !c.passed).length;
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        const within = report.runs.map((r) => `${r.tier} tier ≤ ${r.tolerance}`).join(', ');
        setState(report.passed ? 'passed' : 'failed', report.passed ? `passed: ${report.cases.length} cases (${within}; ${secs} s)` : `FAILED: ${failed} of ${report.cases.length} cases`);
      } catch (e) {
        hooks.selfCheck.error = errorText(e);
        hooks.errors.push(hooks.selfCheck.error);
        setState('error', hooks.selfCheck.error);
      }
    });

  button.addEventListener('click', () => void run());
  onBusy((busy) => (button.disabled = busy || !getRt()));
  return run;
}
