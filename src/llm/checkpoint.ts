/**
 * Llama checkpoints in the Hugging Face layout: `config.json` plus one
 * `model.safetensors` or shards listed by `model.safetensors.index.json`.
 * Tensors are checked against the config (names, shapes, dtypes) before any
 * upload, and every problem names the tensor.
 */
import { CheckpointError } from './errors.js';
import { parseLlamaConfig, type LlamaConfig } from './config.js';
import { parseSafetensors, SAFETENSORS_DTYPES, type SafetensorsTensor } from './safetensors.js';

/** What a tensor is, for initialization and upload. */
export type TensorKind = 'embedding' | 'norm' | 'linear';

export interface TensorSpec {
  name: string;
  shape: readonly number[];
  kind: TensorKind;
}

/** The tensors a config implies, in Hugging Face names and [out, in] order. */
export function llamaTensorSpecs(c: LlamaConfig): TensorSpec[] {
  const H = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], kind: 'embedding' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: `${p}input_layernorm.weight`, shape: [H], kind: 'norm' },
      { name: `${p}self_attn.q_proj.weight`, shape: [q, H], kind: 'linear' },
      { name: `${p}self_attn.k_proj.weight`, shape: [kv, H], kind: 'linear' },
      { name: `${p}self_attn.v_proj.weight`, shape: [kv, H], kind: 'linear' },
      { name: `${p}self_attn.o_proj.weight`, shape: [H, q], kind: 'linear' },
      { name: `${p}post_attention_layernorm.weight`, shape: [H], kind: 'norm' },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, H], kind: 'linear' },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, H], kind: 'linear' },
      { name: `${p}mlp.down_proj.weight`, shape: [H, c.intermediateSize], kind: 'linear' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' });
  if (!c.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], kind: 'linear' });
  return specs;
}

/** Buffers that some exporters save but the model does not use. */
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * Check a checkpoint's tensors against its config: every expected tensor present
 * with its shape and a loadable dtype, nothing unexpected (a layer the config
 * does not have, a projection of another architecture).
 */
export function checkCheckpointTensors(config: LlamaConfig, tensors: ReadonlyMap<string, SafetensorsTensor>): void {
  const specs = llamaTensorSpecs(config);
  const expected = new Set(specs.map((s) => s.name));
  for (const spec of specs) {
    const t = tensors.get(spec.name);
    if (!t) throw new CheckpointError('missing', spec.name, `is not in the checkpoint`, `a ${JSON.stringify(spec.shape)} tensor, as config.json implies`);
    if (t.shape.length !== spec.shape.length || t.shape.some((x, i) => x !== spec.shape[i]))
      throw new CheckpointError('shape', spec.name, `has shape ${JSON.stringify(t.shape)} but the config implies ${JSON.stringify(spec.shape)}`, JSON.stringify(spec.shape));
    if (!SAFETENSORS_DTYPES.includes(t.dtype)) throw new CheckpointError('dtype', spec.name, `dtype ${t.dtype} is not loadable`, SAFETENSORS_DTYPES.join(', '));
  }
  for (const name of tensors.keys()) {
    if (!expected.has(name) && !IGNORED.test(name))
      throw new CheckpointError('unexpected', name, 'is not a tensor of the configured model', `the ${specs.length} tensors of a ${config.numLayers}-layer Llama${config.tieWordEmbeddings ? ' with tied embeddings' : ''}`);
  }
}

/** Where checkpoint files come from: a directory in Node, fetch() in a browser, a Map in tests. */
export interface CheckpointSource {
  /** The file's bytes, or null when there is no such file. */
  read(name: string): Promise<Uint8Array | null>;
}

/** A source over files held in memory. */
export function memorySource(files: ReadonlyMap<string, Uint8Array> | Record<string, Uint8Array>): CheckpointSource {
  const map = files instanceof Map ? files : new Map(Object.entries(files));
  return { read: async (name) => map.get(name) ?? null };
}

export interface LoadedCheckpoint {
  config: LlamaConfig;
  /** Tensors by name, views into the files' bytes. */
  tensors: Map<string, SafetensorsTensor>;
}

/** Load and check a Hugging Face Llama checkpoint (single file or sharded). */
export async function loadLlamaCheckpoint(source: CheckpointSource): Promise<LoadedCheckpoint> {
  const configBytes = await source.read('config.json');
  if (!configBytes) throw new CheckpointError('missing', 'config.json', 'is not in the checkpoint', 'a Llama-style config.json');
  let configJson: unknown;
  try {
    configJson = JSON.parse(new TextDecoder().decode(configBytes));
  } catch (e) {
    throw new CheckpointError('header', 'config.json', `is not JSON (${(e as Error).message})`, 'a Llama-style config.json');
  }
  const config = parseLlamaConfig(configJson);
  const tensors = new Map<string, SafetensorsTensor>();
  const index = await source.read('model.safetensors.index.json');
  let files: string[];
  let weightMap: Record<string, string> | null = null;
  if (index) {
    const parsed = JSON.parse(new TextDecoder().decode(index)) as { weight_map?: Record<string, string> };
    if (!parsed.weight_map) throw new CheckpointError('header', 'model.safetensors.index.json', 'has no weight_map', '{ "weight_map": { tensor: file } }');
    weightMap = parsed.weight_map;
    files = [...new Set(Object.values(weightMap))].sort();
  } else {
    files = ['model.safetensors'];
  }
  for (const file of files) {
    const bytes = await source.read(file);
    if (!bytes) throw new CheckpointError('missing', file, 'is not in the checkpoint', index ? 'every shard named by model.safetensors.index.json' : 'model.safetensors');
    for (const [name, t] of parseSafetensors(bytes, file).tensors) {
      if (tensors.has(name)) throw new CheckpointError('unexpected', name, `appears in more than one shard (again in ${file})`, 'each tensor in exactly one shard');
      if (weightMap && weightMap[name] !== undefined && weightMap[name] !== file)
        throw new CheckpointError('header', name, `is in ${file} but the index maps it to ${weightMap[name]}`, weightMap[name]);
      tensors.set(name, t);
    }
  }
  if (weightMap) for (const [name, file] of Object.entries(weightMap)) if (!tensors.has(name)) throw new CheckpointError('missing', name, `is listed in the index (shard ${file}) but not in that file`, 'shards matching their index');
  checkCheckpointTensors(config, tensors);
  return { config, tensors };
}
