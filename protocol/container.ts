/**
 * The container part of a PodSpec (v1.Container), as far as troupe runs it. Unknown fields are
 * rejected by the schema, not ignored.
 */
import { s, type Infer } from './schema.js';
import { labelName } from './names.js';
import { quantity } from './quantity.js';

const envVar = s.object({ name: s.string({ min: 1, max: 253, pattern: /^[-._a-zA-Z][-._a-zA-Z0-9]*$/, patternName: 'an environment variable name' }), value: s.optional(s.string({ max: 1 << 20 })) });

const port = s.object({
  name: s.optional(s.string({ max: 15, pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, patternName: 'an IANA service name (lower-case, at most 15)' })),
  containerPort: s.int({ min: 1, max: 65535 }),
  hostPort: s.optional(s.int({ min: 1, max: 65535 })),
  protocol: s.optional(s.oneOf(['TCP', 'UDP', 'SCTP'] as const)),
});

const resourceList = s.object({ cpu: s.optional(quantity), memory: s.optional(quantity), pids: s.optional(quantity) });

const capName = s.string({ min: 1, max: 32, pattern: /^[A-Z_]+$/, patternName: 'a capability name such as NET_ADMIN' });

export const securityContext = s.object({
  runAsUser: s.optional(s.int({ min: 0, max: 2 ** 31 - 1 })),
  runAsGroup: s.optional(s.int({ min: 0, max: 2 ** 31 - 1 })),
  runAsNonRoot: s.optional(s.bool()),
  readOnlyRootFilesystem: s.optional(s.bool()),
  allowPrivilegeEscalation: s.optional(s.bool()),
  privileged: s.optional(s.literal(false)),
  capabilities: s.optional(s.object({ add: s.optional(s.array(capName, { max: 64 })), drop: s.optional(s.array(capName, { max: 64 })) })),
});
export type SecurityContext = Infer<typeof securityContext>;

export const container = s.object({
  name: labelName,
  image: s.string({ min: 1, max: 512 }),
  command: s.optional(s.array(s.string({ max: 1 << 16 }), { max: 1024 })),
  args: s.optional(s.array(s.string({ max: 1 << 16 }), { max: 1024 })),
  env: s.optional(s.array(envVar, { max: 1024 })),
  workingDir: s.optional(s.string({ max: 4096, pattern: /^\//, patternName: 'an absolute path' })),
  ports: s.optional(s.array(port, { max: 128 })),
  resources: s.optional(s.object({ limits: s.optional(resourceList), requests: s.optional(resourceList) })),
  securityContext: s.optional(securityContext),
  imagePullPolicy: s.optional(s.oneOf(['Always', 'IfNotPresent', 'Never'] as const)),
});
export type Container = Infer<typeof container>;
