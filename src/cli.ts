#!/usr/bin/env node
/**
 * `fastattn`: the command-line face of the library.
 *   fastattn info                 adapter, features, limits, chosen tiles
 *   fastattn bench [options]      standard vs FastAttention, table or --json
 *   fastattn ablate [options]     a prefill kernel (subgroup-matrix or f32 tier) timed whole and with parts taken out
 * Runs on the default adapter: the GPU when Vulkan finds one, otherwise the
 * SwiftShader software adapter (re-executing itself with its driver selected).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NoAdapterError } from './errors.js';
import { createNodeRuntime } from './node.js';
import { swiftShaderEnv } from './runtime/softwareAdapter.js';
import { chooseTileConfig, type TileConfig } from './tiling/tileConfig.js';
import { selfCheck } from './bench/selfCheck.js';
import { tune } from './tuning/tuner.js';
import { adapterKey, mergeTuningTables, parseTuningTable, seqBucket, shapeClassKey, type ShapeClass } from './tuning/tuning.js';
import type { AttentionDType } from './attention/problem.js';
import { KERNEL_TIERS, type KernelTier } from './attention/tiers.js';
import { formatBenchTable, runBench, type BenchCase, type BenchRow, type BenchVariant } from './bench/suite.js';
import { ABLATION_TARGETS, formatAblationTable, runAblation, type AblationTier } from './bench/ablation.js';
import type { MatrixTileConfig } from './tiling/matrixTile.js';

const USAGE = `usage: fastattn <info|check|bench|tune|ablate> [options]
  tune [--seq ..] [--dim ..] [--dtype f32,f16] [--causal both] [--heads N] [--tiers subgroup-matrix,f16,f32] --out FILE
                         time every (tier, tile) per shape class on this adapter; write the winners as JSON
  merge-tuning BASE.json UPDATE.json --out FILE
                         BASE with UPDATE's shape classes replaced (no GPU needed)
  ablate [--tier subgroup-matrix|f32] [--tile ..] [--seq 4096] [--dim 128] [--heads 32] [--causal false] [--samples N] [--peaks FILE] [--out FILE]
                         where a prefill kernel's time goes: the kernel timed whole and with parts
                         taken out (softmax, operand loads, K/V staging, barriers), same run; --tile is
                         Q,KV,SUBGROUPS (subgroup-matrix) or Q,KV,TM,C,CHUNK,STAGES (f32)
  info                   adapter, features, limits and default tiles (JSON)
  check [--cases N] [--dtype f32|f16] [--tier subgroup-matrix|f16|f32]
                         random problems vs the float64 CPU reference
bench options:
  --seq 512,1024,2048    sequence lengths (Sq = Sk)
  --dim 64               head dims
  --heads N --batch N    default: 1 head on a software adapter, 32 on a GPU; batch 1
  --causal both|true|false
  --variants standard,fused   also fused:subgroup-matrix, fused:f16, fused:f32
  --dtype f32|f16        storage type of Q/K/V/O (f16 needs shader-f16)
  --tile Q,KV,TM,C,CHUNK,STAGES   force a two-level tile (blockQ,blockKV,rowsPerThread,threadsPerRow,chunk,kvStages)
  --samples N            samples per median (default 9)
  --tuning FILE          use this tuning table instead of the shipped one
  --peaks FILE           run this ceiling script (shared/gpu/peaks.mjs) first and report fractions of its f32 ceiling
  --out FILE             results file (default bench/results/bench-<adapter>-<time>.json)
  --json                 print the JSON report instead of the table`;

function list(s: string | undefined, fallback: number[]): number[] {
  return s ? s.split(',').map((x) => Number(x.trim())) : fallback;
}

/** A results file: the JSON report, and its table beside it as markdown (NAME.md), for reading in a repository browser. */
function writeResults(out: string, command: string, report: object, table: string): void {
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(out.replace(/\.json$/, '') + '.md', `# fastattn ${command}\n\n\`\`\`text\n${table}\n\`\`\`\n`);
}

/** `--tile`: Q,KV,SUBGROUPS (a subgroup-matrix tile) or Q,KV,TM,C,CHUNK,STAGES (a vector tile); the operator checks the values. */
function parseTile(text: string): TileConfig | MatrixTileConfig {
  const n = text.split(',').map(Number);
  if (n.length === 3) return { blockQ: n[0], blockKV: n[1], subgroups: n[2] };
  if (n.length === 6) return { blockQ: n[0], blockKV: n[1], rowsPerThread: n[2], threadsPerRow: n[3], chunk: n[4], kvStages: n[5] as 1 | 2 };
  throw new Error(`--tile ${text}: Q,KV,SUBGROUPS or Q,KV,TM,C,CHUNK,STAGES`);
}

function measureCeilings(script: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (r.status !== 0 || !line) throw new Error(`${script} failed (exit ${r.status}): ${r.stderr.slice(-500)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      seq: { type: 'string' },
      dim: { type: 'string' },
      heads: { type: 'string' },
      batch: { type: 'string' },
      causal: { type: 'string', default: 'both' },
      variants: { type: 'string', default: 'standard,fused' },
      tile: { type: 'string' },
      samples: { type: 'string' },
      peaks: { type: 'string' },
      tuning: { type: 'string' },
      out: { type: 'string' },
      cases: { type: 'string', default: '12' },
      dtype: { type: 'string', default: 'f32' },
      tier: { type: 'string' },
      tiers: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const command = positionals[0];
  if (values.help || !['bench', 'info', 'check', 'tune', 'merge-tuning', 'ablate'].includes(command)) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (command === 'merge-tuning') {
    // No GPU needed: combine a shipped table with a partial re-tune.
    const [base, update] = positionals.slice(1).map((p) => parseTuningTable(readFileSync(p, 'utf8')));
    if (!base || !update || !values.out) {
      console.log(USAGE);
      return 2;
    }
    writeFileSync(values.out, `${JSON.stringify(mergeTuningTables(base, update), null, 2)}\n`);
    console.log(`merged tuning table written to ${values.out}`);
    return 0;
  }

  // Ceilings first, while the GPU is otherwise idle; same machine, same run.
  const ceilings = values.peaks ? measureCeilings(values.peaks) : undefined;
  if (ceilings) console.error(`ceilings measured in this run: ${JSON.stringify(ceilings)}`);
  let rt;
  try {
    rt = await createNodeRuntime();
  } catch (e) {
    if (!(e instanceof NoAdapterError) || process.env.FASTATTN_SOFTWARE_ADAPTER) throw e;
    const env = swiftShaderEnv();
    if (!env) throw e;
    console.error('fastattn: no GPU adapter; using the SwiftShader software adapter');
    const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env: { ...process.env, ...env, FASTATTN_SOFTWARE_ADAPTER: '1' } });
    return r.status ?? 1;
  }
  const caps = rt.capabilities;
  if (values.tuning) rt.tuning = parseTuningTable(readFileSync(values.tuning, 'utf8'));
  if (command === 'info') {
    const tiles = Object.fromEntries([32, 64, 80, 96, 128, 256].map((d) => [d, chooseTileConfig(d, rt.tileLimits)]));
    console.log(JSON.stringify({ ...caps, tiers: rt.tiers, defaultTiles: tiles }, null, 2));
    rt.destroy();
    return 0;
  }

  if (command === 'check') {
    const report = await selfCheck(rt, {
      count: Number(values.cases),
      dtype: values.dtype as AttentionDType,
      tier: values.tier as KernelTier | undefined,
      onCase: (c) => console.log(`${c.passed ? 'ok  ' : 'FAIL'} ${c.variant.padEnd(22)} ${c.label}: max abs error ${c.maxAbsError.toExponential(2)}`),
    });
    const failed = report.cases.filter((c) => !c.passed).length;
    console.log(`${report.cases.length - failed} passed, ${failed} failed`);
    rt.destroy();
    return failed === 0 ? 0 : 1;
  }

  const soft = caps.adapter.isSoftware;
  if (command === 'tune') {
    const badTier = values.tiers?.split(',').find((t) => !(KERNEL_TIERS as readonly string[]).includes(t));
    if (badTier !== undefined) throw new Error(`--tiers: unknown tier ${JSON.stringify(badTier)} (allowed: ${KERNEL_TIERS.join(', ')})`);
    const classes: ShapeClass[] = [];
    for (const dtype of values.dtype.split(',') as AttentionDType[])
      for (const headDim of list(values.dim, [64, 128]))
        for (const seq of list(values.seq, soft ? [256] : [1024, 4096]))
          for (const causal of values.causal === 'both' ? [false, true] : [values.causal === 'true']) classes.push({ dtype, headDim, causal, seqBucket: seqBucket(seq) });
    const table = await tune(rt, {
      classes,
      heads: Number(values.heads ?? (soft ? 1 : 32)),
      samples: values.samples ? Number(values.samples) : undefined,
      tiers: values.tiers?.split(',') as KernelTier[] | undefined,
      onResult: (e) => console.error(`${shapeClassKey(e.shapeClass)}: ${e.tier} ${JSON.stringify(e.tile)} ${e.medianMs.toFixed(3)} ms (of ${e.candidates.length})`),
    });
    const out = values.out ?? join('bench', 'results', `tune-${adapterKey(caps).replace(/[^A-Za-z0-9_.-]+/g, '_')}.json`);
    mkdirSync(join(out, '..'), { recursive: true });
    writeFileSync(out, `${JSON.stringify(table, null, 2)}\n`);
    console.log(`tuning table written to ${out}`);
    rt.destroy();
    return 0;
  }
  if (command === 'ablate') {
    const started = new Date().toISOString();
    const tier = (values.tier ?? 'subgroup-matrix') as AblationTier;
    if (!(tier in ABLATION_TARGETS)) throw new Error(`ablate --tier ${tier}: allowed ${Object.keys(ABLATION_TARGETS).join(', ')}`);
    const shape = { batch: Number(values.batch ?? 1), heads: Number(values.heads ?? 32), seq: list(values.seq, [4096])[0], headDim: list(values.dim, [128])[0], causal: values.causal === 'true' };
    const report = await runAblation(rt, {
      tier,
      tile: values.tile ? parseTile(values.tile) : undefined,
      shape,
      samples: values.samples ? Number(values.samples) : undefined,
      ceilings,
      onRow: (r) => console.error(`${r.ablations.length ? r.ablations.join('+') : 'whole kernel'}: ${r.timing.medianMs.toFixed(3)} ms, ${r.tflops.toFixed(1)} TFLOP/s`),
    });
    const out = values.out ?? join('bench', 'results', `ablation-${caps.adapter.vendor}-${started.replace(/[:.]/g, '-')}.json`);
    mkdirSync(join(out, '..'), { recursive: true });
    const table = formatAblationTable(report);
    writeResults(out, 'ablate', report, table);
    console.log(table);
    console.log(`results written to ${out} (and .md)`);
    rt.destroy();
    return 0;
  }
  const seqs = list(values.seq, soft ? [512, 1024, 2048] : [1024, 2048, 4096]);
  const dims = list(values.dim, soft ? [64] : [128]);
  // SwiftShader emulates workgroup barriers in software: one head keeps the software run to minutes.
  const heads = Number(values.heads ?? (soft ? 1 : 32));
  const batch = Number(values.batch ?? 1);
  const causals = values.causal === 'both' ? [false, true] : [values.causal === 'true'];
  const variants = values.variants.split(',') as BenchVariant[];
  let tile: TileConfig | undefined;
  if (values.tile) {
    const parsed = parseTile(values.tile);
    if ('subgroups' in parsed) throw new Error(`bench --tile ${values.tile}: a vector tile Q,KV,TM,C,CHUNK,STAGES`);
    tile = parsed;
  }
  const slug = `${caps.adapter.vendor}-${caps.adapter.architecture || caps.adapter.device}`.replace(/[^A-Za-z0-9_.-]+/g, '_');
  const started = new Date().toISOString();
  const out = values.out ?? join('bench', 'results', `bench-${slug}-${started.replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(out, '..'), { recursive: true });
  const rows: BenchRow[] = [];
  const cases: BenchCase[] = [];
  for (const headDim of dims) for (const seq of seqs) for (const causal of causals) cases.push({ batch, heads, seq, headDim, causal });
  const report = await runBench(rt, {
    cases,
    variants,
    dtype: values.dtype as AttentionDType,
    tile,
    samples: values.samples ? Number(values.samples) : soft ? 5 : undefined,
    minSampleMs: soft ? 0 : undefined,
    ceilings,
    onProgress: (done, total, row) => {
      if (!row) return;
      if (!values.json) console.error(`[${done}/${total}] ${row.variant} ${row.shape.seq}${row.shape.causal ? ' causal' : ''}: ${row.timing.medianMs.toFixed(3)} ms`);
      // Keep what is measured so far on disk: a run cut short (a time limit) still leaves its rows.
      rows.push(row);
      writeFileSync(out, `${JSON.stringify({ adapter: caps.adapter, features: caps.features, date: started, ceilings: ceilings ?? null, complete: false, rows }, null, 2)}\n`);
    },
  });
  const table = formatBenchTable(report);
  writeResults(out, 'bench', { ...report, complete: true }, table);
  console.log(values.json ? JSON.stringify(report, null, 2) : table);
  if (!values.json) console.log(`results written to ${out} (and .md)`);
  rt.destroy();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? `fastattn: ${e.message}` : e);
    process.exit(1);
  },
);
