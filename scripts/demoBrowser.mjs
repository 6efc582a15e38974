// Shared by scripts/benchBrowser.mjs and test/e2e: build the demo page with
// Vite, serve it with `vite preview` on 127.0.0.1, and drive it in headless
// Chromium (the one inside the npm package @sparticuz/chromium, or CHROME_PATH)
// with WebGPU enabled. On a machine without a GPU, Chromium's WebGPU runs on
// its bundled SwiftShader (Vulkan on the CPU).
import { rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const configFile = resolve(repoRoot, 'vite.config.ts');

/** Chromium flags: WebGPU on, everything that talks to the network or the user off. */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--no-sandbox',
  '--no-zygote',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-default-apps',
  '--disable-sync',
  '--disable-extensions',
  '--no-first-run',
  '--no-default-browser-check',
  '--mute-audio',
  '--font-render-hinting=none',
];

/** Build demo/ into `outDir` (absolute, or relative to demo/); returns the absolute folder. */
export async function buildDemo({ outDir = 'dist', quiet = true } = {}) {
  const { build } = await import('vite');
  const abs = resolve(repoRoot, 'demo', outDir);
  await build({ configFile, logLevel: quiet ? 'warn' : 'info', build: { outDir: abs, emptyOutDir: true } });
  return abs;
}

/** Serve a built demo on 127.0.0.1 (a free port unless given); returns { url, close }. */
export async function serveDemo({ outDir = 'dist', port = 0 } = {}) {
  const { preview } = await import('vite');
  const abs = resolve(repoRoot, 'demo', outDir);
  const server = await preview({
    configFile,
    logLevel: 'warn',
    build: { outDir: abs },
    preview: { host: '127.0.0.1', port, strictPort: port !== 0, open: false },
  });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('vite preview did not report a TCP address');
  const url = `http://127.0.0.1:${address.port}/`;
  return {
    url,
    close: () => new Promise((res) => server.httpServer.close(() => res(undefined))),
  };
}

/** The Chromium to drive: CHROME_PATH, or the headless Chromium unpacked from @sparticuz/chromium. */
export async function chromiumPath() {
  if (process.env.CHROME_PATH) return process.env.CHROME_PATH;
  const { default: chromium } = await import('@sparticuz/chromium');
  return chromium.executablePath();
}

/**
 * The environment Chromium starts with: the caller's, minus the SwiftShader
 * Vulkan driver selection the Node tests set for dawn.node (Chromium brings its own).
 */
function chromiumEnv() {
  const env = { ...process.env };
  delete env.VK_ICD_FILENAMES;
  if (env.LD_LIBRARY_PATH) {
    const kept = env.LD_LIBRARY_PATH.split(':').filter((p) => p && !p.includes('fastattention-swiftshader'));
    if (kept.length) env.LD_LIBRARY_PATH = kept.join(':');
    else delete env.LD_LIBRARY_PATH;
  }
  return env;
}

/** Launch headless Chromium with WebGPU; `extraArgs` are appended (e.g. --use-angle=vulkan on a GPU box). */
export async function launchChromium({ extraArgs = [], headless = true, viewport = { width: 1400, height: 1000 } } = {}) {
  const { default: puppeteer } = await import('puppeteer-core');
  const executablePath = await chromiumPath();
  const userDataDir = resolve(repoRoot, 'node_modules', '.cache', 'fastattention-chromium-profile', String(process.pid));
  const browser = await puppeteer.launch({
    executablePath,
    headless: headless ? 'shell' : false,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    env: chromiumEnv(),
    userDataDir,
    defaultViewport: viewport,
    protocolTimeout: 600_000,
  });
  const close = async () => {
    await browser.close();
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { browser, close, executablePath };
}

/** URL of the demo with the given query parameters. */
export function demoUrl(base, params = {}) {
  const u = new URL(base);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
  return u.toString();
}

/** Wait until `window.fastattnDemo` satisfies `predicate` (a function run in the page). */
export async function waitForDemo(page, predicate, { timeout = 300_000, polling = 250 } = {}) {
  await page.waitForFunction(predicate, { timeout, polling });
}

/** Forward the page's console and errors to `log` (a function of one string). */
export function forwardConsole(page, log = (s) => console.error(s)) {
  page.on('console', (m) => log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => log(`[page uncaught] ${e.message}`));
}

/** Decode a PNG (8-bit, non-interlaced, RGB/RGBA/gray) into { width, height, rgba }. */
export async function decodePng(bytes) {
  const { inflateSync } = await import('node:zlib');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sig = '89504e470d0a1a0a';
  if (buf.subarray(0, 8).toString('hex') !== sig) throw new Error('not a PNG');
  let pos = 8;
  let width = 0;
  let height = 0;
  let colorType = 0;
  let bitDepth = 0;
  let interlace = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      bitDepth = data[8];
      colorType = data[9];
      interlace = data[12];
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    pos += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  if (bitDepth !== 8 || !channels || interlace !== 0) throw new Error(`unsupported PNG (bit depth ${bitDepth}, color type ${colorType}, interlace ${interlace})`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      let v = line[x];
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + x] = v & 255;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = i * channels;
    if (channels >= 3) {
      rgba[4 * i] = px[s];
      rgba[4 * i + 1] = px[s + 1];
      rgba[4 * i + 2] = px[s + 2];
    } else rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = px[s];
    rgba[4 * i + 3] = channels === 4 ? px[s + 3] : channels === 2 ? px[s + 1] : 255;
  }
  return { width, height, rgba };
}
