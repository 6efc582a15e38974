/** What the runtime found on the adapter and device, and why it will pick a kernel tier. */

/** A subgroup-matrix configuration as reported by `adapter.info.subgroupMatrixConfigs`. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface DeviceCapabilities {
  adapter: { vendor: string; architecture: string; device: string; description: string; isSoftware: boolean };
  features: { shaderF16: boolean; subgroups: boolean; subgroupMatrix: boolean; timestampQuery: boolean };
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  /** Subgroup size range when the adapter reports it. */
  subgroupSize: { min: number; max: number } | null;
  limits: {
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupSizeX: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxStorageBuffersPerShaderStage: number;
    minStorageBufferOffsetAlignment: number;
  };
}

/** Features the runtime asks for when the adapter has them. */
export const WANTED_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'] as const;

/** Limits the runtime raises to the adapter's maximum when it creates the device. */
export const WANTED_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
] as const;

type InfoWithExtras = GPUAdapterInfo & {
  subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  isFallbackAdapter?: boolean;
};

export function describeCapabilities(device: GPUDevice, info: GPUAdapterInfo): DeviceCapabilities {
  const i = info as InfoWithExtras;
  const f = device.features;
  const L = device.limits;
  const isSoftware = i.architecture === 'swiftshader' || i.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe/i.test(`${i.description} ${i.device}`);
  return {
    adapter: { vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '', description: i.description ?? '', isSoftware },
    features: {
      shaderF16: f.has('shader-f16'),
      subgroups: f.has('subgroups'),
      subgroupMatrix: f.has('chromium-experimental-subgroup-matrix'),
      timestampQuery: f.has('timestamp-query'),
    },
    subgroupMatrixConfigs: (i.subgroupMatrixConfigs ?? []).map((c) => ({
      componentType: c.componentType,
      resultComponentType: c.resultComponentType,
      M: c.M,
      N: c.N,
      K: c.K,
    })),
    subgroupSize: i.subgroupMinSize ? { min: i.subgroupMinSize, max: i.subgroupMaxSize ?? i.subgroupMinSize } : null,
    limits: {
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: L.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: L.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: L.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxStorageBuffersPerShaderStage: L.maxStorageBuffersPerShaderStage,
      minStorageBufferOffsetAlignment: L.minStorageBufferOffsetAlignment,
    },
  };
}
