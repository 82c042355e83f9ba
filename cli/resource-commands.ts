/**
 * The kubectl-shaped verbs: apply, create, get, describe, delete, scale, run, cordon, uncordon,
 * drain, events. Each talks to the cluster only through the bus: commands to resource actors,
 * reads from the store, Events from their stream.
 */
import { parseArgs } from 'node:util';
import { Informer, KvStore, Resources, recordedEvents, type Bus, type KubeEvent } from '../actors/index.js';
import {
  NotFoundError,
  ValidationError,
  isDns1123Label,
  isDns1123Subdomain,
  kindInfo,
  matchesSelector,
  normalize,
  parseSelector,
  resolveKind,
  stableJson,
  type KObject,
  type KindInfo,
  type LabelSelector,
} from '../protocol/index.js';
import { describeObject } from './describe.js';
import { readManifests } from './manifest-files.js';
import { eventsTable, nameOf, parseOutput, serialize, tableFor } from './printers.js';

export class UsageError extends Error {}

export interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  signal?: AbortSignal;
}

export function kindArg(name: string | undefined): KindInfo {
  if (!name) throw new UsageError('expected a resource kind (pods, deployments, replicasets, services, nodes, namespaces, events)');
  const info = resolveKind(name);
  if (!info) throw new UsageError(`the server doesn't have a resource type "${name}" (known: pods/po, deployments/deploy, replicasets/rs, services/svc, nodes/no, namespaces/ns, events/ev)`);
  return info;
}

/** `deploy/web` or `deploy web` → kind and name. */
function kindAndName(positionals: string[], usage: string): { info: KindInfo; name: string } {
  if (positionals.length === 1 && positionals[0]!.includes('/')) {
    const [k, n] = positionals[0]!.split('/', 2) as [string, string];
    return { info: kindArg(k), name: n };
  }
  if (positionals.length === 2) return { info: kindArg(positionals[0]), name: positionals[1]! };
  throw new UsageError(`usage: ${usage}`);
}

function resourceName(info: KindInfo): string {
  return info.apiVersion.includes('/') ? `${info.plural}.${info.apiVersion.split('/')[0]}` : info.plural;
}

function notFound(info: KindInfo, name: string): NotFoundError {
  return new NotFoundError(`${resourceName(info)} "${name}" not found`);
}

const nsOptions = {
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  server: { type: 'string' },
} as const;

async function ensureNamespace(res: Resources, ns: string, creating: Set<string>): Promise<void> {
  if (creating.has(ns)) return;
  const found = await res.get(kindInfo('Namespace')!, undefined, ns);
  if (!found) throw new NotFoundError(`namespaces "${ns}" not found; create it first (troupe create namespace ${ns}, or a Namespace in the same manifests)`);
}

function clean(o: KObject | undefined): string {
  if (!o) return '';
  const { resourceVersion: _rv, ...meta } = o.metadata;
  return stableJson({ ...o, metadata: meta });
}

export async function cmdApply(bus: Bus, args: string[], io: Io, create = false): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { filename: { type: 'string', short: 'f', multiple: true }, ...nsOptions } });
  if (!values.filename?.length) throw new UsageError(`usage: troupe ${create ? 'create' : 'apply'} -f FILE|DIR|- [-n NAMESPACE]`);
  const manifests = await readManifests(values.filename, values.namespace);
  const res = await Resources.open(bus);
  const creatingNs = new Set(manifests.filter((m) => m.object.kind === 'Namespace').map((m) => m.object.metadata.name));
  for (const ns of new Set(manifests.map((m) => m.object.metadata.namespace).filter((n): n is string => !!n))) await ensureNamespace(res, ns, creatingNs);
  // namespaces first, as kubectl orders them
  manifests.sort((a, b) => Number(b.object.kind === 'Namespace') - Number(a.object.kind === 'Namespace'));
  let failed = 0;
  for (const m of manifests) {
    const info = kindInfo(m.object.kind)!;
    try {
      const before = await res.get(info, m.object.metadata.namespace, m.object.metadata.name);
      const reply = await res.apply(m.object, { create });
      const verb = !before ? 'created' : clean(before) === clean(reply.object) ? 'unchanged' : 'configured';
      io.out.write(`${nameOf(info, m.object)} ${verb}\n`);
    } catch (err) {
      failed++;
      const e = err as Error & { details?: { reason?: string } };
      if (e.details?.reason === 'AlreadyExists') io.err.write(`Error from server (AlreadyExists): ${resourceName(info)} "${m.object.metadata.name}" already exists\n`);
      else io.err.write(`error: ${m.source}: ${e.message}\n`);
    }
  }
  return failed ? 1 : 0;
}

function selectorArg(l: string | undefined): LabelSelector | undefined {
  if (l === undefined) return undefined;
  try {
    return parseSelector(l);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export async function cmdGet(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, selector: { type: 'string', short: 'l' }, watch: { type: 'boolean', short: 'w' }, ...nsOptions },
  });
  const [kinds, ...names] = positionals;
  if (!kinds) throw new UsageError('usage: troupe get KIND [NAME...] [-o wide|yaml|json|name] [-l SELECTOR] [-n NAMESPACE | -A] [-w]');
  let format;
  try {
    format = parseOutput(values.output);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const selector = selectorArg(values.selector);
  const all = values['all-namespaces'] === true;
  const ns = values.namespace ?? 'default';
  if (['events', 'event', 'ev'].includes(kinds)) return printEvents(bus, { namespace: all ? undefined : ns, watch: values.watch, io });
  const infos = kinds.split(',').map((k) => kindArg(k));
  const res = await Resources.open(bus);
  const objects: { info: KindInfo; list: KObject[] }[] = [];
  let missing = 0;
  for (const info of infos) {
    let list: KObject[];
    if (names.length) {
      list = [];
      for (const n of names) {
        const o = await res.get(info, ns, n);
        if (o) list.push(o);
        else {
          io.err.write(`Error from server (NotFound): ${notFound(info, n).message}\n`);
          missing++;
        }
      }
    } else list = await res.list(info, { namespace: ns, all, selector });
    objects.push({ info, list });
  }
  const flat = objects.flatMap((o) => o.list.map((x) => ({ info: o.info, o: x })));
  if (format === 'json' || format === 'yaml') {
    const single = names.length === 1 && infos.length === 1 && flat.length === 1;
    io.out.write(serialize(single ? flat[0]!.o : flat.map((x) => x.o), format, single));
  } else if (format === 'name') {
    for (const x of flat) io.out.write(`${nameOf(x.info, x.o)}\n`);
  } else {
    if (flat.length === 0 && missing === 0) {
      io.err.write(infos.every((i) => !i.namespaced) || all ? 'No resources found\n' : `No resources found in ${ns} namespace.\n`);
    }
    objects.forEach((o, i) => {
      if (o.list.length === 0) return;
      if (i > 0 && objects.length > 1) io.out.write('\n');
      io.out.write(tableFor(o.info, o.list, { wide: format === 'wide', allNamespaces: all }));
    });
  }
  if (values.watch) {
    if (infos.length !== 1) throw new UsageError('--watch takes one kind');
    await watchKind(bus, infos[0]!, { namespace: all ? undefined : ns, names, selector, format, io });
  }
  return missing ? 1 : 0;
}

/** Prints each change of objects of a kind as it happens, until interrupted. */
async function watchKind(bus: Bus, info: KindInfo, o: { namespace?: string; names: string[]; selector?: LabelSelector; format: string; io: Io }): Promise<void> {
  const informer = new Informer(bus, await KvStore.open(bus, bus.subjects.stateBucket), info, undefined, o.namespace);
  let listed = false;
  informer.on((type, found) => {
    // the listing was printed already: from here on, each change
    if (!listed) return;
    const obj = type === 'delete' ? { ...found, metadata: { ...found.metadata, deletionTimestamp: found.metadata.deletionTimestamp ?? new Date().toISOString() } } : found;
    if (o.names.length && !o.names.includes(obj.metadata.name)) return;
    if (o.selector && !matchesSelector(o.selector, obj.metadata.labels)) return;
    if (o.format === 'json') o.io.out.write(`${JSON.stringify({ type: type === 'delete' ? 'DELETED' : 'MODIFIED', object: obj })}\n`);
    else if (o.format === 'name') o.io.out.write(`${nameOf(info, obj)}\n`);
    else o.io.out.write(`${tableFor(info, [obj], { wide: o.format === 'wide', allNamespaces: !o.namespace }).split('\n')[1]!}\n`);
  });
  await informer.start();
  listed = true;
  await new Promise<void>((resolve) => {
    if (o.io.signal?.aborted) resolve();
    o.io.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  await informer.stop();
}

async function readEvents(bus: Bus, namespace?: string): Promise<KubeEvent[]> {
  const latest = new Map<string, KubeEvent>();
  try {
    for await (const e of recordedEvents(bus, { namespace })) latest.set(`${e.metadata.namespace}/${e.metadata.name}`, e);
  } catch (err) {
    if (/not found/i.test((err as Error).message)) return [];
    throw err;
  }
  return [...latest.values()].sort((a, b) => a.lastTimestamp.localeCompare(b.lastTimestamp));
}

async function printEvents(bus: Bus, o: { namespace?: string; watch?: boolean; forObject?: { kind: string; name: string }; io: Io }): Promise<number> {
  const match = (e: KubeEvent) => !o.forObject || (e.involvedObject.kind === o.forObject.kind && e.involvedObject.name === o.forObject.name);
  if (!o.watch) {
    const events = (await readEvents(bus, o.namespace)).filter(match);
    if (events.length === 0) o.io.err.write(o.namespace ? `No events found in ${o.namespace} namespace.\n` : 'No events found.\n');
    else o.io.out.write(eventsTable(events, { allNamespaces: !o.namespace }));
    return 0;
  }
  let header = false;
  for await (const e of recordedEvents(bus, { namespace: o.namespace, follow: true, signal: o.io.signal })) {
    if (!match(e)) continue;
    const lines = eventsTable([e], { allNamespaces: !o.namespace }).split('\n');
    if (!header) o.io.out.write(`${lines[0]}\n`);
    header = true;
    o.io.out.write(`${lines[1]}\n`);
  }
  return 0;
}

export async function cmdEvents(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { watch: { type: 'boolean', short: 'w' }, for: { type: 'string' }, ...nsOptions } });
  let forObject;
  if (values.for) {
    const { info, name } = kindAndName([values.for], 'troupe events --for KIND/NAME');
    forObject = { kind: info.kind, name };
  }
  return printEvents(bus, { namespace: values['all-namespaces'] ? undefined : (values.namespace ?? 'default'), watch: values.watch, forObject, io });
}

export async function cmdDescribe(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { selector: { type: 'string', short: 'l' }, ...nsOptions } });
  const [kind, ...names] = positionals.length === 1 && positionals[0]!.includes('/') ? positionals[0]!.split('/') : positionals;
  const info = kindArg(kind);
  const ns = values.namespace ?? 'default';
  const res = await Resources.open(bus);
  const objs: KObject[] = [];
  if (names.length) {
    for (const n of names) {
      const o = await res.get(info, ns, n);
      if (!o) throw notFound(info, n);
      objs.push(o);
    }
  } else objs.push(...(await res.list(info, { namespace: ns, all: values['all-namespaces'], selector: selectorArg(values.selector) })));
  const events = await readEvents(bus, info.namespaced ? ns : undefined);
  for (const [i, o] of objs.entries()) {
    if (i > 0) io.out.write('\n\n');
    const ep = o.kind === 'Service' ? await res.get(kindInfo('Endpoints')!, o.metadata.namespace, o.metadata.name) : undefined;
    io.out.write(describeObject(o, events.filter((e) => e.involvedObject.kind === o.kind && e.involvedObject.name === o.metadata.name && (!e.involvedObject.uid || e.involvedObject.uid === o.metadata.uid)), Date.now(), ep));
  }
  return 0;
}

/** Waits until objects are gone from the store. */
async function waitGone(res: Resources, items: { info: KindInfo; ns?: string; name: string; uid?: string }[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let left = 0;
    for (const i of items) {
      const o = await res.get(i.info, i.ns, i.name);
      if (o && (!i.uid || o.metadata.uid === i.uid)) left++;
    }
    if (left === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function cmdDelete(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      selector: { type: 'string', short: 'l' },
      'grace-period': { type: 'string' },
      force: { type: 'boolean' },
      wait: { type: 'string' },
      all: { type: 'boolean' },
      'ignore-not-found': { type: 'boolean' },
      ...nsOptions,
    },
  });
  const ns = values.namespace ?? 'default';
  const grace = values['grace-period'] === undefined ? undefined : Number(values['grace-period']);
  if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw new UsageError(`--grace-period: expected seconds ≥ 0, got ${JSON.stringify(values['grace-period'])}`);
  const wait = values.wait === undefined ? true : values.wait !== 'false';
  const res = await Resources.open(bus);
  const targets: { info: KindInfo; ns?: string; name: string; uid?: string }[] = [];
  if (values.filename?.length) {
    for (const m of await readManifests(values.filename, values.namespace)) targets.push({ info: kindInfo(m.object.kind)!, ns: m.object.metadata.namespace, name: m.object.metadata.name });
  } else {
    const kinds = positionals.length === 1 && positionals[0]!.includes('/') ? [positionals[0]!.split('/')[0]!] : positionals.slice(0, 1);
    const names = positionals.length === 1 && positionals[0]!.includes('/') ? [positionals[0]!.split('/')[1]!] : positionals.slice(1);
    if (kinds.length === 0) throw new UsageError('usage: troupe delete KIND NAME... | KIND -l SELECTOR | KIND --all | -f FILE');
    for (const k of kinds[0]!.split(',')) {
      const info = kindArg(k);
      if (names.length) for (const n of names) targets.push({ info, ns, name: n });
      else if (values.selector !== undefined || values.all) {
        for (const o of await res.list(info, { namespace: ns, all: values['all-namespaces'], selector: selectorArg(values.selector) })) targets.push({ info, ns: o.metadata.namespace, name: o.metadata.name, uid: o.metadata.uid });
      } else throw new UsageError('expected a NAME, -l SELECTOR or --all: troupe delete KIND NAME');
    }
  }
  if (targets.length === 0) {
    io.err.write(`No resources found\n`);
    return 0;
  }
  let failed = 0;
  const done: typeof targets = [];
  for (const t of targets) {
    try {
      await res.send(t.info, t.ns, t.name, { type: 'delete', ...(t.uid ? { uid: t.uid } : {}), ...(values.force ? { force: true } : {}), ...(grace !== undefined ? { gracePeriodSeconds: grace } : {}) });
      io.out.write(`${t.info.kind.toLowerCase()}${t.info.apiVersion.includes('/') ? `.${t.info.apiVersion.split('/')[0]}` : ''} "${t.name}" deleted\n`);
      done.push(t);
    } catch (err) {
      if (err instanceof NotFoundError || (err as { code?: string }).code === 'TRP_ERR_NOT_FOUND') {
        if (values['ignore-not-found']) continue;
        io.err.write(`Error from server (NotFound): ${notFound(t.info, t.name).message}\n`);
      } else io.err.write(`error: ${(err as Error).message}\n`);
      failed++;
    }
  }
  if (wait && done.length && !(await waitGone(res, done, 120_000))) {
    io.err.write('error: timed out waiting for the deletion to finish\n');
    return 1;
  }
  return failed ? 1 : 0;
}

export async function cmdScale(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { replicas: { type: 'string' }, ...nsOptions } });
  const { info, name } = kindAndName(positionals, 'troupe scale deploy NAME --replicas N');
  if (info.kind !== 'Deployment' && info.kind !== 'ReplicaSet') throw new UsageError(`cannot scale ${info.plural}; scale deployments or replicasets`);
  const n = Number(values.replicas);
  if (values.replicas === undefined || !Number.isInteger(n) || n < 0) throw new UsageError(`--replicas: expected an integer ≥ 0, got ${JSON.stringify(values.replicas ?? '')}`);
  const res = await Resources.open(bus);
  const ns = values.namespace ?? 'default';
  if (!(await res.get(info, ns, name))) throw notFound(info, name);
  await res.send(info, ns, name, { type: 'patch', spec: { replicas: n } });
  io.out.write(`${nameOf(info, { metadata: { name } } as KObject)} scaled\n`);
  return 0;
}

function setFlag(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`${what}: expected KEY=VALUE, got ${JSON.stringify(kv)}`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

export async function cmdRun(bus: Bus, args: string[], io: Io): Promise<number> {
  const dash = args.indexOf('--');
  const flags = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? undefined : args.slice(dash + 1);
  const { values, positionals } = parseArgs({
    args: flags,
    strict: true,
    allowPositionals: true,
    options: {
      image: { type: 'string' },
      port: { type: 'string' },
      restart: { type: 'string' },
      labels: { type: 'string', short: 'l' },
      env: { type: 'string', multiple: true },
      command: { type: 'boolean' },
      ...nsOptions,
    },
  });
  if (positionals.length !== 1 || !values.image) throw new UsageError('usage: troupe run NAME --image REF [--port P] [--restart Always|OnFailure|Never] [--env K=V] [-l k=v,...] [-- COMMAND|ARGS...]');
  const name = positionals[0]!;
  if (!isDns1123Subdomain(name)) throw new ValidationError(`pod ${JSON.stringify(name)}: metadata.name: expected a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')`);
  const labels = values.labels ? setFlag(values.labels.split(','), '--labels') : { run: name };
  const env = Object.entries(setFlag(values.env, '--env')).map(([k, v]) => ({ name: k, value: v }));
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new UsageError(`--port: expected a port number, got ${JSON.stringify(values.port)}`);
  const restart = values.restart ?? 'Always';
  if (!['Always', 'OnFailure', 'Never'].includes(restart)) throw new UsageError(`--restart: expected Always, OnFailure or Never, got ${JSON.stringify(restart)}`);
  const container: Record<string, unknown> = { name: isDns1123Label(name) ? name : 'main', image: values.image };
  if (command?.length) container[values.command ? 'command' : 'args'] = command;
  if (env.length) container.env = env;
  if (port) container.ports = [{ containerPort: port }];
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: values.namespace ?? 'default', labels }, spec: { containers: [container], restartPolicy: restart } };
  const res = await Resources.open(bus);
  await ensureNamespace(res, pod.metadata.namespace, new Set());
  return createObject(res, normalize(pod, `pod ${JSON.stringify(name)}`), io);
}

/** Creates one object; an existing one is kubectl's AlreadyExists error (exit 1). */
export async function createObject(res: Resources, obj: KObject, io: Io, verb = 'created'): Promise<number> {
  const info = kindInfo(obj.kind)!;
  try {
    await res.apply(obj, { create: true });
  } catch (err) {
    if ((err as { details?: { reason?: string } }).details?.reason === 'AlreadyExists') {
      io.err.write(`Error from server (AlreadyExists): ${resourceName(info)} "${obj.metadata.name}" already exists\n`);
      return 1;
    }
    throw err;
  }
  io.out.write(`${info.kind.toLowerCase()}/${obj.metadata.name} ${verb}\n`);
  return 0;
}

export async function cmdCreateNamespace(bus: Bus, args: string[], io: Io): Promise<number> {
  const { positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { server: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('usage: troupe create namespace NAME');
  const name = positionals[0]!;
  if (!isDns1123Label(name)) throw new UsageError(`namespace ${JSON.stringify(name)}: metadata.name: expected a DNS-1123 label`);
  return createObject(await Resources.open(bus), normalize({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }), io);
}

/** `expose deployment NAME --port P [--target-port T] [--type NodePort] [--name SVC]`. */
export async function cmdExpose(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { port: { type: 'string' }, 'target-port': { type: 'string' }, type: { type: 'string' }, name: { type: 'string' }, protocol: { type: 'string' }, ...nsOptions },
  });
  const { info, name } = kindAndName(positionals, 'troupe expose deployment NAME --port P [--target-port T] [--type ClusterIP|NodePort] [--name SVC]');
  if (!['Deployment', 'ReplicaSet', 'Pod', 'Service'].includes(info.kind)) throw new UsageError(`cannot expose ${info.plural}`);
  const ns = values.namespace ?? 'default';
  const res = await Resources.open(bus);
  const src = await res.get(info, ns, name);
  if (!src) throw notFound(info, name);
  const selector: Record<string, string> | undefined =
    info.kind === 'Pod' ? src.metadata.labels : info.kind === 'Service' ? src.spec.selector : src.spec.selector?.matchLabels;
  if (!selector || Object.keys(selector).length === 0) throw new ValidationError(`${info.kind.toLowerCase()} "${name}" has no labels or matchLabels selector to expose`);
  const ports = (info.kind === 'Pod' ? src.spec.containers : info.kind === 'Service' ? [] : src.spec.template.spec.containers).flatMap((c: { ports?: { containerPort: number }[] }) => c.ports ?? []);
  const port = values.port === undefined ? ports[0]?.containerPort : Number(values.port);
  if (!port || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--port: expected a port number (the exposed object declares none to default to)');
  const target = values['target-port'] === undefined ? port : /^\d+$/.test(values['target-port']) ? Number(values['target-port']) : values['target-port'];
  const type = values.type ?? 'ClusterIP';
  if (!['ClusterIP', 'NodePort'].includes(type)) throw new UsageError(`--type: expected ClusterIP or NodePort, got ${JSON.stringify(type)}`);
  const svc = normalize(
    { apiVersion: 'v1', kind: 'Service', metadata: { name: values.name ?? name, namespace: ns }, spec: { type, selector, ports: [{ port, targetPort: target, protocol: values.protocol ?? 'TCP' }] } },
    `service ${JSON.stringify(values.name ?? name)}`,
  );
  return createObject(res, svc, io, 'exposed');
}

export async function cmdCordon(bus: Bus, args: string[], io: Io, cordon: boolean): Promise<number> {
  const { positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { server: { type: 'string' } } });
  if (positionals.length === 0) throw new UsageError(`usage: troupe ${cordon ? 'cordon' : 'uncordon'} NODE...`);
  const res = await Resources.open(bus);
  const NODE = kindInfo('Node')!;
  for (const n of positionals) {
    const node = await res.get(NODE, undefined, n);
    if (!node) throw notFound(NODE, n);
    if (!!node.spec?.unschedulable === cordon) {
      io.out.write(`node/${n} already ${cordon ? 'cordoned' : 'uncordoned'}\n`);
      continue;
    }
    await res.send(NODE, undefined, n, { type: 'patch', spec: { unschedulable: cordon ? true : null } });
    io.out.write(`node/${n} ${cordon ? 'cordoned' : 'uncordoned'}\n`);
  }
  return 0;
}

export async function cmdDrain(bus: Bus, args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { force: { type: 'boolean' }, 'grace-period': { type: 'string' }, timeout: { type: 'string' }, 'ignore-daemonsets': { type: 'boolean' }, 'delete-emptydir-data': { type: 'boolean' }, server: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new UsageError('usage: troupe drain NODE [--force] [--grace-period S] [--timeout S]');
  const node = positionals[0]!;
  await cmdCordon(bus, [node], io, true);
  const res = await Resources.open(bus);
  const POD = kindInfo('Pod')!;
  const pods = (await res.list(POD, { all: true })).filter((p) => p.spec.nodeName === node && !p.metadata.deletionTimestamp);
  const unmanaged = pods.filter((p) => !p.metadata.ownerReferences?.some((r) => r.controller));
  if (unmanaged.length && !values.force) {
    io.err.write(`error: cannot delete pods not managed by a ReplicaSet (use --force to override): ${unmanaged.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(', ')}\n`);
    return 1;
  }
  const grace = values['grace-period'] === undefined ? undefined : Number(values['grace-period']);
  for (const p of pods) {
    io.out.write(`evicting pod ${p.metadata.namespace}/${p.metadata.name}\n`);
    await res.send(POD, p.metadata.namespace, p.metadata.name, { type: 'delete', uid: p.metadata.uid, ...(grace !== undefined && grace >= 0 ? { gracePeriodSeconds: grace } : {}) }).catch((err) => {
      if ((err as { code?: string }).code !== 'TRP_ERR_NOT_FOUND') throw err;
    });
  }
  const timeout = values.timeout === undefined ? 300_000 : Number(values.timeout) * 1000;
  if (!(await waitGone(res, pods.map((p) => ({ info: POD, ns: p.metadata.namespace, name: p.metadata.name, uid: p.metadata.uid })), timeout))) {
    io.err.write('error: timed out waiting for the pods to go\n');
    return 1;
  }
  for (const p of pods) io.out.write(`pod/${p.metadata.name} evicted\n`);
  io.out.write(`node/${node} drained\n`);
  return 0;
}

