/**
 * The container part of a PodSpec (v1.Container), as far as troupe runs it. Unknown fields are
 * rejected by the schema, not ignored.
 */
import { describeValue, s, type Infer, type Schema } from './schema.js';
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

/** A port by number, or by the name of one of the container's ports. */
export const portRef: Schema<number | string> = {
  expected: 'a port number (1-65535) or a port name',
  check: (v, path, issues) => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return true;
    if (typeof v === 'string' && v.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v)) return true;
    issues.push({ path: path || '(root)', message: `expected a port number (1-65535) or a port name, got ${describeValue(v)}` });
    return false;
  },
};

/** A probe's handler and timing, with Kubernetes' defaults (see probeDefaults). */
export const probe = s.refine(s.object({
  exec: s.optional(s.object({ command: s.array(s.string({ max: 1 << 16 }), { min: 1, max: 1024 }) })),
  httpGet: s.optional(
    s.object({
      path: s.optional(s.string({ max: 2048, pattern: /^\/[^\s]*$/, patternName: 'an absolute URL path without spaces' })),
      port: portRef,
      host: s.optional(s.string({ max: 253, pattern: /^[a-zA-Z0-9.:-]+$/, patternName: 'a host name or address' })),
      scheme: s.optional(s.literal('HTTP')),
      httpHeaders: s.optional(s.array(s.object({ name: s.string({ min: 1, max: 256, pattern: /^[A-Za-z0-9-]+$/, patternName: 'a header name' }), value: s.string({ max: 4096, pattern: /^[^\r\n]*$/, patternName: 'a header value (one line)' }) }), { max: 32 })),
    }),
  ),
  tcpSocket: s.optional(s.object({ port: portRef, host: s.optional(s.string({ max: 253, pattern: /^[a-zA-Z0-9.:-]+$/, patternName: 'a host name or address' })) })),
  initialDelaySeconds: s.optional(s.int({ min: 0, max: 86400 })),
  periodSeconds: s.optional(s.int({ min: 1, max: 86400 })),
  timeoutSeconds: s.optional(s.int({ min: 1, max: 86400 })),
  successThreshold: s.optional(s.int({ min: 1, max: 1000 })),
  failureThreshold: s.optional(s.int({ min: 1, max: 1000 })),
  terminationGracePeriodSeconds: s.optional(s.int({ min: 1, max: 86400 })),
}), (p) => {
  const n = [p.exec, p.httpGet, p.tcpSocket].filter((h) => h !== undefined).length;
  return n === 1 ? undefined : `expected exactly one handler (exec, httpGet or tcpSocket), got ${n}`;
});
export type Probe = Infer<typeof probe>;

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
  livenessProbe: s.optional(probe),
  readinessProbe: s.optional(probe),
  startupProbe: s.optional(probe),
});
export type Container = Infer<typeof container>;
