/**
 * Feature sections of a WGSL source: code that needs a device feature (f16
 * types, subgroup builtins) cannot sit in a module compiled without the matching
 * `enable`, even behind a constant that is false. Such code is written between
 * `//#if NAME`, optional `//#else` and `//#endif` lines; {@link selectWgslSections}
 * keeps one branch per section and blanks the rest (line numbers of compiler
 * messages stay those of the file).
 */

const DIRECTIVE = /^\s*\/\/#(if|else|endif)\b\s*(\w*)\s*$/;

/**
 * Keep the `//#if NAME` branch of every section when `flags[NAME]` is true, the
 * `//#else` branch otherwise. Every NAME used must be given; sections nest.
 */
export function selectWgslSections(source: string, flags: Readonly<Record<string, boolean>>): string {
  const lines = source.split('\n');
  // One entry per open section: is its current branch kept, and has it seen #else.
  const open: { name: string; keep: boolean; inElse: boolean }[] = [];
  const kept = () => open.every((s) => s.keep);
  const out = lines.map((line, i) => {
    const d = DIRECTIVE.exec(line);
    if (!d) return kept() ? line : '';
    const [, word, name] = d;
    if (word === 'if') {
      if (!(name in flags)) throw new Error(`line ${i + 1}: //#if ${name}: no such flag (given: ${Object.keys(flags).join(', ') || 'none'})`);
      open.push({ name, keep: flags[name], inElse: false });
    } else {
      const top = open.at(-1);
      if (!top) throw new Error(`line ${i + 1}: //#${word} without //#if`);
      if (name && name !== top.name) throw new Error(`line ${i + 1}: //#${word} ${name} closes //#if ${top.name}`);
      if (word === 'else') {
        if (top.inElse) throw new Error(`line ${i + 1}: second //#else for //#if ${top.name}`);
        top.inElse = true;
        top.keep = !flags[top.name];
      } else open.pop();
    }
    return '';
  });
  if (open.length > 0) throw new Error(`//#if ${open.at(-1)!.name} is not closed`);
  return out.join('\n');
}
