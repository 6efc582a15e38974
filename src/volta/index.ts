/**
 * The Volta layout path (FastAttention on Volta-class tensor cores), in pure
 * TypeScript: MMA fragment layouts, accumulator reuse between the two GEMMs of
 * attention, and the workgroup-memory plan of the Q, K and V tiles.
 *
 * For a kernel generator: `voltaFragment(variant, grid).elements[lane]` lists
 * the (row, col) each value of a lane holds; `elementOffset(tileLayout, row, col)`
 * is the swizzled element offset of (row, col) in a planned tile, and
 * `swizzleXor(swizzle, row)` the XOR applied to the row's chunk indices.
 */
export * from './mmaLayouts.js';
export * from './fragmentConverter.js';
export * from './smemPlanner.js';
export * from './kernelTiles.js';
export * from './demoData.js';
export * from './kernelTables.js';
export * from './voltaAttention.js';
