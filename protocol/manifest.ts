/**
 * Manifests: YAML (multi-document, aliases capped) or JSON text → validated, defaulted objects.
 * Everything is checked before anything is returned, so a caller applies all or nothing.
 */
import { copyJson } from './copy.js';
import { parseAllDocuments } from 'yaml';
import { ValidationError } from './errors.js';
import { isDns1123Subdomain } from './names.js';
import { KINDS, isLabelValue, kindInfo, type KObject, type LabelSelector } from './resources.js';
import { check, describeValue, type Issue } from './schema.js';

/** Largest manifest text accepted (as the API server's request limit, smaller). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** YAML aliases resolved per document before it is refused (a "billion laughs" guard). */
export const MAX_ALIASES = 100;

export interface ParsedManifest {
  object: KObject;
  /** Where it came from, for messages: "web.yaml (document 2)". */
  source: string;
}

/** Parses every document of a text; throws one ValidationError naming every problem. */
export function parseManifests(text: string, source = 'manifest'): ParsedManifest[] {
  const size = Buffer.byteLength(text);
  if (size > MAX_MANIFEST_BYTES) {
    throw new ValidationError(`${source}: the manifest is ${size} bytes; at most ${MAX_MANIFEST_BYTES} bytes are accepted`, { size, max: MAX_MANIFEST_BYTES });
  }
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false, version: '1.2' });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: ParsedManifest[] = [];
  const problems: string[] = [];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${source} (document ${i + 1})` : source;
    if (doc.errors.length > 0) {
      problems.push(`${where}: not valid YAML or JSON: ${doc.errors[0]!.message.split('\n')[0]}`);
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message.split('\n')[0]} (at most ${MAX_ALIASES} alias expansions per document)`);
      return;
    }
    if (value === null || value === undefined) return; // an empty document, as kubectl skips it
    try {
      for (const obj of expandList(value, where)) out.push({ object: normalize(obj, where), source: where });
    } catch (err) {
      problems.push((err as Error).message);
    }
  });
  if (problems.length > 0) throw new ValidationError(problems.join('\n'), { problems });
  if (out.length === 0) throw new ValidationError(`${source}: no objects in it`);
  return out;
}

function expandList(value: unknown, where: string): unknown[] {
  if (value && typeof value === 'object' && !Array.isArray(value) && (value as { kind?: unknown }).kind === 'List') {
    const v = value as Record<string, unknown>;
    const extra = Object.keys(v).filter((k) => !['apiVersion', 'kind', 'items', 'metadata'].includes(k));
    if (extra.length) throw new ValidationError(`${where}: List: ${extra[0]}: unknown field`);
    if (!Array.isArray(v.items)) throw new ValidationError(`${where}: List: items: expected an array of objects, got ${describeValue(v.items)}`);
    const problems: string[] = [];
    const items = v.items.map((item, i) => {
      try {
        return normalize(item, `${where}: List items[${i}]`);
      } catch (err) {
        problems.push((err as Error).message);
        return undefined;
      }
    });
    if (problems.length) throw new ValidationError(`${problems.join('\n')}\n${where}: nothing of the List was applied`);
    return items;
  }
  return [value];
}

/**
 * Pods made by `podLike`, ReplicaSets made by `replicaSetOf`, in this process: already what
 * normalize() makes of them, so normalize() hands them back as they are. Nothing decoded from the
 * bus or a file can be here, only objects this process built from a normalized one, and stored
 * objects are never changed in place.
 */
const preNormalized = new WeakSet<object>();

/**
 * A pod as normalize() makes it, from `shell` (a normalized pod; a ReplicaSet's template made into
 * one) with another name and, if given, bound to `nodeName`: what a ReplicaSet controller creates
 * hundreds of from one template. The template is checked and copied once, not once per pod (that
 * was 3% of a busy control plane's CPU, and a copy of the spec kept per pod); its pods share the
 * shell's parts. `shell` must be what normalize() returned: it is trusted. A name or node that is
 * not a DNS-1123 subdomain goes through normalize(), which says what is wrong with it.
 */
export function podLike(shell: KObject, name: string, nodeName?: string): KObject {
  const pod: KObject = { ...shell, metadata: { ...shell.metadata, name }, spec: nodeName === undefined ? shell.spec : { ...shell.spec, nodeName } };
  if (shell.kind !== 'Pod' || !isDns1123Subdomain(name) || (nodeName !== undefined && !isDns1123Subdomain(nodeName))) return normalize(pod);
  preNormalized.add(pod);
  return pod;
}

/** The label that tells a Deployment's ReplicaSets (and their pods) apart: its template's hash. */
export const HASH_LABEL = 'pod-template-hash';
/** A Deployment's revision, and each of its ReplicaSets'. */
export const REVISION = 'deployment.kubernetes.io/revision';

/**
 * A ReplicaSet of `deployment` for its template (hash `hash`), as normalize() makes it: what a
 * Deployment controller creates on every rollout. The Deployment must be what normalize()
 * returned (a stored one): its template and selector are valid, and defaulted, so only what is
 * new here is checked (the name, the hash, the count); the resource actor then takes the object
 * without checking it all again (0.3 ms of a cold apply-to-running path, on this machine). What
 * is not valid goes through normalize(), which says what is wrong with it.
 */
export function replicaSetOf(deployment: KObject, hash: string, revision: number, replicas: number): KObject {
  const d = deployment;
  const tpl = copyJson(d.spec.template) as KObject;
  tpl.metadata = { ...tpl.metadata, labels: { ...tpl.metadata?.labels, [HASH_LABEL]: hash } };
  const selector = copyJson(d.spec.selector) as LabelSelector;
  const rs: KObject = {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: `${d.metadata.name}-${hash}`.slice(0, 253),
      namespace: d.metadata.namespace,
      labels: { ...tpl.metadata.labels },
      annotations: { [REVISION]: String(revision), 'deployment.kubernetes.io/desired-replicas': String(d.spec.replicas) },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      replicas,
      minReadySeconds: d.spec.minReadySeconds ?? 0,
      selector: { ...selector, matchLabels: { ...selector.matchLabels, [HASH_LABEL]: hash } },
      template: tpl,
    },
  };
  const trusted =
    d.kind === 'Deployment' &&
    typeof d.metadata.uid === 'string' &&
    isDns1123Subdomain(rs.metadata.name) &&
    isLabelValue(hash) &&
    Number.isSafeInteger(replicas) &&
    replicas >= 0 &&
    Number.isSafeInteger(revision) &&
    revision > 0;
  if (!trusted) return normalize(rs);
  preNormalized.add(rs);
  return rs;
}

/** Validates one object against its kind and fills in Kubernetes' defaults. */
export function normalize(value: unknown, where = 'object'): KObject {
  if (preNormalized.has(value as object)) return value as KObject;
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new ValidationError(`${where}: expected an object with apiVersion, kind and metadata, got ${describeValue(value)}`);
  const v = value as Record<string, unknown>;
  const info = typeof v.kind === 'string' ? kindInfo(v.kind) : undefined;
  const name = (v.metadata as { name?: unknown } | undefined)?.name;
  const what = `${typeof v.kind === 'string' ? v.kind.toLowerCase() : 'object'}${typeof name === 'string' ? ` ${JSON.stringify(name)}` : ''}`;
  if (!info) {
    throw new ValidationError(`${where}: ${what}: kind: expected one of ${KINDS.filter((k) => k.kind !== 'Node').map((k) => k.kind).concat('List').join(', ')}, got ${describeValue(v.kind)}`);
  }
  if (v.apiVersion !== info.apiVersion) throw new ValidationError(`${where}: ${what}: apiVersion: expected "${info.apiVersion}" for kind ${info.kind}, got ${describeValue(v.apiVersion)}`);
  const issues: Issue[] = check(info.schema, value);
  if (issues.length === 0) issues.push(...crossChecks(v as unknown as KObject));
  if (issues.length > 0) throw new ValidationError(`${where}: ${what}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`, { issues });
  return withDefaults(copyJson(v) as unknown as KObject);
}

function crossChecks(obj: KObject): Issue[] {
  const issues: Issue[] = [];
  if (obj.kind === 'Deployment' || obj.kind === 'ReplicaSet') {
    const sel = obj.spec.selector as LabelSelector;
    if (!sel.matchLabels && !sel.matchExpressions) issues.push({ path: 'spec.selector', message: 'expected matchLabels or matchExpressions; an empty selector would select every pod' });
    const tl = obj.spec.template?.metadata?.labels ?? {};
    if (!matchesSelector(sel, tl)) {
      issues.push({ path: 'spec.template.metadata.labels', message: `selector does not match template labels (selector ${formatSelector(sel)}, labels ${JSON.stringify(tl)})` });
    }
    if (obj.kind === 'Deployment') {
      const ru = obj.spec.strategy?.rollingUpdate;
      if (ru && isZero(ru.maxSurge ?? '25%') && isZero(ru.maxUnavailable ?? '25%')) {
        issues.push({ path: 'spec.strategy.rollingUpdate.maxUnavailable', message: 'may not be 0 when maxSurge is 0' });
      }
    }
  }
  if (obj.kind === 'Pod' && !isDns1123Subdomain(obj.metadata.name)) issues.push({ path: 'metadata.name', message: 'expected a DNS-1123 subdomain' });
  return issues;
}

function isZero(v: number | string): boolean {
  return v === 0 || v === '0%';
}

/** Kubernetes' defaults for what the user left out. */
export function withDefaults(obj: KObject): KObject {
  const info = kindInfo(obj.kind)!;
  if (info.namespaced) obj.metadata.namespace ??= 'default';
  else delete obj.metadata.namespace;
  if (obj.kind === 'Deployment' || obj.kind === 'ReplicaSet') {
    obj.spec.replicas ??= 1;
    obj.spec.minReadySeconds ??= 0;
    defaultPodSpec(obj.spec.template.spec);
    obj.spec.template.metadata ??= {};
    delete obj.spec.template.metadata.creationTimestamp;
  }
  if (obj.kind === 'Deployment') {
    obj.spec.strategy ??= {};
    obj.spec.strategy.type ??= 'RollingUpdate';
    if (obj.spec.strategy.type === 'RollingUpdate') {
      obj.spec.strategy.rollingUpdate ??= {};
      obj.spec.strategy.rollingUpdate.maxSurge ??= '25%';
      obj.spec.strategy.rollingUpdate.maxUnavailable ??= '25%';
    }
    obj.spec.revisionHistoryLimit ??= 10;
    obj.spec.progressDeadlineSeconds ??= 600;
  }
  if (obj.kind === 'Pod') defaultPodSpec(obj.spec);
  if (obj.kind === 'Service') {
    obj.spec.type ??= 'ClusterIP';
    obj.spec.sessionAffinity ??= 'None';
    for (const p of obj.spec.ports ?? []) {
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port;
    }
  }
  return obj;
}

function defaultPodSpec(spec: any): void {
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  for (const c of spec.containers) {
    c.imagePullPolicy ??= imageTag(c.image) === 'latest' ? 'Always' : 'IfNotPresent';
    for (const p of c.ports ?? []) p.protocol ??= 'TCP';
  }
}

function imageTag(ref: string): string {
  if (ref.includes('@')) return 'digest';
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  const colon = last.indexOf(':');
  return colon < 0 ? 'latest' : last.slice(colon + 1);
}

/** Does a label selector select these labels? */
export function matchesSelector(sel: LabelSelector | undefined, labels: Record<string, string> = {}): boolean {
  if (!sel) return false;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    switch (r.operator) {
      case 'In':
        if (!has || !r.values!.includes(labels[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && r.values!.includes(labels[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

export function formatSelector(sel: LabelSelector): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const r of sel.matchExpressions ?? []) {
    if (r.operator === 'Exists') parts.push(r.key);
    else if (r.operator === 'DoesNotExist') parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${r.operator === 'In' ? 'in' : 'notin'} (${r.values!.join(',')})`);
  }
  return parts.join(',');
}

/**
 * Parses kubectl's `-l` syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
 * Throws a ValidationError naming the part it cannot read.
 */
export function parseSelector(text: string): LabelSelector {
  const sel: LabelSelector = {};
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() || parts.length) parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    const bad = () => new ValidationError(`selector ${JSON.stringify(text)}: cannot read ${JSON.stringify(p)} (expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key)`);
    if ((m = /^([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)$/.exec(p))) {
      if (m[2] === '!=') (sel.matchExpressions ??= []).push({ key: m[1]!, operator: 'NotIn', values: [m[3]!] });
      else (sel.matchLabels ??= {})[m[1]!] = m[3]!;
    } else if ((m = /^([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(p))) {
      const values = m[3]!.split(',').map((x) => x.trim()).filter(Boolean);
      if (values.length === 0) throw bad();
      (sel.matchExpressions ??= []).push({ key: m[1]!, operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^(!?)([^\s=!(),]+)$/.exec(p))) {
      (sel.matchExpressions ??= []).push({ key: m[2]!, operator: m[1] ? 'DoesNotExist' : 'Exists' });
    } else throw bad();
  }
  return sel;
}

/** A stable JSON rendering (sorted keys), for hashing and comparing. */
export function stableJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  const keys = Object.keys(v as object).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

/**
 * `stableJson(a) === stableJson(b)` without building either string: the same JSON once keys are
 * sorted (keys whose value is undefined left out; undefined, NaN and functions read as null). The
 * controllers and resource actors compare objects this way on every command; the strings were
 * much of a busy control plane's garbage.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ao = a !== null && typeof a === 'object';
  const bo = b !== null && typeof b === 'object';
  if (!ao || !bo) return !ao && !bo && (JSON.stringify(a) ?? 'null') === (JSON.stringify(b) ?? 'null');
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (!Object.prototype.hasOwnProperty.call(x, k) || x[k] === undefined) continue;
    n++;
    if (!Object.prototype.hasOwnProperty.call(y, k) || y[k] === undefined || !sameJson(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.prototype.hasOwnProperty.call(y, k) && y[k] !== undefined) n--;
  return n === 0;
}

const SAFE = 'bcdfghjklmnpqrstvwxz2456789';

/** FNV-1a (32 bit) of the template, written in Kubernetes' safe alphabet: the pod-template-hash. */
export function templateHash(template: unknown): string {
  const text = stableJson(template);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  let out = '';
  let n = h;
  do {
    out += SAFE[n % SAFE.length];
    n = Math.floor(n / SAFE.length);
  } while (n > 0);
  return out;
}

/** Five random characters of the safe alphabet, as generateName appends. */
export function randomSuffix(n = 5): string {
  let out = '';
  for (let i = 0; i < n; i++) out += SAFE[Math.floor(Math.random() * SAFE.length)];
  return out;
}
