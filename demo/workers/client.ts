/**
 * A worker that only answers the latest question: a new request while one is
 * running terminates the worker (its answer is no longer wanted) and starts a
 * fresh one, so dragging a control never queues up stale simulations.
 */
export class LatestOnlyWorker<Req extends { id: number }, Res extends { id: number }> {
  private worker: Worker | null = null;
  private pending: { id: number; resolve: (r: Res | null) => void; reject: (e: Error) => void } | null = null;
  private nextId = 1;

  constructor(private readonly make: () => Worker) {}

  /** The answer, or null when a later request superseded this one. */
  run(req: Omit<Req, 'id'>): Promise<Res | null> {
    if (this.pending) {
      this.worker?.terminate();
      this.worker = null;
      this.pending.resolve(null);
      this.pending = null;
    }
    const w = (this.worker ??= this.spawn());
    const id = this.nextId++;
    return new Promise<Res | null>((resolve, reject) => {
      this.pending = { id, resolve, reject };
      w.postMessage({ ...req, id } as Req);
    });
  }

  private spawn(): Worker {
    const w = this.make();
    w.onmessage = (ev: MessageEvent<Res>) => {
      if (!this.pending || ev.data.id !== this.pending.id) return;
      const p = this.pending;
      this.pending = null;
      p.resolve(ev.data);
    };
    w.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      const p = this.pending;
      this.pending = null;
      this.worker?.terminate();
      this.worker = null;
      p?.reject(new Error(`worker failed: ${ev.message || 'could not load or run the worker script'}`));
    };
    return w;
  }
}
