/**
 * protocol/: the wire. Envelope, codec, schemas, subject names, version rule, typed errors.
 * Pure code, no I/O; imports nothing else of troupe.
 */
export {
  TroupeError,
  defineError,
  errorFromWire,
  toTroupeError,
  registeredErrorCodes,
  InternalError,
  DecodeError,
  PayloadTooLargeError,
  VersionError,
  UnknownTypeError,
  ValidationError,
  SubjectError,
  TimeoutError,
  NotFoundError,
  ConflictError,
  UnavailableError,
} from './errors.js';
export type { WireError, ErrorDetails } from './errors.js';
export { s, check, validate, formatIssues, describeValue } from './schema.js';
export type { Schema, Infer, Issue, ObjectSchema, ObjectOf } from './schema.js';
export { newId, newInstanceId, ENVELOPE_KEYS } from './envelope.js';
export type { Envelope } from './envelope.js';
export { packValue, unpackValue } from './value-codec.js';
export { Codec, DEFAULT_MAX_PAYLOAD, SHARED_STRUCTURES, isTroupeError } from './codec.js';
export type { CodecOptions, EncodeOptions } from './codec.js';
export { MessageType, MessageTypes, builtinMessageTypes, commandBody, errorBody, eventBody } from './messages.js';
export type { CommandBody, ErrorBody, EventBody } from './messages.js';
export { PROTOCOL_MAJOR, PROTOCOL_MINOR, PROTOCOL_VERSION, checkVersion, formatVersion } from './version.js';
export { subjects, token, untoken } from './subjects.js';
export type { Subjects, ResourceKey } from './subjects.js';
export { labelName, subdomainName, isDns1123Label, isDns1123Subdomain, isIPv4, DNS1123_LABEL, DNS1123_SUBDOMAIN } from './names.js';
export { parseQuantity, milliCpu, bytes, quantity } from './quantity.js';
export { container, securityContext, probe, portRef } from './container.js';
export type { Container, SecurityContext, Probe } from './container.js';
export { heartbeatBody, HEARTBEAT_TYPE, podIntentBody, podIntentPod, POD_INTENT_TYPE, podStoredBody, POD_STORED_TYPE, proxySyncedBody, PROXY_SYNCED_TYPE } from './node.js';
export {
  KINDS,
  CLUSTER_SCOPE,
  kindInfo,
  resolveKind,
  labels,
  labelKey,
  labelValue,
  labelSelector,
  podSpec,
  taint,
  intOrPercent,
  objectMeta,
  isLabelKey,
  isLabelValue,
  deploymentSchema,
  replicaSetSchema,
  podSchema,
  serviceSchema,
  namespaceSchema,
  nodeSchema,
  endpointsSchema,
} from './resources.js';
export type { KObject, KindInfo, LabelSelector, PodSpec, PodTemplate, Toleration, Taint, OwnerReference, ObjectMeta } from './resources.js';
export {
  parseManifests,
  normalize,
  podLike,
  replicaSetOf,
  HASH_LABEL,
  REVISION,
  withDefaults,
  matchesSelector,
  formatSelector,
  parseSelector,
  stableJson,
  sameJson,
  templateHash,
  randomSuffix,
  MAX_MANIFEST_BYTES,
  MAX_ALIASES,
} from './manifest.js';
export type { ParsedManifest } from './manifest.js';
export { serviceEnv } from './service-env.js';
export { copyJson } from './copy.js';
