/**
 * WGSL snippets shared by several kernels, spliced in where a kernel says
 * `//#include NAME` (WGSL has no imports). One copy of the tiling-mask
 * arithmetic and of the prefill parameter layout serves every tier.
 */
import prefillParams from '../../shaders/common/prefillParams.wgsl?raw';
import tilingMask from '../../shaders/common/tilingMask.wgsl?raw';

export const WGSL_INCLUDES: Readonly<Record<string, string>> = { prefillParams, tilingMask };

/** Replace every `//#include NAME` line with the snippet of that name. */
export function resolveIncludes(source: string, includes: Readonly<Record<string, string>> = WGSL_INCLUDES): string {
  return source.replace(/^\/\/#include\s+(\w+)\s*$/gm, (_line, name: string) => {
    const snippet = includes[name];
    if (snippet === undefined) throw new Error(`WGSL include ${name} is unknown (known: ${Object.keys(includes).join(', ')})`);
    return snippet;
  });
}
