/** Where an operator records its dispatches: the caller's command encoder, or a compute pass it already opened. */
export type EncodeTarget = GPUCommandEncoder | GPUComputePassEncoder;

function isPass(t: EncodeTarget): t is GPUComputePassEncoder {
  return typeof (t as GPUComputePassEncoder).dispatchWorkgroups === 'function';
}

/** Record one dispatch, opening (and closing) a compute pass only when given a command encoder. */
export function encodeDispatch(
  target: EncodeTarget,
  pipeline: GPUComputePipeline,
  group: GPUBindGroup,
  dynamicOffsets: number[],
  workgroups: readonly [number, number, number],
  label: string,
): void {
  const pass = isPass(target) ? target : target.beginComputePass({ label });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group, dynamicOffsets);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
  if (pass !== target) pass.end();
}

/** Record with `encode` into a fresh command encoder, submit it, and resolve when the GPU is done. */
export async function submitAndWait(device: GPUDevice, encode: (encoder: GPUCommandEncoder) => void): Promise<void> {
  const encoder = device.createCommandEncoder();
  encode(encoder);
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
}
