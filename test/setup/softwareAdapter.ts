// Tests run on a real WebGPU implementation: dawn.node. Without a GPU driver
// (CI), select SwiftShader's Vulkan driver before the workers start. Set
// FASTATTN_USE_SYSTEM_VULKAN=1 to test on the machine's own GPU instead.
import { swiftShaderEnv } from '../../src/runtime/softwareAdapter.js';

export default function setup(): void {
  if (process.env.FASTATTN_USE_SYSTEM_VULKAN === '1') return;
  const env = swiftShaderEnv();
  if (!env) throw new Error('@sparticuz/chromium is not installed: no software Vulkan driver for the WebGPU tests');
  Object.assign(process.env, env);
}
