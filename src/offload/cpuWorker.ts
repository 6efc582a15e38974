/**
 * The body of a CPU-attention worker. It is shipped as source text
 * (`workerMain.toString()`), so the same code runs in a Node worker thread and
 * a browser Web Worker with no separate bundle entry; it must therefore not
 * reference anything outside itself.
 *
 * Protocol (control block of i32 words in the shared memory, see cpuAttention.ts):
 * the main thread writes a job, bumps GEN and notifies; each worker claims task
 * indices with Atomics.add on NEXT until TOTAL, then adds 1 to DONE; the last one
 * notifies. Workers sleep in Atomics.wait between jobs.
 */
export interface WorkerInit {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  id: number;
  control: number;
}

export function workerMain(init: WorkerInit, post: (message: unknown) => void): void {
  // Word indices; keep in sync with cpuAttention.ts.
  const GEN = 0, NEXT = 1, DONE = 2, TOTAL = 3, KIND = 4, G = 5, D = 6, SPLITS = 7, HKV = 8, HALF = 9;
  const KBASE = 10, VBASE = 11, CAP = 12, QBASE = 13, ACC = 14, STATS = 15, B0 = 16, SCALE = 17, WINDOW = 18;
  const SRC = 19, DST = 20, CHUNK = 21, WORKERS = 22, SCRATCH = 23, SCRATCH_STRIDE = 24, SINK = 32, LENGTHS = 256;
  const KIND_ATTEND = 1, KIND_READ = 2, KIND_COPY = 3, KIND_STOP = 9;
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
  const ex = instance.exports as unknown as {
    attendPartial(q: number, k: number, v: number, acc: number, stats: number, scratch: number, G: number, D: number, j0: number, j1: number, scaleLog2: number, half: number): void;
    streamRead(p: number, bytes: number): number;
    copyBytes(dst: number, src: number, bytes: number): void;
  };
  const I = new Int32Array(init.memory.buffer, init.control, LENGTHS + 4096);
  const F = new Float32Array(init.memory.buffer, init.control, LENGTHS);
  let gen = Atomics.load(I, GEN);
  post('ready');
  for (;;) {
    Atomics.wait(I, GEN, gen);
    gen = Atomics.load(I, GEN);
    const kind = I[KIND];
    if (kind === KIND_STOP) break;
    const total = I[TOTAL];
    const scratch = (I[SCRATCH] >>> 0) + init.id * I[SCRATCH_STRIDE];
    let sink = 0;
    for (let t = Atomics.add(I, NEXT, 1); t < total; t = Atomics.add(I, NEXT, 1)) {
      if (kind === KIND_ATTEND) {
        const g = I[G], d = I[D], splits = I[SPLITS], hkv = I[HKV], half = I[HALF];
        const per = hkv * splits;
        const bl = Math.floor(t / per);
        const b = I[B0] + bl;
        const h = Math.floor((t % per) / splits);
        const s = t % splits;
        const len = I[LENGTHS + b];
        const start = I[WINDOW] > 0 ? Math.max(0, len - I[WINDOW]) : 0;
        const chunk = Math.ceil((len - start) / splits);
        const j0 = Math.min(len, start + s * chunk);
        const j1 = Math.min(len, j0 + chunk);
        const rowBytes = d * (half ? 2 : 4);
        const head = (b * hkv + h) * I[CAP] * rowBytes;
        const q = (I[QBASE] >>> 0) + (b * hkv + h) * g * d * 4;
        const slot = (bl * hkv + h) * splits + s;
        ex.attendPartial(
          q | 0, ((I[KBASE] >>> 0) + head) | 0, ((I[VBASE] >>> 0) + head) | 0,
          ((I[ACC] >>> 0) + slot * g * d * 4) | 0, ((I[STATS] >>> 0) + slot * g * 8) | 0, scratch | 0,
          g, d, j0, j1, F[SCALE], half,
        );
      } else if (kind === KIND_READ) {
        const c = I[CHUNK] >>> 0;
        sink += ex.streamRead(((I[SRC] >>> 0) + t * c) | 0, c | 0);
      } else if (kind === KIND_COPY) {
        const c = I[CHUNK] >>> 0;
        ex.copyBytes(((I[DST] >>> 0) + t * c) | 0, ((I[SRC] >>> 0) + t * c) | 0, c | 0);
      }
    }
    if (kind === KIND_READ) F[SINK + init.id] = sink; // keeps the reads observable
    if (Atomics.add(I, DONE, 1) + 1 === I[WORKERS]) Atomics.notify(I, DONE);
  }
  post('stopped');
}
