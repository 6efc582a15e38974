/**
 * GPU timing by submission: a sample encodes `batch` calls into one command
 * buffer, submits, and waits for the queue; the sample's time per call is the
 * elapsed wall time over `batch`. The median over samples is reported. `batch`
 * is grown until a sample lasts long enough that submission overhead is noise.
 * Before the samples the GPU runs the work back to back for `warmupMs`: after a
 * pipeline compile it sits idle at low clocks, and on the H100 the first
 * samples then read 2–3× slow (a tuner without this picked the wrong tiles).
 */

export interface TimingOptions {
  /** Samples whose median is reported. */
  samples: number;
  /** Minimum duration of one sample, ms. */
  minSampleMs: number;
  /** Upper bound on calls per sample. */
  maxBatch: number;
  /** Back-to-back work before the first sample, ms (default 300). */
  warmupMs?: number;
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
  batch: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function timeGpu(device: GPUDevice, encode: (encoder: GPUCommandEncoder) => void, options: TimingOptions): Promise<Timing> {
  const runBatch = async (batch: number): Promise<number> => {
    const t0 = performance.now();
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < batch; i++) encode(encoder);
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await runBatch(1); // warm-up: first use of pipelines and bind groups
  let batch = 1;
  let ms = await runBatch(batch);
  while (ms < options.minSampleMs && batch < options.maxBatch) {
    batch = Math.min(options.maxBatch, batch * Math.max(2, Math.ceil(options.minSampleMs / Math.max(ms, 0.01))));
    ms = await runBatch(batch);
  }
  const warmupEnd = performance.now() + (options.warmupMs ?? 300);
  while (performance.now() < warmupEnd) await runBatch(batch);
  const perCall: number[] = [];
  for (let i = 0; i < options.samples; i++) perCall.push((await runBatch(batch)) / batch);
  return { medianMs: median(perCall), minMs: Math.min(...perCall), maxMs: Math.max(...perCall), samples: options.samples, batch };
}
