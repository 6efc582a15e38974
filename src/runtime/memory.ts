/**
 * Every GPUBuffer the runtime creates goes through a {@link BufferLedger}, so
 * tests and users can see exactly what the library holds (no hidden S×S
 * intermediates) and how much.
 */

export interface LedgerEntry {
  label: string;
  size: number;
  usage: number;
  /** Who asked for it, e.g. `flashAttentionPrefill.params` or `standardAttention.scores`. */
  owner: string;
}

export class BufferLedger {
  private readonly live = new Map<GPUBuffer, LedgerEntry>();
  private created = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Create a buffer and record it. */
  create(owner: string, descriptor: GPUBufferDescriptor): GPUBuffer {
    const buffer = this.device.createBuffer(descriptor);
    this.live.set(buffer, { label: descriptor.label ?? owner, size: descriptor.size, usage: descriptor.usage, owner });
    this.created++;
    return buffer;
  }

  /** Destroy a buffer the ledger created. */
  destroy(buffer: GPUBuffer): void {
    if (this.live.delete(buffer)) buffer.destroy();
  }

  /** Buffers alive now. */
  entries(): LedgerEntry[] {
    return [...this.live.values()];
  }

  /** Bytes alive now. */
  get liveBytes(): number {
    let n = 0;
    for (const e of this.live.values()) n += e.size;
    return n;
  }

  /** Buffers created since the runtime started (a hot path must not move it). */
  get createdCount(): number {
    return this.created;
  }

  destroyAll(): void {
    for (const b of this.live.keys()) b.destroy();
    this.live.clear();
  }
}
