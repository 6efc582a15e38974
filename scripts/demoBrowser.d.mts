// Types of demoBrowser.mjs, for the TypeScript e2e tests.
import type { Browser, Page } from 'puppeteer-core';

export const repoRoot: string;
export const CHROMIUM_ARGS: string[];
export function buildDemo(options?: { outDir?: string; quiet?: boolean }): Promise<string>;
export function serveDemo(options?: { outDir?: string; port?: number }): Promise<{ url: string; close: () => Promise<void> }>;
export function chromiumPath(): Promise<string>;
export function launchChromium(options?: {
  extraArgs?: string[];
  headless?: boolean;
  viewport?: { width: number; height: number };
}): Promise<{ browser: Browser; close: () => Promise<void>; executablePath: string }>;
export function demoUrl(base: string, params?: Record<string, string | number | boolean | undefined | null>): string;
export function waitForDemo(page: Page, predicate: () => boolean, options?: { timeout?: number; polling?: number }): Promise<void>;
export function forwardConsole(page: Page, log?: (line: string) => void): void;
export function decodePng(buf: Uint8Array): Promise<{ width: number; height: number; rgba: Uint8Array }>;
