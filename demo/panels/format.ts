/** Number formats of the NPU and Volta panels, DOM-free so the e2e test can format the library's numbers the same way. */

/** Microseconds, one decimal below a millisecond. */
export function fmtUs(seconds: number): string {
  const us = seconds * 1e6;
  return us >= 1000 ? us.toFixed(0) : us.toFixed(1);
}

/** A fraction as a percentage with one decimal. */
export function fmtPct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}
