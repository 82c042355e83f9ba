/**
 * node-agent/: the kubelet of troupe. So far: the image store (import, tag, list, remove, unpack),
 * safe layer extraction, image references and configs.
 */
export { ImageStore, MediaType } from './image-store.js';
export type { ImageInfo, ResolvedImage } from './image-store.js';
export { parseImageRef, familiarName, DEFAULT_REGISTRY } from './image-ref.js';
export type { ImageRef } from './image-ref.js';
export { applyChanges } from './image-config.js';
export type { ImageConfig, ImageRuntimeConfig } from './image-config.js';
export { extractLayer, RootfsWriter, safeRelative, symlinkStaysInside } from './rootfs-extract.js';
export type { ExtractStats } from './rootfs-extract.js';
export { readTar, ByteReader } from './tar-reader.js';
export type { TarEntry, EntryType } from './tar-reader.js';
export { ImageFormatError, UnsafeArchiveError, ImageNotFoundError, ImageRefError, RuntimeError } from './errors.js';
export { ContainerRuntime } from './container-runtime.js';
export { Agent, heartbeatBody, statsBody } from './agent.js';
export { serveNode, nodeCommand, rfc3339Nano } from './node-service.js';
export { runProbes, probeTiming, netProbe, resolvePort } from './probes.js';
export type { ProbeEvent, ProbeExecutor, ProbeResult, ProbeTiming } from './probes.js';
export { ClusterImages } from './cluster-images.js';
export { pullImage } from './registry.js';
export type { PullOptions } from './registry.js';
export type { ClusterImageRecord } from './cluster-images.js';
export type { NodeCommand, LogsReply, ExecReply } from './node-service.js';
export type { AgentOptions, NodeInfo } from './agent.js';
export type { RunRequest, Started, Exited, ContainerExitReason, RuntimeOptions, ContainerMeta, LogLine } from './container-runtime.js';
export { Crun, namespacePrefix, CRUN_INSTALL_HINT } from './crun.js';
export type { CrunResult } from './crun.js';
export { detectCgroups, ContainerCgroup, sweepNodeCgroups } from './cgroups.js';
export type { CgroupInfo, CgroupLayout, CgroupStats, Limits } from './cgroups.js';
export { containerMachine, restartDelay } from './container-machine.js';
export type { ContainerContext, ContainerInput, ContainerState, ExitInfo, PreparedImage, RestartPolicy } from './container-machine.js';
export { podMachine, podStatus, podEvents, podSpecSchema } from './pod-machine.js';
export type { PodStatus, PodPhase, ContainerStatus, PodRunSpec, NodeTuning } from './pod-machine.js';
export { podKind, boundContainerMachine, DEFAULT_TUNING } from './pod-runtime.js';
export { buildSpec, mergeCommand, mergeEnv, limitsFor, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, DEFAULT_PIDS_LIMIT } from './oci-spec.js';
export type { SpecInput } from './oci-spec.js';
export { HollowFleet } from './hollow-node.js';
export type { HollowOptions } from './hollow-node.js';
export { PodSync } from './pod-sync.js';
export { Cni, bridgeName, CNI_PATH } from './cni.js';
export type { CniOptions, CniResult } from './cni.js';
