#!/usr/bin/env -S node --max-semi-space-size=32
/**
 * The `troupe` command. Talks to the cluster only through the bus.
 */
import { parseArgs } from 'node:util';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION, formatVersion, TroupeError } from '../protocol/index.js';
import { createLogger, findProgram, isLogLevel, LOG_LEVELS, type Logger } from '../supervisor/index.js';
import { resolveServer } from './context.js';
import { exec as podExec, logs as podLogs } from './pod-commands.js';
import { Bus } from '../actors/index.js';
import { isDns1123Label, isIPv4 } from '../protocol/index.js';
import { VERSION } from './version.js';
import { limitHeapGrowth } from './heap.js';
import { favorDynamicCgroups, type FavorDynmodsResult } from '../node-agent/cgroups.js';
import { UsageError, cmdApply, cmdCreateNamespace, cmdExpose, cmdCordon, cmdDelete, cmdDescribe, cmdDrain, cmdEvents, cmdGet, cmdRun, cmdScale, type Io } from './resource-commands.js';
import { cmdRollout } from './rollout.js';
import { ControlPlane, parseCidr } from '../actors/index.js';

const USAGE = `troupe — a container orchestrator built as an actor system

Usage:
  troupe up [--data-dir DIR] [--port N] [--cluster NAME] [--server URL] [--node-name NAME] [--no-agent] [--no-favor-dynmods]
            [--cluster-cidr CIDR] [--service-cidr CIDR] [--node-ip IP]
                                   bring up the one-node cluster (embedded nats-server, store, node agent)
  troupe agent --node-name NAME [--server URL] [--data-dir DIR] [--node-ip IP] [--no-service-proxy] [--no-favor-dynmods]
               [--drain MS] [--backoff-base MS] [--backoff-cap MS]
                                   run a node agent (runs pods with crun)
  troupe controller [--server URL] [--cluster-cidr CIDR] [--service-cidr CIDR]
                                   run the control plane (a standby takes over if the leader dies)
  troupe apply -f FILE|DIR|- [-n NS]
                                   create or update objects from manifests (all or nothing)
  troupe create -f FILE | create namespace NAME
  troupe get KIND [NAME...] [-o wide|yaml|json|name] [-l SELECTOR] [-n NS | -A] [-w]
                                   KIND: pods/po, deployments/deploy, replicasets/rs, services/svc,
                                   nodes/no, namespaces/ns, endpoints/ep, events/ev
  troupe describe KIND [NAME...]   details, conditions, container states and recent events
  troupe delete KIND NAME... | KIND -l SELECTOR | -f FILE [--grace-period S] [--force] [--wait=false]
  troupe scale deploy NAME --replicas N
  troupe rollout status|history|undo|restart|pause|resume deploy/NAME [--to-revision N]
  troupe run NAME --image REF [--port P] [--restart POLICY] [--env K=V] [-- ARGS...]
  troupe expose deploy NAME --port P [--target-port T] [--type ClusterIP|NodePort] [--name SVC]
                                   a Service in front of a Deployment's pods
  troupe cordon|uncordon NODE      mark a node (un)schedulable
  troupe drain NODE [--force]      cordon, then evict its pods
  troupe events [-n NS | -A] [-w] [--for KIND/NAME]
  troupe logs POD [-c CONTAINER] [-n NAMESPACE] [--tail N] [--previous] [--timestamps] [-f]
                                   print a container's output
  troupe exec POD [-c CONTAINER] [-n NAMESPACE] -- COMMAND [ARG...]
                                   run a command in a container; exits with its exit code
  troupe image import FILE REF [--change 'CMD …']...
                                   import a rootfs tarball as an image, usable on every node
  troupe image load -i FILE       load a docker-save or OCI image archive (every name in it)
  troupe image pull REF [--insecure] pull from an OCI registry into the cluster (--insecure: plain http)
  troupe image ls | tag SRC DST | rm REF
  troupe version                   print the version
  troupe help                      this text

Global flags:
  --log-level LEVEL   ${LOG_LEVELS.join('|')} (default info)
  --server URL        NATS URL of the cluster (or TROUPE_SERVER; default from ~/.troupe/context.json)
`;


function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/troupe' : join(homedir(), '.troupe', 'data');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case 'version':
    case '--version':
      process.stdout.write(`troupe ${VERSION} (protocol ${formatVersion(PROTOCOL_VERSION)})\n`);
      return 0;
    case 'up':
      return cmdUp(rest);
    case 'agent':
      return cmdAgent(rest);
    case 'logs':
      return cmdLogs(rest);
    case 'image':
      return cmdImage(rest);
    case 'exec':
      return cmdExec(rest);
    case 'controller':
      return cmdController(rest);
    case 'apply':
      return withCli(rest, (bus, io) => cmdApply(bus, rest, io));
    case 'create':
      if (rest[0] === 'namespace' || rest[0] === 'ns') return withCli(rest, (bus, io) => cmdCreateNamespace(bus, rest.slice(1), io));
      return withCli(rest, (bus, io) => cmdApply(bus, rest, io, true));
    case 'get':
      return withCli(rest, (bus, io) => cmdGet(bus, rest, io));
    case 'describe':
      return withCli(rest, (bus, io) => cmdDescribe(bus, rest, io));
    case 'delete':
      return withCli(rest, (bus, io) => cmdDelete(bus, rest, io));
    case 'scale':
      return withCli(rest, (bus, io) => cmdScale(bus, rest, io));
    case 'rollout':
      return withCli(rest, (bus, io) => cmdRollout(bus, rest, io));
    case 'run':
      return withCli(rest, (bus, io) => cmdRun(bus, rest, io));
    case 'cordon':
    case 'uncordon':
      return withCli(rest, (bus, io) => cmdCordon(bus, rest, io, command === 'cordon'));
    case 'drain':
      return withCli(rest, (bus, io) => cmdDrain(bus, rest, io));
    case 'events':
      return withCli(rest, (bus, io) => cmdEvents(bus, rest, io));
    case 'expose':
      return withCli(rest, (bus, io) => cmdExpose(bus, rest, io));
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}; see \`troupe help\``);
  }
}

async function cmdUp(args: string[]): Promise<number> {
  const { detectCgroups, namespacePrefix } = await import('../node-agent/index.js');
  const { up } = await import('./up.js');
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      cluster: { type: 'string' },
      server: { type: 'string' },
      'log-level': { type: 'string' },
      'node-name': { type: 'string' },
      'no-agent': { type: 'boolean' },
      'no-favor-dynmods': { type: 'boolean' },
      'cluster-cidr': { type: 'string' },
      'service-cidr': { type: 'string' },
      'node-ip': { type: 'string' },
    },
  });
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  if (values['node-name'] !== undefined && !isDns1123Label(values['node-name'])) throw new UsageError(`--node-name: expected a DNS-1123 label, got ${JSON.stringify(values['node-name'])}`);
  const port = values.port === undefined ? 4222 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected a port number from 0 to 65535, got ${JSON.stringify(values.port)}`);
  // the node agent runs crun, which needs a mount namespace without the hybrid cgroup2 mount
  if (!values['no-agent'] && !values['no-favor-dynmods']) favorCgroupChanges();
  const reexec = values['no-agent'] ? [] : namespacePrefix(detectCgroups());
  if (reexec.length > 0 && process.env.TROUPE_MOUNT_NS !== '1') return reexecIn(reexec);
  limitHeapGrowth();
  const logger = createLogger({ level });
  logFavorResult(logger);
  const dataDir = values['data-dir'] ?? defaultDataDir();
  const cluster = values.cluster ?? 'default';
  const clusterCidr = clusterCidrFlag(values['cluster-cidr']);
  const serviceCidr = serviceCidrFlag(values['service-cidr']);
  const nodeIp = ipFlag('node-ip', values['node-ip']);
  const c = await up({ dataDir, port, cluster, logger, server: values.server, nodeName: values['no-agent'] ? null : values['node-name'], clusterCidr, serviceCidr, nodeIp });
  process.stdout.write(`troupe is up: cluster "${cluster}" on ${c.url} (data in ${dataDir})\n` + `  the CLI on this machine finds it through ${join(process.env.TROUPE_HOME ?? join(homedir(), '.troupe'), 'context.json')}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    c.stop().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  const reason = await c.supervisor.exited;
  if (reason.type === 'error' && !stopping) {
    logger.fatal({ err: reason.error }, 'the cluster supervisor gave up');
    return 1;
  }
  return 0;
}

async function cmdAgent(args: string[]): Promise<number> {
  const { Agent, detectCgroups, namespacePrefix } = await import('../node-agent/index.js');
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      server: { type: 'string' },
      'node-name': { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'backoff-base': { type: 'string' },
      'backoff-cap': { type: 'string' },
      'stats-interval': { type: 'string' },
      'node-ip': { type: 'string' },
      'no-service-proxy': { type: 'boolean' },
      'no-favor-dynmods': { type: 'boolean' },
      drain: { type: 'string' },
    },
  });
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const nodeName = values['node-name'];
  if (!nodeName || !isDns1123Label(nodeName)) throw new UsageError(`--node-name: expected a DNS-1123 label, got ${JSON.stringify(nodeName ?? '')}`);
  const nodeIp = ipFlag('node-ip', values['node-ip']);
  const ms = (flag: 'backoff-base' | 'backoff-cap' | 'stats-interval' | 'drain') => {
    const v = values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag}: expected milliseconds ≥ 1, got ${JSON.stringify(v)}`);
    return n;
  };
  const tuning = { ...(ms('backoff-base') ? { backoffBaseMs: ms('backoff-base') } : {}), ...(ms('backoff-cap') ? { backoffCapMs: ms('backoff-cap') } : {}) };
  // crun needs a mount namespace without the hybrid layout's cgroup2 mount: enter one, once
  if (!values['no-favor-dynmods']) favorCgroupChanges();
  const reexec = namespacePrefix(detectCgroups());
  if (reexec.length > 0 && process.env.TROUPE_MOUNT_NS !== '1') return reexecIn(reexec);
  const logger = createLogger({ level });
  logFavorResult(logger);
  const { server, cluster } = resolveServer(values.server);
  const dataDir = values['data-dir'] ?? join(defaultDataDir(), 'agents', nodeName);
  const bus = await Bus.connect({ servers: server, cluster, name: `agent-${nodeName}`, logger });
  const agent = new Agent({ bus, nodeName, dataDir, logger, tuning, statsMs: ms('stats-interval'), nodeIp, serviceProxy: !values['no-service-proxy'], drainMs: ms('drain') });
  await agent.start();
  process.stdout.write(`troupe agent ${nodeName} is up (cluster "${cluster}" on ${server}, data in ${dataDir})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await agent.stop();
  await bus.close();
  // the containers keep running for the next agent to adopt: their shims' handles must not hold
  // this process (nor must a shim still waiting for its bundle)
  process.exit(0);
}

/** Finds --server among a command's arguments, connects, runs, closes. */
async function withCli(args: string[], run: (bus: Bus, io: Io) => Promise<number>): Promise<number> {
  const i = args.findIndex((a) => a === '--server' || a.startsWith('--server='));
  const server = i < 0 ? undefined : args[i]!.includes('=') ? args[i]!.slice('--server='.length) : args[i + 1];
  const bus = await connectCli(server);
  const ac = new AbortController();
  const onSig = () => ac.abort();
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    return await run(bus, { out: process.stdout, err: process.stderr, signal: ac.signal });
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
    await bus.close().catch(() => undefined);
  }
}

async function cmdController(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { server: { type: 'string' }, 'log-level': { type: 'string' }, 'not-ready-after': { type: 'string' }, 'lease-ms': { type: 'string' }, 'cluster-cidr': { type: 'string' }, 'service-cidr': { type: 'string' } },
  });
  const level = values['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const num = (flag: 'not-ready-after' | 'lease-ms') => {
    const v = values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 100) throw new UsageError(`--${flag}: expected milliseconds ≥ 100, got ${JSON.stringify(v)}`);
    return n;
  };
  const clusterCidr = clusterCidrFlag(values['cluster-cidr']);
  const serviceCidr = serviceCidrFlag(values['service-cidr']);
  const heapGrowth = limitHeapGrowth();
  const logger = createLogger({ level });
  logger.debug({ heapGrowingPercent: heapGrowth }, 'heap growth limited');
  const { server, cluster } = resolveServer(values.server);
  const bus = await Bus.connect({ servers: server, cluster, name: 'troupe-controller', logger });
  const ac = new AbortController();
  let stopping = false;
  const stop = () => {
    stopping = true;
    ac.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.stdout.write(`troupe controller is up (cluster "${cluster}" on ${server})\n`);
  while (!stopping) {
    let cp: ControlPlane;
    try {
      cp = await ControlPlane.start({ bus, logger, signal: ac.signal, leaseMs: num('lease-ms'), lifecycle: { notReadyAfterMs: num('not-ready-after') }, clusterCidr, serviceCidr });
    } catch (err) {
      if (stopping) break;
      throw err;
    }
    process.stdout.write('troupe controller is leading\n');
    const onStop = () => void cp.stop();
    ac.signal.addEventListener('abort', onStop, { once: true });
    const r = await cp.done;
    ac.signal.removeEventListener('abort', onStop);
    if (!r.lost) break;
    logger.warn('lost leadership; standing by again');
  }
  await bus.close();
  return 0;
}

/** An IPv4 CIDR flag whose prefix length lies in [min, max]. */
function cidrFlag(flag: string, v: string | undefined, min: number, max: number, expected: string): string | undefined {
  if (v === undefined) return undefined;
  let bits: number;
  try {
    bits = parseCidr(v).bits;
  } catch {
    bits = NaN;
  }
  if (!(bits >= min && bits <= max)) throw new UsageError(`--${flag}: expected an IPv4 CIDR ${expected}, got ${JSON.stringify(v)}`);
  return v;
}

/** --cluster-cidr: room for /24 node blocks. */
function clusterCidrFlag(v: string | undefined): string | undefined {
  return cidrFlag('cluster-cidr', v, 0, 23, 'of /23 or larger, such as 10.244.0.0/16');
}

/** --service-cidr: /12 to /28. */
function serviceCidrFlag(v: string | undefined): string | undefined {
  return cidrFlag('service-cidr', v, 12, 28, 'from /12 to /28, such as 10.96.0.0/16');
}

/** An IPv4 address flag. */
function ipFlag(flag: string, v: string | undefined): string | undefined {
  if (v !== undefined && !isIPv4(v)) throw new UsageError(`--${flag}: expected an IPv4 address such as 10.0.0.5, got ${JSON.stringify(v)}`);
  return v;
}

async function connectCli(server: string | undefined): Promise<Bus> {
  const { server: url, cluster } = resolveServer(server);
  return Bus.connect({ servers: url, cluster, name: 'troupe-cli', connectTimeout: 3000 });
}

async function cmdLogs(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      container: { type: 'string', short: 'c' },
      namespace: { type: 'string', short: 'n' },
      tail: { type: 'string' },
      previous: { type: 'boolean', short: 'p' },
      timestamps: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      server: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('expected one pod name: troupe logs POD [-c CONTAINER]');
  const tail = values.tail === undefined ? undefined : Number(values.tail);
  if (tail !== undefined && (!Number.isInteger(tail) || tail < -1)) throw new UsageError(`--tail: expected a number of lines, got ${JSON.stringify(values.tail)}`);
  const bus = await connectCli(values.server);
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  try {
    await podLogs(bus, {
      namespace: values.namespace ?? 'default',
      pod: positionals[0]!,
      container: values.container,
      tail: tail === -1 ? undefined : tail,
      previous: values.previous,
      timestamps: values.timestamps,
      follow: values.follow,
      out: process.stdout,
      err: process.stderr,
      signal: ac.signal,
    });
  } finally {
    await bus.close();
  }
  return 0;
}

async function cmdExec(args: string[]): Promise<number> {
  const dash = args.indexOf('--');
  if (dash < 0 || dash === args.length - 1) throw new UsageError('expected a command after --: troupe exec POD [-c CONTAINER] -- COMMAND [ARG...]');
  const { values, positionals } = parseArgs({
    args: args.slice(0, dash),
    strict: true,
    allowPositionals: true,
    options: { container: { type: 'string', short: 'c' }, namespace: { type: 'string', short: 'n' }, server: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new UsageError('expected one pod name: troupe exec POD -- COMMAND');
  const bus = await connectCli(values.server);
  try {
    const r = await podExec(bus, { namespace: values.namespace ?? 'default', pod: positionals[0]!, container: values.container, command: args.slice(dash + 1) });
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exitCode;
  } finally {
    await bus.close();
  }
}

async function cmdImage(args: string[]): Promise<number> {
  const { ClusterImages, familiarName, parseImageRef } = await import('../node-agent/index.js');
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: { change: { type: 'string', multiple: true, short: 'c' }, input: { type: 'string', short: 'i' }, insecure: { type: 'boolean' }, server: { type: 'string' }, quiet: { type: 'boolean', short: 'q' } },
  });
  const want = (n: number, usage: string) => {
    if (positionals.length !== n) throw new UsageError(`usage: troupe image ${usage}`);
  };
  if (!['import', 'load', 'pull', 'ls', 'list', 'tag', 'rm'].includes(sub ?? '')) throw new UsageError('usage: troupe image import|load|pull|ls|tag|rm …');
  if (sub === 'pull') want(1, 'pull REF [--insecure]');
  if (sub === 'load' && (!values.input || positionals.length > 0)) throw new UsageError('usage: troupe image load -i FILE');
  if (sub === 'import') want(2, 'import FILE REF [--change INSTRUCTION]...');
  if (sub === 'tag') want(2, 'tag SRC DST');
  if (sub === 'rm') want(1, 'rm REF');
  const bus = await connectCli(values.server);
  try {
    const images = await ClusterImages.open(bus);
    switch (sub) {
      case 'import': {
        const tty = process.stderr.isTTY && !values.quiet;
        const info = await images.importRootfs(positionals[0]!, positionals[1]!, {
          changes: values.change ?? [],
          onProgress: (sent, total) => {
            if (tty) process.stderr.write(`\ruploading ${Math.round((sent / Math.max(1, total)) * 100)}% (${(sent / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB)`);
          },
        });
        if (tty) process.stderr.write('\n');
        process.stdout.write(`${info.ref} ${info.digest}\n`);
        return 0;
      }
      case 'load': {
        const tty = process.stderr.isTTY && !values.quiet;
        const infos = await images.load(values.input!, {
          onProgress: (sent, total) => {
            if (tty) process.stderr.write(`\ruploading ${Math.round((sent / Math.max(1, total)) * 100)}%`);
          },
        });
        if (tty) process.stderr.write('\n');
        for (const i of infos) process.stdout.write(`Loaded image: ${i.ref}\n`);
        return 0;
      }
      case 'pull': {
        const tty = process.stderr.isTTY && !values.quiet;
        let last = -1;
        const info = await images.pull(positionals[0]!, {
          insecure: values.insecure,
          onProgress: (got, total) => {
            const pct = Math.floor((got / Math.max(1, total)) * 100);
            if (pct === last) return;
            last = pct;
            if (tty) process.stderr.write(`\rpulling ${pct}% (${(got / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB)`);
            else if (pct % 25 === 0) process.stderr.write(`pulling ${pct}%\n`);
          },
        });
        if (tty) process.stderr.write('\n');
        process.stdout.write(`${info.ref} ${info.digest}\n`);
        return 0;
      }
      case 'ls':
      case 'list': {
        const rows = (await images.list()).map((r) => [familiarName(parseImageRef(r.ref)), r.object.slice(0, 12), `${(r.size / 1048576).toFixed(1)}MiB`, r.created]);
        printTable(['IMAGE', 'ARCHIVE', 'SIZE', 'CREATED'], rows);
        return 0;
      }
      case 'tag': {
        const rec = await images.tag(positionals[0]!, positionals[1]!);
        process.stdout.write(`${familiarName(parseImageRef(rec.ref))}\n`);
        return 0;
      }
      default: {
        const r = await images.remove(positionals[0]!);
        process.stdout.write(`Untagged: ${r.untagged}\n`);
        return 0;
      }
    }
  } finally {
    await bus.close();
  }
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('');
  process.stdout.write(`${[line(header), ...rows.map(line)].join('\n')}\n`);
}

/**
 * A node's agent asks the kernel to favour dynamic cgroup changes (see favorDynamicCgroups), in
 * the host's mount namespace where the cgroup2 mount is still there (the agent's own namespace
 * may have it unmounted). What happened travels to the re-executed agent in TROUPE_FAVOR_DYNMODS,
 * which logs it.
 */
function favorCgroupChanges(): void {
  if (process.env.TROUPE_MOUNT_NS === '1') return;
  process.env.TROUPE_FAVOR_DYNMODS = JSON.stringify(favorDynamicCgroups());
}

function logFavorResult(logger: Logger): void {
  const raw = process.env.TROUPE_FAVOR_DYNMODS;
  if (!raw) return;
  delete process.env.TROUPE_FAVOR_DYNMODS;
  const r = JSON.parse(raw) as FavorDynmodsResult;
  if (r.state === 'failed') logger.warn({ mountPoint: r.mountPoint, error: r.message }, 'cgroups: the kernel refused favordynmods; process moves between cgroups stay slow (--no-favor-dynmods silences this)');
  else if (r.state === 'enabled') logger.info({ mountPoint: r.mountPoint }, 'cgroups: favordynmods turned on (faster container starts; --no-favor-dynmods leaves the mount as it is)');
  else logger.debug({ state: r.state, mountPoint: r.mountPoint, reason: r.message }, 'cgroups: favordynmods');
}

/** Runs this same command again inside `prefix` (a private mount namespace), passing signals on. */
async function reexecIn(prefix: string[]): Promise<number> {
  const { spawn } = await import('node:child_process');
  // the inner agent dies with this wrapper, even when the wrapper is SIGKILLed
  const setpriv = findProgram('setpriv');
  const argv = [...(setpriv ? [setpriv, '--pdeathsig', 'SIGKILL', '--'] : []), ...prefix, process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)];
  const child = spawn(argv[0]!, argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, TROUPE_MOUNT_NS: '1' },
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}

// `troupe get pods | head`: a closed pipe ends the command quietly, as for any Unix tool
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string })?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`troupe: ${(err as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    const msg = err instanceof TroupeError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`troupe: ${msg}\n`);
    process.exitCode = 1;
  },
);
