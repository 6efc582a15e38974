/**
 * Per-call parameters without per-call buffers. A pool owns one storage buffer
 * of fixed-size slots read at a dynamic offset. Slots are content-addressed:
 * an identical parameter set (the common case: same shapes every layer, every
 * step) reuses its slot with no upload at all; a new set takes the least
 * recently used slot. A slot is only rewritten after `slots` other distinct
 * parameter sets, so up to that many distinct calls may be encoded before one
 * submit.
 */
import type { BufferLedger } from './memory.js';
import { BufferUsage } from './usage.js';
import { packStruct, structBytes, type StructLayout } from './wgsl.js';

export class ParamsPool {
  readonly buffer: GPUBuffer;
  /** Bytes of one slot, a multiple of the storage offset alignment. */
  readonly slotBytes: number;
  /** Bytes the shader may read through one binding. */
  readonly bindingBytes: number;
  private readonly scratch: DataView;
  private readonly scratchWords: Uint32Array<ArrayBuffer>;
  private readonly mirror: Uint32Array;
  private readonly byHash = new Map<number, number[]>();
  private readonly hashes: Int32Array;
  private readonly lastUse: Float64Array;
  private clock = 0;
  private uploads = 0;

  constructor(
    private readonly queue: GPUQueue,
    ledger: BufferLedger,
    owner: string,
    private readonly layout: StructLayout,
    arrayLength: number,
    alignment: number,
    readonly slots = 64,
  ) {
    this.bindingBytes = structBytes(layout, arrayLength);
    this.slotBytes = Math.ceil(this.bindingBytes / alignment) * alignment;
    this.buffer = ledger.create(owner, { label: `${owner}.params`, size: this.slotBytes * slots, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    const scratch = new ArrayBuffer(this.slotBytes);
    this.scratch = new DataView(scratch);
    this.scratchWords = new Uint32Array(scratch);
    this.mirror = new Uint32Array((this.slotBytes / 4) * slots);
    this.hashes = new Int32Array(slots).fill(-1);
    this.lastUse = new Float64Array(slots).fill(-1);
  }

  /** Parameter sets uploaded so far (cache misses). */
  get uploadCount(): number {
    return this.uploads;
  }

  /** Byte offset of a slot holding `values`, uploading them if no slot does. */
  offsetFor(values: Readonly<Record<string, number | ArrayLike<number>>>): number {
    this.scratchWords.fill(0);
    packStruct(this.layout, values, this.scratch);
    const words = this.scratchWords;
    let h = 0x811c9dc5;
    for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
    h |= 0;
    const stride = words.length;
    const candidates = this.byHash.get(h);
    if (candidates) {
      for (const slot of candidates) {
        let same = true;
        for (let i = 0; i < stride && same; i++) same = this.mirror[slot * stride + i] === words[i];
        if (same) {
          this.lastUse[slot] = ++this.clock;
          return slot * this.slotBytes;
        }
      }
    }
    let slot = 0;
    for (let s = 1; s < this.slots; s++) if (this.lastUse[s] < this.lastUse[slot]) slot = s;
    const old = this.hashes[slot];
    if (this.lastUse[slot] >= 0) {
      const list = this.byHash.get(old)!;
      list.splice(list.indexOf(slot), 1);
      if (list.length === 0) this.byHash.delete(old);
    }
    this.mirror.set(words, slot * stride);
    this.hashes[slot] = h;
    this.lastUse[slot] = ++this.clock;
    const list = this.byHash.get(h);
    if (list) list.push(slot);
    else this.byHash.set(h, [slot]);
    this.queue.writeBuffer(this.buffer, slot * this.slotBytes, words);
    this.uploads++;
    return slot * this.slotBytes;
  }
}
