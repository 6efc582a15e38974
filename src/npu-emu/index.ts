/**
 * NPU emulation layer: a machine model of decoupled Cube/Vector accelerators,
 * the attention-prefill schedules of FastAttention as task graphs, a
 * discrete-event simulator, a Gantt chart, the tiling-AllReduce model and a
 * report comparing predictions with the paper.
 */
export * from './errors.js';
export * from './machine.js';
export * from './taskGraph.js';
export * from './simulator.js';
export * from './schedules.js';
export * from './gantt.js';
export * from './allReduce.js';
export * from './report.js';
export * from './webgpuPipeline.js';
export * from './webgpuAllReduce.js';
