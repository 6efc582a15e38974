/**
 * Bind groups keyed by the exact buffers and offsets bound, so a caller that
 * reuses its buffers (every LLM layer, every decode step) pays for
 * createBindGroup once. Bounded, least recently used out.
 */

const ids = new WeakMap<GPUBuffer, number>();
let nextId = 1;

function bufferId(b: GPUBuffer): number {
  let id = ids.get(b);
  if (id === undefined) {
    id = nextId++;
    ids.set(b, id);
  }
  return id;
}

export interface BindingResource {
  binding: number;
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

export class BindGroupCache {
  private readonly map = new Map<string, GPUBindGroup>();
  private created = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly capacity = 256,
  ) {}

  get createdCount(): number {
    return this.created;
  }

  get(layout: GPUBindGroupLayout, layoutKey: string, resources: readonly BindingResource[]): GPUBindGroup {
    let key = layoutKey;
    for (const r of resources) key += `|${r.binding}:${bufferId(r.buffer)}@${r.offset}+${r.size}`;
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    const group = this.device.createBindGroup({
      layout,
      entries: resources.map((r) => ({ binding: r.binding, resource: { buffer: r.buffer, offset: r.offset, size: r.size } })),
    });
    this.created++;
    this.map.set(key, group);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as string);
    return group;
  }
}
