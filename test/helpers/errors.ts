/** Assertions on the library's typed errors, shared by the bad-input tests. */
import { expect } from 'vitest';
import type { FastAttentionError } from '../../src/errors.js';

/**
 * Await `p` (or call it) and assert it fails with `type`, naming `field` (exactly,
 * or matching a pattern) and saying what is allowed; returns the error.
 */
export async function rejects(p: Promise<unknown> | (() => unknown), type: new (...a: never[]) => FastAttentionError, field: string | RegExp): Promise<FastAttentionError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').toBeInstanceOf(type);
  const e = err as FastAttentionError;
  if (typeof field === 'string') expect(e.field).toBe(field);
  else expect(e.field).toMatch(field);
  expect(e.message).toContain('allowed:');
  return e;
}
