/**
 * The resource types troupe stores, Kubernetes-shaped: metadata, selectors, PodSpec, and the
 * schemas of apps/v1 Deployment and ReplicaSet, v1 Pod, Service, Namespace and Node. Fields
 * troupe does not support are rejected by these schemas with their path, never ignored.
 */
import { container } from './container.js';
import { isIPv4, labelName, subdomainName } from './names.js';
import { describeValue, s, type Infer, type Schema } from './schema.js';

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isLabelKey(k: string): boolean {
  const slash = k.lastIndexOf('/');
  if (slash < 0) return LABEL_NAME.test(k);
  return LABEL_PREFIX.test(k.slice(0, slash)) && LABEL_NAME.test(k.slice(slash + 1));
}

export function isLabelValue(v: string): boolean {
  return v === '' || LABEL_NAME.test(v);
}

export const labelKey: Schema<string> = {
  expected: 'a label key ([prefix/]name, name at most 63 alphanumerics, -, _ or .)',
  check: (v, path, issues) => {
    if (typeof v === 'string' && isLabelKey(v)) return true;
    issues.push({ path, message: `expected a label key ([prefix/]name: name at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending alphanumeric), got ${describeValue(v)}` });
    return false;
  },
};

export const labelValue: Schema<string> = {
  expected: 'a label value',
  check: (v, path, issues) => {
    if (typeof v === 'string' && isLabelValue(v)) return true;
    issues.push({ path, message: `expected a label value (empty, or at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending alphanumeric), got ${describeValue(v)}` });
    return false;
  },
};

export const labels = s.record(labelValue, { key: labelKey, maxKeys: 64 });
const annotations = s.record(s.string({ max: 256 * 1024 }), { key: labelKey, maxKeys: 128 });

const ownerReference = s.object({
  apiVersion: s.string({ max: 64 }),
  kind: s.string({ max: 64 }),
  name: subdomainName,
  uid: s.string({ min: 1, max: 64 }),
  controller: s.optional(s.bool()),
  blockOwnerDeletion: s.optional(s.bool()),
});
export type OwnerReference = Infer<typeof ownerReference>;

/** ObjectMeta. The server-owned fields are accepted (a `get -o yaml` applies back) and replaced. */
export function objectMeta(name: Schema<string>) {
  return s.object({
    name,
    namespace: s.optional(labelName),
    labels: s.optional(labels),
    annotations: s.optional(annotations),
    uid: s.optional(s.string({ max: 64 })),
    resourceVersion: s.optional(s.string({ max: 32 })),
    generation: s.optional(s.int({ min: 0 })),
    creationTimestamp: s.optional(s.nullable(s.string({ max: 64 }))),
    deletionTimestamp: s.optional(s.string({ max: 64 })),
    deletionGracePeriodSeconds: s.optional(s.int({ min: 0 })),
    ownerReferences: s.optional(s.array(ownerReference, { max: 16 })),
  });
}
const meta = objectMeta(subdomainName);
export type ObjectMeta = Infer<typeof meta>;

const selectorRequirement = s.refine(
  s.object({
    key: labelKey,
    operator: s.oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const),
    values: s.optional(s.array(labelValue, { max: 256 })),
  }),
  (r) => {
    const n = r.values?.length ?? 0;
    if ((r.operator === 'In' || r.operator === 'NotIn') && n === 0) return `operator ${r.operator} needs at least one value`;
    if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && n > 0) return `operator ${r.operator} takes no values`;
    return undefined;
  },
);
export const labelSelector = s.object({
  matchLabels: s.optional(labels),
  matchExpressions: s.optional(s.array(selectorRequirement, { max: 32 })),
});
export type LabelSelector = Infer<typeof labelSelector>;

const nodeSelectorRequirement = s.refine(
  s.object({
    key: labelKey,
    operator: s.oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'] as const),
    values: s.optional(s.array(s.string({ max: 63 }), { max: 256 })),
  }),
  (r) => {
    const n = r.values?.length ?? 0;
    if ((r.operator === 'In' || r.operator === 'NotIn') && n === 0) return `operator ${r.operator} needs at least one value`;
    if ((r.operator === 'Gt' || r.operator === 'Lt') && (n !== 1 || !/^-?\d+$/.test(r.values![0]!))) return `operator ${r.operator} needs exactly one integer value`;
    if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && n > 0) return `operator ${r.operator} takes no values`;
    return undefined;
  },
);

const toleration = s.refine(
  s.object({
    key: s.optional(labelKey),
    operator: s.optional(s.oneOf(['Exists', 'Equal'] as const)),
    value: s.optional(labelValue),
    effect: s.optional(s.oneOf(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const)),
    tolerationSeconds: s.optional(s.int({ min: 0 })),
  }),
  (t) => {
    if (t.operator === 'Exists' && t.value) return 'operator Exists takes no value';
    if (!t.key && t.operator !== 'Exists') return 'a toleration without a key must use operator Exists';
    if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') return 'tolerationSeconds applies only to effect NoExecute';
    return undefined;
  },
);
export type Toleration = Infer<typeof toleration>;

export const taint = s.object({
  key: labelKey,
  value: s.optional(labelValue),
  effect: s.oneOf(['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const),
  timeAdded: s.optional(s.string({ max: 64 })),
});
export type Taint = Infer<typeof taint>;

export const podSpec = s.refine(
  s.object({
    containers: s.array(container, { min: 1, max: 64 }),
    restartPolicy: s.optional(s.oneOf(['Always', 'OnFailure', 'Never'] as const)),
    terminationGracePeriodSeconds: s.optional(s.int({ min: 0, max: 86400 })),
    nodeSelector: s.optional(s.record(labelValue, { key: labelKey, maxKeys: 64 })),
    nodeName: s.optional(subdomainName),
    affinity: s.optional(
      s.object({
        nodeAffinity: s.optional(
          s.object({
            requiredDuringSchedulingIgnoredDuringExecution: s.optional(
              s.object({ nodeSelectorTerms: s.array(s.object({ matchExpressions: s.optional(s.array(nodeSelectorRequirement, { max: 32 })) }), { min: 1, max: 32 }) }),
            ),
          }),
        ),
      }),
    ),
    tolerations: s.optional(s.array(toleration, { max: 64 })),
    hostname: s.optional(labelName),
  }),
  (spec) => {
    const seen = new Set<string>();
    for (const c of spec.containers) {
      if (seen.has(c.name)) return `containers: two containers are named ${JSON.stringify(c.name)}`;
      seen.add(c.name);
    }
    return undefined;
  },
);
export type PodSpec = Infer<typeof podSpec>;

const podTemplate = s.object({
  metadata: s.optional(s.object({ labels: s.optional(labels), annotations: s.optional(annotations), name: s.optional(subdomainName), creationTimestamp: s.optional(s.nullable(s.string({ max: 64 }))) })),
  spec: podSpec,
});
export type PodTemplate = Infer<typeof podTemplate>;

/** An int, or a percentage string ("25%"), as maxSurge and maxUnavailable take. */
export const intOrPercent: Schema<number | string> = {
  expected: 'an integer ≥ 0 or a percentage such as "25%"',
  check: (v, path, issues) => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return true;
    if (typeof v === 'string' && /^(\d{1,3})%$/.test(v) && Number(v.slice(0, -1)) <= 100) return true;
    issues.push({ path, message: `expected an integer ≥ 0 or a percentage from "0%" to "100%", got ${describeValue(v)}` });
    return false;
  },
};

const status = s.optional(s.any());

export const deploymentSchema = s.object({
  apiVersion: s.literal('apps/v1'),
  kind: s.literal('Deployment'),
  metadata: meta,
  spec: s.object({
    replicas: s.optional(s.int({ min: 0, max: 100_000 })),
    selector: labelSelector,
    template: podTemplate,
    strategy: s.optional(
      s.refine(
        s.object({
          type: s.optional(s.oneOf(['RollingUpdate', 'Recreate'] as const)),
          rollingUpdate: s.optional(s.object({ maxSurge: s.optional(intOrPercent), maxUnavailable: s.optional(intOrPercent) })),
        }),
        (st) => (st.type === 'Recreate' && st.rollingUpdate ? 'rollingUpdate may only be given with type RollingUpdate' : undefined),
      ),
    ),
    minReadySeconds: s.optional(s.int({ min: 0, max: 86400 })),
    revisionHistoryLimit: s.optional(s.int({ min: 0, max: 1000 })),
    progressDeadlineSeconds: s.optional(s.int({ min: 1, max: 86400 * 7 })),
    paused: s.optional(s.bool()),
  }),
  status,
});

export const replicaSetSchema = s.object({
  apiVersion: s.literal('apps/v1'),
  kind: s.literal('ReplicaSet'),
  metadata: meta,
  spec: s.object({
    replicas: s.optional(s.int({ min: 0, max: 100_000 })),
    selector: labelSelector,
    template: podTemplate,
    minReadySeconds: s.optional(s.int({ min: 0, max: 86400 })),
  }),
  status,
});

export const podSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Pod'),
  metadata: meta,
  spec: podSpec,
  status,
});

const servicePort = s.object({
  name: s.optional(labelName),
  protocol: s.optional(s.oneOf(['TCP', 'UDP'] as const)),
  port: s.int({ min: 1, max: 65535 }),
  targetPort: s.optional(s.refine(s.any(), (v) => (typeof v === 'number' ? (Number.isInteger(v) && v >= 1 && v <= 65535 ? undefined : `expected a port number 1-65535, got ${v}`) : typeof v === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) && v.length <= 15 ? undefined : `expected a port number or a port name, got ${describeValue(v)}`))),
  nodePort: s.optional(s.int({ min: 30000, max: 32767 })),
});

export const serviceSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Service'),
  metadata: objectMeta(labelName),
  spec: s.refine(
    s.object({
      type: s.optional(s.oneOf(['ClusterIP', 'NodePort'] as const)),
      selector: s.optional(s.record(labelValue, { key: labelKey, maxKeys: 64 })),
      ports: s.optional(s.array(servicePort, { max: 64 })),
      clusterIP: s.optional(
        s.refine(s.string({ max: 64 }), (v) => (v === 'None' || v === '' || isIPv4(v) ? undefined : `expected an IPv4 address or "None", got ${JSON.stringify(v)}`)),
      ),
      sessionAffinity: s.optional(s.oneOf(['None', 'ClientIP'] as const)),
    }),
    (spec) => {
      const names = new Set<string>();
      for (const p of spec.ports ?? []) {
        if ((spec.ports?.length ?? 0) > 1 && !p.name) return 'ports: every port needs a name when there are several';
        if (p.name && names.has(p.name)) return `ports: two ports are named ${JSON.stringify(p.name)}`;
        if (p.name) names.add(p.name);
        if (p.nodePort !== undefined && spec.type !== 'NodePort') return 'ports: nodePort may only be set on a Service of type NodePort';
      }
      return undefined;
    },
  ),
  status,
});

export const namespaceSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Namespace'),
  metadata: objectMeta(labelName),
  spec: s.optional(s.object({})),
  status,
});

const endpointAddress = s.object({
  ip: s.string({ max: 64 }),
  nodeName: s.optional(s.string({ max: 253 })),
  targetRef: s.optional(s.object({ kind: s.string({ max: 64 }), name: s.string({ max: 253 }), namespace: s.optional(s.string({ max: 63 })), uid: s.optional(s.string({ max: 64 })) })),
});

export const endpointsSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Endpoints'),
  metadata: objectMeta(labelName),
  subsets: s.optional(
    s.array(
      s.object({
        addresses: s.optional(s.array(endpointAddress, { max: 10_000 })),
        notReadyAddresses: s.optional(s.array(endpointAddress, { max: 10_000 })),
        ports: s.optional(s.array(s.object({ name: s.optional(s.string({ max: 63 })), port: s.int({ min: 1, max: 65535 }), protocol: s.optional(s.oneOf(['TCP', 'UDP'] as const)) }), { max: 64 })),
      }),
      { max: 1000 },
    ),
  ),
});

export const nodeSchema = s.object({
  apiVersion: s.literal('v1'),
  kind: s.literal('Node'),
  metadata: meta,
  spec: s.optional(
    s.object({
      unschedulable: s.optional(s.bool()),
      taints: s.optional(s.array(taint, { max: 64 })),
      podCIDR: s.optional(s.string({ max: 64 })),
    }),
  ),
  status,
});

/** Any stored object, loosely typed: the kind's schema has checked it. */
export interface KObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { name: string };
  spec?: any;
  status?: any;
}

export interface KindInfo {
  /** Kubernetes kind ("Deployment"). */
  kind: string;
  apiVersion: string;
  /** The actor kind and subject token ("deployment"). */
  token: string;
  /** Plural resource name as kubectl knows it ("deployments"). */
  plural: string;
  aliases: string[];
  namespaced: boolean;
  schema: Schema<unknown>;
}

export const KINDS: KindInfo[] = [
  { kind: 'Pod', apiVersion: 'v1', token: 'pod', plural: 'pods', aliases: ['pod', 'po'], namespaced: true, schema: podSchema },
  { kind: 'Deployment', apiVersion: 'apps/v1', token: 'deployment', plural: 'deployments', aliases: ['deployment', 'deploy'], namespaced: true, schema: deploymentSchema },
  { kind: 'ReplicaSet', apiVersion: 'apps/v1', token: 'replicaset', plural: 'replicasets', aliases: ['replicaset', 'rs'], namespaced: true, schema: replicaSetSchema },
  { kind: 'Service', apiVersion: 'v1', token: 'service', plural: 'services', aliases: ['service', 'svc'], namespaced: true, schema: serviceSchema },
  { kind: 'Namespace', apiVersion: 'v1', token: 'namespace', plural: 'namespaces', aliases: ['namespace', 'ns'], namespaced: false, schema: namespaceSchema },
  { kind: 'Node', apiVersion: 'v1', token: 'node', plural: 'nodes', aliases: ['node', 'no'], namespaced: false, schema: nodeSchema },
  { kind: 'Endpoints', apiVersion: 'v1', token: 'endpoints', plural: 'endpoints', aliases: ['ep'], namespaced: true, schema: endpointsSchema },
];

/** The namespace token under which cluster-scoped objects are keyed. */
export const CLUSTER_SCOPE = 'cluster';

export function kindInfo(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind);
}

/** Looks a kind up as kubectl does: plural, singular, short name, or Kind. */
export function resolveKind(name: string): KindInfo | undefined {
  const n = name.toLowerCase();
  return KINDS.find((k) => k.plural === n || k.aliases.includes(n) || k.kind.toLowerCase() === n);
}
