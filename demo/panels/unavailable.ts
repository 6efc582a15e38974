/**
 * Panels whose data the library does not produce yet. They say so plainly and
 * draw nothing: no placeholder curves, no invented numbers.
 */
import { $, el } from '../state.js';

const PANELS: Array<[string, string, string]> = [
  [
    'panel-npu',
    'NPU timeline: not available yet',
    'This panel is not wired to the library’s NPU schedule simulator yet, so there is no timeline to show. It shows no data rather than made-up data.',
  ],
  [
    'panel-volta',
    'Volta fragment map: not available yet',
    'This panel is not wired to the library’s Volta (mma.sync) fragment layouts yet, so there is no fragment map to draw. It shows no data rather than made-up data.',
  ],
];

export function initUnavailable(): void {
  for (const [id, title, why] of PANELS) {
    const panel = $(id);
    panel.dataset.state = 'unavailable';
    panel.querySelector('.unavailable')!.replaceChildren(el('strong', {}, title), why);
  }
}
