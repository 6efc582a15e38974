/**
 * The tiling-mask view: for a sequence and a block size, the grid of
 * (query block, key block) pairs as the kernel classifies them (empty: skipped;
 * full: no mask; partial: reads a window of the M-mask), the M-mask itself,
 * the B-mask window a clicked block reads, and the bytes a dense mask would
 * have needed. Everything comes from the library's own mask functions; this
 * panel needs no GPU and works where WebGPU is missing.
 */
import { normalizeKvLengths, normalizeProblem } from '../../src/attention/problem.js';
import type { FastAttentionRuntime } from '../../src/runtime/runtime.js';
import {
  bMaskFromWindows,
  buildMMask,
  classifyBlock,
  denseMaskBytes,
  isMasked,
  mMaskBytes,
  mMaskWidth,
  sequenceConstraints,
  type BlockCounts,
  type BlockKind,
  type MaskWindow,
  type SequenceMask,
} from '../../src/tiling/mask.js';
import { TileConfigError } from '../../src/errors.js';
import { chooseTileConfig } from '../../src/tiling/tileConfig.js';
import { $, clearError, el, fmtBytes, hooks, input, params, showError } from '../state.js';

const KIND_CODE: Record<BlockKind, number> = { empty: 0, full: 1, partial: 2 };
const KIND_NAME: BlockKind[] = ['empty', 'full', 'partial'];
const KIND_COLOR = ['#e5e7eb', '#16a34a', '#f59e0b'];
const WINDOW_COLORS = ['#dc2626', '#7c3aed', '#0891b2'];
const MASKED = '#334155';
/** Beyond this many blocks the page refuses (counting would freeze it); the library has no such limit. */
const MAX_BLOCKS = 16_000_000;
/** Beyond this many blocks per side the grid is counted but not drawn. */
const MAX_DRAWN_SIDE = 1024;

interface MaskInput {
  seqQ: number;
  seqK: number;
  kvLen: number;
  blockQ: number;
  blockKV: number;
  causal: boolean;
  window: number | undefined;
}

interface Grid {
  input: MaskInput;
  mask: SequenceMask;
  nq: number;
  nk: number;
  bMax: number;
  kinds: Uint8Array;
  counts: BlockCounts;
  cell: number;
}

function num(id: string): number {
  const v = input(id).value.trim();
  return v === '' ? NaN : Number(v);
}

/** Read the inputs and validate them with the library (typed errors name the field). */
function readInput(): MaskInput {
  const seqQ = num('mask-sq');
  const seqK = num('mask-sk');
  const causal = input('mask-causal').checked;
  const w = input('mask-window').value.trim();
  const window = w === '' ? undefined : Number(w);
  const problem = normalizeProblem({ q: { shape: [1, 1, seqQ, 32] }, k: { shape: [1, 1, seqK, 32] }, v: { shape: [1, 1, seqK, 32] }, causal, window });
  const kvText = input('mask-kvlen').value.trim();
  const kvLen = normalizeKvLengths(problem, kvText === '' ? undefined : [Number(kvText)], new Uint32Array(1))[0];
  const blockQ = num('mask-bq');
  const blockKV = num('mask-bkv');
  // The block sizes are the kernel's level-1 tile sides: the same error as checkTileConfig gives (device limits do not matter for the mask).
  for (const [field, v] of [['tile.blockQ', blockQ], ['tile.blockKV', blockKV]] as const)
    if (!Number.isInteger(v) || v <= 0) throw new TileConfigError(field, `must be a positive integer, got ${v}`, 'integers ≥ 1');
  const blocks = Math.ceil(seqQ / blockQ) * Math.ceil(seqK / blockKV);
  if (blocks > MAX_BLOCKS) throw new RangeError(`${blocks} blocks is more than this view counts (${MAX_BLOCKS}); use larger blocks or a shorter sequence`);
  return { seqQ, seqK, kvLen, blockQ, blockKV, causal, window };
}

function classifyGrid(inp: MaskInput): Grid {
  const mask: SequenceMask = { seqQ: inp.seqQ, kvLen: inp.kvLen, causal: inp.causal, window: inp.window };
  const cons = sequenceConstraints(mask);
  const bMax = Math.max(inp.blockQ, inp.blockKV);
  const nq = Math.ceil(inp.seqQ / inp.blockQ);
  const nk = Math.ceil(inp.seqK / inp.blockKV);
  const kinds = new Uint8Array(nq * nk);
  const counts: BlockCounts = { empty: 0, full: 0, partial: 0 };
  for (let qi = 0; qi < nq; qi++) {
    for (let ki = 0; ki < nk; ki++) {
      const qStart = qi * inp.blockQ;
      const kStart = ki * inp.blockKV;
      const block = { qStart, rows: Math.min(inp.blockQ, inp.seqQ - qStart), kStart, cols: Math.min(inp.blockKV, inp.seqK - kStart) };
      const kind = classifyBlock(cons, block, bMax).kind;
      kinds[qi * nk + ki] = KIND_CODE[kind];
      counts[kind]++;
    }
  }
  const side = Math.max(nq, nk);
  const cell = side > MAX_DRAWN_SIDE ? 0 : Math.max(1, Math.min(28, Math.floor(640 / nk), Math.floor(560 / nq)));
  return { input: inp, mask, nq, nk, bMax, kinds, counts, cell };
}

function drawGrid(canvas: HTMLCanvasElement, g: Grid, sel: [number, number] | null): void {
  const ctx = canvas.getContext('2d')!;
  if (g.cell === 0) {
    canvas.width = 320;
    canvas.height = 40;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#667085';
    ctx.font = '13px sans-serif';
    ctx.fillText(`${g.nq}×${g.nk} blocks: too many to draw (counts are exact)`, 8, 24);
    return;
  }
  const c = g.cell;
  canvas.width = g.nk * c;
  canvas.height = g.nq * c;
  canvas.style.width = `${canvas.width}px`;
  canvas.style.height = `${canvas.height}px`;
  if (c < 4) {
    const img = ctx.createImageData(canvas.width, canvas.height);
    const rgb = KIND_COLOR.map((h) => [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)]);
    for (let y = 0; y < canvas.height; y++) {
      for (let x = 0; x < canvas.width; x++) {
        const k = rgb[g.kinds[Math.floor(y / c) * g.nk + Math.floor(x / c)]];
        const o = 4 * (y * canvas.width + x);
        img.data[o] = k[0];
        img.data[o + 1] = k[1];
        img.data[o + 2] = k[2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  } else {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const gap = c >= 8 ? 1 : 0;
    for (let qi = 0; qi < g.nq; qi++) {
      for (let ki = 0; ki < g.nk; ki++) {
        ctx.fillStyle = KIND_COLOR[g.kinds[qi * g.nk + ki]];
        ctx.fillRect(ki * c, qi * c, c - gap, c - gap);
      }
    }
  }
  if (sel) {
    ctx.strokeStyle = '#2563eb';
    ctx.lineWidth = Math.max(2, Math.min(3, c / 4));
    const pad = ctx.lineWidth / 2;
    ctx.strokeRect(sel[1] * c + pad - (c < 6 ? 2 : 0), sel[0] * c + pad - (c < 6 ? 2 : 0), Math.max(c, 6) - ctx.lineWidth, Math.max(c, 6) - ctx.lineWidth);
  }
}

function drawMMask(canvas: HTMLCanvasElement, bMax: number, windows: readonly MaskWindow[], rows: number, cols: number): void {
  const width = mMaskWidth(bMax);
  const s = Math.max(1, Math.min(6, Math.floor(720 / width)));
  canvas.width = width * s;
  canvas.height = bMax * s;
  canvas.style.width = `${canvas.width}px`;
  canvas.style.height = `${canvas.height}px`;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = MASKED;
  const m = buildMMask(bMax);
  for (let r = 0; r < bMax; r++) for (let x = 0; x < width; x++) if (m[r * width + x] === 1) ctx.fillRect(x * s, r * s, s, s);
  windows.forEach((w, i) => {
    ctx.strokeStyle = WINDOW_COLORS[i % WINDOW_COLORS.length];
    ctx.lineWidth = 2;
    const h = w.alpha === 1 ? rows : 1;
    ctx.strokeRect(w.colOffset * s + 1, 1, cols * s - 2, Math.max(h * s - 2, 2));
  });
}

function drawBMask(canvas: HTMLCanvasElement, bmask: Uint8Array | null, kind: BlockKind, rows: number, cols: number): void {
  const s = Math.max(1, Math.min(12, Math.floor(256 / Math.max(rows, cols))));
  canvas.width = cols * s;
  canvas.height = rows * s;
  canvas.style.width = `${canvas.width}px`;
  canvas.style.height = `${canvas.height}px`;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = kind === 'empty' ? KIND_COLOR[0] : '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!bmask) return;
  ctx.fillStyle = MASKED;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (bmask[r * cols + c]) ctx.fillRect(c * s, r * s, s, s);
}

export function initTilingMask(getRt: () => FastAttentionRuntime | null): void {
  const errorBox = $('mask-error');
  const gridCanvas = $('mask-grid') as HTMLCanvasElement;
  let grid: Grid | null = null;
  let selected: [number, number] | null = null;

  for (const [id, key] of [
    ['mask-sq', 'maskSq'],
    ['mask-sk', 'maskSk'],
    ['mask-kvlen', 'maskKvLen'],
    ['mask-bq', 'maskBq'],
    ['mask-bkv', 'maskBkv'],
    ['mask-window', 'maskWindow'],
  ] as const) {
    const v = params.get(key);
    if (v !== null) input(id).value = v;
  }
  if (params.has('maskCausal')) input('mask-causal').checked = params.get('maskCausal') !== 'false';

  const showBlock = () => {
    const info = $('mask-block-info');
    if (!grid || !selected) {
      hooks.mask.selected = null;
      info.textContent = '';
      return;
    }
    const [qi, ki] = selected;
    const inp = grid.input;
    const qStart = qi * inp.blockQ;
    const kStart = ki * inp.blockKV;
    const rows = Math.min(inp.blockQ, inp.seqQ - qStart);
    const cols = Math.min(inp.blockKV, inp.seqK - kStart);
    const cls = classifyBlock(sequenceConstraints(grid.mask), { qStart, rows, kStart, cols }, grid.bMax);
    const m = buildMMask(grid.bMax);
    const bmask = cls.kind === 'partial' ? bMaskFromWindows(m, grid.bMax, cls.windows, rows, cols) : null;
    // Check the window against the dense definition, so the view shows it is exact.
    let agrees = true;
    for (let r = 0; r < rows && agrees; r++)
      for (let c = 0; c < cols; c++) {
        const dense = isMasked(grid.mask, qStart + r, kStart + c);
        const fromWindow = cls.kind === 'empty' ? true : bmask ? bmask[r * cols + c] === 1 : false;
        if (dense !== fromWindow) {
          agrees = false;
          break;
        }
      }
    drawMMask($('mask-mmask') as HTMLCanvasElement, grid.bMax, cls.windows, rows, cols);
    drawBMask($('mask-bmask') as HTMLCanvasElement, bmask, cls.kind, rows, cols);
    drawGrid(gridCanvas, grid, selected);
    $('mmask-caption').textContent = `M-mask: ${grid.bMax} × ${mMaskWidth(grid.bMax)} (bMax = max(blockQ, blockKV)); dark = masked, boxes = windows the selected block reads`;
    $('bmask-caption').textContent = `B-mask of block (q ${qi}, k ${ki}): rows ${qStart}–${qStart + rows - 1}, keys ${kStart}–${kStart + cols - 1}`;
    const what =
      cls.kind === 'empty'
        ? 'empty: every pair is masked, the kernel skips this block (K/V never loaded, no mask read)'
        : cls.kind === 'full'
          ? 'full: no pair is masked, the kernel applies no mask at all'
          : `partial: reads ${cls.windows.length} window(s) of the M-mask, OR-ed together`;
    info.replaceChildren(
      el('div', { 'data-kind': cls.kind }, el('strong', {}, `Block (${qi}, ${ki}) `), what),
      ...cls.windows.map((w, i) =>
        el(
          'div',
          {},
          el('span', { class: 'sw window', style: `border-color:${WINDOW_COLORS[i % WINDOW_COLORS.length]}` }),
          ` window ${i + 1}: masked(r, c) = ${w.negate ? 'not ' : ''}M[${w.alpha === 1 ? 'r' : '0'}][c + ${w.colOffset}]`,
        ),
      ),
      el('div', {}, agrees ? 'Matches the dense mask element for element: yes' : 'DOES NOT match the dense mask'),
    );
    hooks.mask.selected = { qBlock: qi, kBlock: ki, kind: cls.kind };
  };

  const select = (qi: number, ki: number) => {
    if (!grid || qi < 0 || ki < 0 || qi >= grid.nq || ki >= grid.nk) return;
    selected = [qi, ki];
    showBlock();
  };
  hooks.selectMaskBlock = select;

  const update = () => {
    let inp: MaskInput;
    try {
      inp = readInput();
      clearError(errorBox);
      hooks.mask.error = null;
    } catch (e) {
      hooks.mask.error = showError(errorBox, e);
      return; // keep the last valid view
    }
    grid = classifyGrid(inp);
    hooks.mask.input = inp;
    hooks.mask.counts = { ...grid.counts };
    const total = grid.nq * grid.nk;
    const summary = $('mask-summary');
    summary.dataset.empty = String(grid.counts.empty);
    summary.dataset.full = String(grid.counts.full);
    summary.dataset.partial = String(grid.counts.partial);
    summary.replaceChildren(
      el('span', {}, `${grid.nq} query blocks × ${grid.nk} key blocks = ${total}:`),
      ...(['empty', 'full', 'partial'] as const).map((k) => el('span', { class: `count ${k}`, id: `mask-count-${k}` }, `${k} ${grid!.counts[k]} (${((100 * grid!.counts[k]) / total).toFixed(1)}%)`)),
    );
    if (!selected || selected[0] >= grid.nq || selected[1] >= grid.nk) {
      const first = grid.kinds.indexOf(KIND_CODE.partial);
      selected = first >= 0 ? [Math.floor(first / grid.nk), first % grid.nk] : [0, 0];
    }
    drawGrid(gridCanvas, grid, selected);
    const dense16 = denseMaskBytes(inp.seqQ, inp.seqK, 2);
    const dense32 = denseMaskBytes(inp.seqQ, inp.seqK, 4);
    const mBytes = mMaskBytes(grid.bMax);
    $('mask-bytes').replaceChildren(
      el('strong', {}, 'Mask memory: '),
      `M-mask ${grid.bMax}×${mMaskWidth(grid.bMax)} u32 = `,
      el('span', { id: 'mask-mbytes' }, fmtBytes(mBytes)),
      ` (shared by every block and every head) vs a dense ${inp.seqQ}×${inp.seqK} mask: `,
      el('span', { id: 'mask-densebytes' }, fmtBytes(dense16)),
      ` at fp16 (${fmtBytes(dense32)} at f32, as the standard-attention baseline stores it) — `,
      dense16 >= mBytes
        ? `${(dense16 / mBytes).toFixed(1)}× the M-mask.`
        : 'smaller than the M-mask at this short length; the M-mask is fixed per block size while a dense mask grows as Sq×Sk (and per batch with padding).',
    );
    showBlock();
  };

  gridCanvas.addEventListener('click', (ev) => {
    if (!grid || grid.cell === 0) return;
    const r = gridCanvas.getBoundingClientRect();
    select(Math.floor((ev.clientY - r.top - gridCanvas.clientTop) / grid.cell), Math.floor((ev.clientX - r.left - gridCanvas.clientLeft) / grid.cell));
  });
  $('mask-controls').addEventListener('input', update);
  $('mask-controls').addEventListener('change', update);
  $('mask-sync').addEventListener('click', () => {
    // The longest benchmarked length: the most blocks to look at.
    const seqs = input('ctl-seq').value.split(',').map((x) => x.trim());
    const s = seqs.reduce((a, b) => (Number(b) > Number(a) ? b : a), seqs[0]);
    input('mask-sq').value = s;
    input('mask-sk').value = s;
    input('mask-kvlen').value = '';
    const causal = ($('ctl-causal') as HTMLSelectElement).value !== 'false';
    input('mask-causal').checked = causal;
    const rt = getRt();
    let bq = input('ctl-bq').value;
    let bkv = input('ctl-bkv').value;
    if (input('ctl-tile-auto').checked && rt) {
      try {
        const t = chooseTileConfig(Number(input('ctl-dim').value.split(',')[0]), rt.tileLimits);
        bq = String(t.blockQ);
        bkv = String(t.blockKV);
      } catch {
        // keep the inputs; the controls panel shows why
      }
    }
    input('mask-bq').value = bq;
    input('mask-bkv').value = bkv;
    update();
  });
  update();
}
