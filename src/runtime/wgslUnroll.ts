/**
 * Unrolled loops in a WGSL source. Subgroup matrices live in registers only
 * when every index into them is a constant: an `array<subgroup_matrix_…>`
 * indexed by a loop counter is placed in memory by the driver when it does not
 * unroll the loop (on the H100 the tensor-core prefill ran at half speed that
 * way), and WGSL has no unroll attribute. So such loops are written
 *
 *     //#for t in D16
 *     om{t} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<…, row_major>(&vTile, {t}u * 16u, PITCH), om{t});
 *     //#endfor
 *
 * and {@link unrollWgsl} repeats the body once per value 0 … count−1 of the
 * named count, replacing `{t}` with the value. Loops nest. Outside a loop the
 * source is unchanged, so a file without `//#for` is plain WGSL.
 *
 * Kernels do not call it: they pass the counts to the pipeline cache next to
 * their consts (`PipelineCache.get`), which unrolls on compile and keys the
 * pipeline by the counts too.
 */

const FOR = /^\s*\/\/#for\s+([A-Za-z_]\w*)\s+in\s+([A-Za-z_]\w*)\s*$/;
const END = /^\s*\/\/#endfor\s*$/;

/** Trip counts by name, e.g. `{ D16: 8, KV16: 2 }`. */
export type UnrollCounts = Readonly<Record<string, number>>;

/** Expand every `//#for VAR in COUNT … //#endfor` block; every COUNT used must be given. */
export function unrollWgsl(source: string, counts: UnrollCounts): string {
  const lines = source.split('\n');
  const [out, next] = expand(lines, 0, counts, {}, undefined);
  if (next !== lines.length) throw new Error(`line ${next + 1}: //#endfor without //#for`);
  return out.join('\n');
}

// Expands lines from `start` until the matching //#endfor (or the end when `open` is undefined); returns the lines and the index after it.
function expand(lines: readonly string[], start: number, counts: UnrollCounts, vars: Readonly<Record<string, number>>, open: string | undefined): [string[], number] {
  const out: string[] = [];
  let i = start;
  while (i < lines.length) {
    const line = lines[i];
    if (END.test(line)) {
      if (open === undefined) return [out, i];
      return [out, i + 1];
    }
    const loop = FOR.exec(line);
    if (!loop) {
      out.push(substitute(line, vars));
      i++;
      continue;
    }
    const [, name, countName] = loop;
    const count = counts[countName];
    if (count === undefined) throw new Error(`line ${i + 1}: //#for ${name} in ${countName}: no such count (given: ${Object.keys(counts).join(', ') || 'none'})`);
    if (!Number.isInteger(count) || count < 0) throw new Error(`line ${i + 1}: count ${countName} = ${count} is not a non-negative integer`);
    if (name in vars) throw new Error(`line ${i + 1}: //#for ${name} shadows an enclosing loop variable`);
    let after = -1;
    for (let v = 0; v < Math.max(count, 1); v++) {
      const [body, end] = expand(lines, i + 1, counts, { ...vars, [name]: v }, name);
      if (count > 0) out.push(...body);
      after = end;
    }
    i = after;
  }
  if (open !== undefined) throw new Error(`//#for ${open} is not closed`);
  return [out, i];
}

function substitute(line: string, vars: Readonly<Record<string, number>>): string {
  return line.replace(/\{([A-Za-z_]\w*)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole));
}
