/**
 * actors/: the actor runtime on NATS (bus, KV, events stream, hosting xstate machines as
 * addressable, persisted, supervised actors), the embedded nats-server, and the typed client.
 */
export { Bus } from './bus.js';
export type { BusOptions, BusStatus, RequestOptions, SubscribeOptions, Handler } from './bus.js';
export { busChild } from './bus-child.js';
export { KvStore, kvError } from './kv-store.js';
export type { Entry, WatchEvent, KvOpenOptions } from './kv-store.js';
export { ensureEventStream, replayEvents } from './event-stream.js';
export type { EventStreamOptions, RecordedEvent, ReplayOptions } from './event-stream.js';
export { natsServerChild, natsServerConfig, startNatsServer, NATS_INSTALL_HINT } from './nats-server.js';
export type { NatsServerOptions, NatsServerInfo, EmbeddedNats } from './nats-server.js';
export { defineKind, Persist } from './actor-kind.js';
export type { ActorKind, ActorKey, SnapshotReply, ReplyOf, CommandOf } from './actor-kind.js';
export { actorChild } from './actor-child.js';
export type { ActorChildOptions } from './actor-child.js';
export { ActorHost } from './actor-host.js';
export type { ActorHostOptions, StoredActor } from './actor-host.js';
export { hostChild } from './host-child.js';
export type { HostChildOptions } from './host-child.js';
export { ActorClient } from './client.js';
export type { WatchOptions } from './client.js';
export { AsyncQueue } from './async-queue.js';
export { Metrics, RateLimit } from './metrics.js';
export type { Labels } from './metrics.js';
export { ActorFailedError, ActorDoneError, BusConnectError, PersistError } from './errors.js';
export { resourceMachine, resourceCommands, decide, mergePatch, kindOf } from './resource-machine.js';
export type { ResourceCommand, ResourceContext, Decision } from './resource-machine.js';
export { resourceKinds, summaryOf } from './resource-kinds.js';
export type { ResourceReply, ResourceSummary } from './resource-kinds.js';
export { Resources, objectOf, nsToken, objectInSnapshot } from './resources.js';
export { Informer, objectKey } from './informer.js';
export type { InformerHandler } from './informer.js';
export { WorkQueue } from './work-queue.js';
export { EventRecorder, ensureRecordedEventStream, recordedEvents, registerRecordedEvents, RECORDED_EVENT_TYPE } from './event-recorder.js';
export type { RecordedEvent as KubeEvent } from './event-recorder.js';
export { ControlPlane, LEASE_KEY } from './control-plane.js';
export type { ControlPlaneOptions } from './control-plane.js';
export { Scheduler, tolerates } from './scheduler.js';
export { NodeLifecycle, UNREACHABLE_TAINT } from './node-lifecycle.js';
export type { NodeLifecycleOptions } from './node-lifecycle.js';
export { DeploymentController, REVISION, HASH_LABEL, revisionOf, resolveIntOrPercent } from './deployment-controller.js';
export { ReplicaSetController } from './replicaset-controller.js';
export { GarbageCollector } from './garbage-collector.js';
export { controllerRef, isActive, isReady, availability, podRequests, condition } from './pod-util.js';
export { NodeIpam, parseCidr, formatIp, ipNumber, inCidr } from './node-ipam.js';
export { ServiceController, namedPort, NODE_PORT_MIN, NODE_PORT_MAX } from './service-controller.js';
export type { Admission } from './resource-machine.js';
