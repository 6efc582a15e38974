/**
 * The small typed generator behind every kernel: a `.wgsl` file declares its
 * tunables as module-scope `const`s with defaults and its element types as
 * `alias`es (so the file is valid WGSL on its own), and {@link specializeWgsl}
 * rewrites their values per pipeline and adds `enable` directives (f16, …).
 * Bindings and struct layouts come from wgsl_reflect, never from hand-kept tables.
 */
import { ResourceType, WgslReflect, type ArrayInfo, type StructInfo } from 'wgsl_reflect';

export type WgslConstValue = number | boolean;
export type WgslConsts = Readonly<Record<string, WgslConstValue>>;

/** Type aliases to rewrite (`alias Store4 = vec4<f16>;`) and `enable` directives to add. */
export interface WgslTypes {
  aliases?: Readonly<Record<string, string>>;
  enables?: readonly string[];
}

const ALIAS_DECL = /^alias\s+([A-Za-z_]\w*)\s*=\s*([^;]+);/gm;
const TYPE_NAME = /^[A-Za-z_][\w<>, ]*$/;

const CONST_DECL = /^const\s+([A-Za-z_]\w*)\s*:\s*(u32|i32|f32|bool)\s*=\s*([^;]+);/gm;

function literal(type: string, name: string, value: WgslConstValue): string {
  if (type === 'bool') {
    if (typeof value !== 'boolean') throw new TypeError(`WGSL const ${name}: expected a boolean, got ${value}`);
    return String(value);
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`WGSL const ${name}: expected a finite number, got ${value}`);
  if (type === 'f32') return Number.isInteger(value) ? `${value}.0` : String(value);
  if (!Number.isInteger(value) || (type === 'u32' && value < 0)) throw new TypeError(`WGSL const ${name}: ${value} is not a valid ${type}`);
  return type === 'u32' ? `${value}u` : `${value}i`;
}

/** Replace the values of module-scope consts and aliases; every name given must be declared in the source. */
export function specializeWgsl(source: string, consts: WgslConsts, types: WgslTypes = {}): string {
  const seen = new Set<string>();
  const aliases = types.aliases ?? {};
  const aliased = new Set<string>();
  let out = source.replace(ALIAS_DECL, (whole, name: string) => {
    const type = aliases[name];
    if (type === undefined) return whole;
    if (!TYPE_NAME.test(type)) throw new TypeError(`WGSL alias ${name}: ${JSON.stringify(type)} is not a type name`);
    aliased.add(name);
    return `alias ${name} = ${type};`;
  });
  for (const name of Object.keys(aliases)) if (!aliased.has(name)) throw new Error(`WGSL alias ${name} is not declared in the shader source`);
  out = out.replace(CONST_DECL, (whole, name: string, type: string) => {
    if (!(name in consts)) return whole;
    seen.add(name);
    return `const ${name}: ${type} = ${literal(type, name, consts[name])};`;
  });
  for (const name of Object.keys(consts)) {
    if (!seen.has(name)) throw new Error(`WGSL const ${name} is not declared in the shader source`);
  }
  const enables = (types.enables ?? []).map((e) => {
    if (!/^\w+$/.test(e)) throw new TypeError(`WGSL enable: ${JSON.stringify(e)} is not an extension name`);
    return `enable ${e};\n`;
  });
  return enables.join('') + out;
}

export type BindingKind = 'uniform' | 'read-only-storage' | 'storage';

export interface ReflectedBinding {
  name: string;
  group: number;
  binding: number;
  kind: BindingKind;
  /** Struct layout when the binding's type is a struct. */
  struct?: StructLayout;
}

export interface StructMember {
  name: string;
  offset: number;
  size: number;
  /** Scalar/vector type name, `array` for arrays. */
  type: string;
  /** Element type for arrays. */
  elementType?: string;
  /** Element stride of arrays, 0 otherwise. */
  stride: number;
}

export interface StructLayout {
  name: string;
  /** Size of the fixed part; a trailing runtime-sized array starts at its member's offset. */
  size: number;
  members: StructMember[];
}

export interface KernelReflection {
  entryPoints: string[];
  /** Bindings used by each entry point, in binding order. */
  bindings: Record<string, ReflectedBinding[]>;
}

function structLayout(s: StructInfo): StructLayout {
  return {
    name: s.name,
    size: s.size,
    members: s.members.map((m) => {
      const array = m.type.isArray ? (m.type as ArrayInfo) : null;
      return {
        name: m.name,
        offset: m.offset,
        size: m.size,
        type: array ? 'array' : m.type.getTypeName(),
        elementType: array ? array.format.getTypeName() : undefined,
        stride: array ? array.stride : 0,
      };
    }),
  };
}

/**
 * The module's declarations with every function body emptied. wgsl_reflect
 * cannot parse subgroup-matrix types or builtins, which only occur in bodies;
 * bindings and structs survive intact.
 */
export function declarationsOnly(source: string): string {
  let out = '';
  let i = 0;
  const fnHead = /\bfn\s+[A-Za-z_]\w*\s*\(/g;
  for (let m = fnHead.exec(source); m; m = fnHead.exec(source)) {
    const open = source.indexOf('{', m.index);
    let depth = 0;
    let end = open;
    for (; end < source.length; end++) {
      if (source[end] === '{') depth++;
      else if (source[end] === '}' && --depth === 0) break;
    }
    out += `${source.slice(i, open)}{}`;
    i = end + 1;
    fnHead.lastIndex = i;
  }
  return (out + source.slice(i)).replace(/^enable\s+chromium_experimental_subgroup_matrix\s*;/gm, '');
}

/**
 * Reflect the compute entry points of a WGSL module and the bindings each one
 * uses. Modules wgsl_reflect cannot parse (subgroup matrices) are reflected from
 * their declarations, and then every entry point is taken to use every binding.
 */
export function reflectKernel(source: string): KernelReflection {
  let r: WgslReflect;
  let bodies = true;
  try {
    r = new WgslReflect(source);
  } catch (e) {
    if (!/chromium_experimental_subgroup_matrix/.test(source)) throw e;
    r = new WgslReflect(declarationsOnly(source));
    bodies = false;
  }
  const all = [...r.uniforms, ...r.storage];
  const bindings: Record<string, ReflectedBinding[]> = {};
  for (const entry of r.entry.compute) {
    bindings[entry.name] = (bodies ? entry.resources : all)
      .map((res): ReflectedBinding => {
        const kind: BindingKind = res.resourceType === ResourceType.Uniform ? 'uniform' : res.access === 'read' ? 'read-only-storage' : 'storage';
        const struct = res.type.isStruct ? structLayout(res.type as StructInfo) : undefined;
        return { name: res.name, group: res.group, binding: res.binding, kind, struct };
      })
      .sort((a, b) => a.group - b.group || a.binding - b.binding);
  }
  return { entryPoints: r.entry.compute.map((e) => e.name), bindings };
}

/**
 * Write `values` into `view` at the member offsets of `layout`. Scalars by name;
 * a trailing runtime array of u32/i32/f32 takes an array. Unknown or missing
 * names throw, so a shader edit cannot silently desynchronise the host.
 */
export function packStruct(layout: StructLayout, values: Readonly<Record<string, number | ArrayLike<number>>>, view: DataView, base = 0): void {
  const known = new Set(layout.members.map((m) => m.name));
  for (const name of Object.keys(values)) if (!known.has(name)) throw new Error(`struct ${layout.name} has no member ${name}`);
  for (const m of layout.members) {
    const value = values[m.name];
    if (value === undefined) throw new Error(`struct ${layout.name}: no value for member ${m.name}`);
    if (m.type === 'array') {
      const arr = value as ArrayLike<number>;
      for (let i = 0; i < arr.length; i++) writeScalar(view, base + m.offset + i * m.stride, m.elementType ?? 'u32', arr[i]);
    } else {
      writeScalar(view, base + m.offset, m.type, value as number);
    }
  }
}

function writeScalar(view: DataView, at: number, type: string, value: number): void {
  if (type === 'u32') view.setUint32(at, value, true);
  else if (type === 'i32') view.setInt32(at, value, true);
  else if (type === 'f32') view.setFloat32(at, value, true);
  else throw new Error(`cannot pack WGSL type ${type}`);
}

/** Bytes a struct needs with `arrayLength` elements in its trailing runtime array. */
export function structBytes(layout: StructLayout, arrayLength = 0): number {
  const last = layout.members[layout.members.length - 1];
  if (last && last.type === 'array' && last.size === 0) return last.offset + arrayLength * last.stride;
  return layout.size;
}
