/**
 * The OCI runtime config (config.json) for one container, from its PodSpec container and its
 * image's config, merged exactly as Kubernetes does:
 * - command given: command + args (the image's Entrypoint and Cmd are ignored);
 * - only args given: the image's Entrypoint + args;
 * - neither: the image's Entrypoint + Cmd.
 * Env: the image's, then the container's (same name: the container wins). workingDir, then the
 * image's WorkingDir, then /.
 *
 * Hardening by default, as a credible runtime: Docker's default capabilities minus NET_RAW,
 * no_new_privileges, masked and read-only /proc and /sys paths, a read-only /sys.
 */
import { readFileSync } from 'node:fs';
import { bytes, milliCpu, type Container } from '../protocol/index.js';
import type { ImageRuntimeConfig } from './image-config.js';
import type { Limits } from './cgroups.js';
import { RuntimeError } from './errors.js';

/** Docker's default capability set, less NET_RAW (as Kubernetes recommends). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_PIDS_LIMIT = 4096;
const CPU_PERIOD = 100_000;

/**
 * Docker's 1048576 open files, unless this process may not grant that many: a container cannot
 * be given more than the agent's own hard limit without CAP_SYS_RESOURCE (or than fs.nr_open).
 */
const NOFILE = (() => {
  let n = 1048576;
  try {
    n = Math.min(n, Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()) || n);
    const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    if (hard && hard !== 'unlimited') n = Math.min(n, Number(hard));
  } catch {
    // keep the default
  }
  return n;
})();

export interface SpecInput {
  container: Container;
  image: ImageRuntimeConfig;
  /** The pod's name: the container's hostname. */
  hostname: string;
  /** Where the merged rootfs is mounted (inside the bundle). */
  rootfs: string;
  /** Files bind-mounted read-only over /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  etcFiles: { hosts: string; hostname: string; resolvConf: string };
  /** crun's cgroup for the process (a child of the agent's). */
  cgroupsPath: string;
  /** Extra environment (service variables, …), before the container's own. */
  extraEnv?: { name: string; value: string }[];
  /** Namespaces to join instead of creating (pod sharing): type → path. */
  joinNamespaces?: Partial<Record<'network' | 'ipc' | 'uts', string>>;
  /** The user's numeric ids for names in the image's USER, from its /etc/passwd and /etc/group. */
  lookupUser?: (name: string) => { uid: number; gid: number } | undefined;
  lookupGroup?: (name: string) => number | undefined;
}

/** The process arguments Kubernetes would run. */
export function mergeCommand(container: Pick<Container, 'command' | 'args'>, image: ImageRuntimeConfig): string[] {
  if (container.command && container.command.length > 0) return [...container.command, ...(container.args ?? [])];
  const entrypoint = image.Entrypoint ?? [];
  if (container.args && container.args.length > 0) return [...entrypoint, ...container.args];
  return [...entrypoint, ...(image.Cmd ?? [])];
}

/** The environment Kubernetes would give: image env, then extra, then the container's (later wins). */
export function mergeEnv(image: ImageRuntimeConfig, container: Pick<Container, 'env'>, extra: { name: string; value: string }[] = []): string[] {
  const out = new Map<string, string>();
  for (const e of image.Env ?? []) {
    const eq = e.indexOf('=');
    if (eq > 0) out.set(e.slice(0, eq), e.slice(eq + 1));
  }
  if (!out.has('PATH')) out.set('PATH', DEFAULT_PATH.slice(5));
  for (const e of extra) out.set(e.name, e.value);
  for (const e of container.env ?? []) out.set(e.name, expandVars(e.value ?? '', out));
  return [...out].map(([k, v]) => `${k}=${v}`);
}

/** $(VAR) references to earlier variables, as Kubernetes expands them; $$ escapes. */
function expandVars(value: string, env: Map<string, string>): string {
  return value.replace(/\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : env.has(name!) ? env.get(name!)! : m));
}

/** The cgroup limits from resources (limits; requests give cpu shares). */
export function limitsFor(container: Pick<Container, 'resources'>): Limits {
  const lim = container.resources?.limits ?? {};
  const req = container.resources?.requests ?? {};
  const out: Limits = { pids: DEFAULT_PIDS_LIMIT };
  if (lim.memory !== undefined) out.memory = bytes(lim.memory);
  if (lim.cpu !== undefined) {
    const m = milliCpu(lim.cpu)!;
    out.cpuPeriod = CPU_PERIOD;
    out.cpuQuota = Math.max(1000, Math.round((m * CPU_PERIOD) / 1000));
  }
  const reqCpu = req.cpu ?? lim.cpu;
  if (reqCpu !== undefined) out.cpuShares = Math.max(2, Math.round((milliCpu(reqCpu)! * 1024) / 1000));
  if (lim.pids !== undefined) out.pids = Math.max(1, Math.floor(Number(lim.pids)));
  return out;
}

function resolveUser(input: SpecInput): { uid: number; gid: number; additionalGids?: number[] } {
  const sc = input.container.securityContext;
  let uid = 0;
  let gid = 0;
  const user = input.image.User;
  if (user) {
    const [u, g] = user.split(':');
    if (/^\d+$/.test(u!)) uid = Number(u);
    else {
      const found = input.lookupUser?.(u!);
      if (!found) throw new RuntimeError(`the image's USER ${JSON.stringify(u)} is not in its /etc/passwd`, { user });
      uid = found.uid;
      gid = found.gid;
    }
    if (g !== undefined) {
      if (/^\d+$/.test(g)) gid = Number(g);
      else {
        const found = input.lookupGroup?.(g);
        if (found === undefined) throw new RuntimeError(`the image's USER group ${JSON.stringify(g)} is not in its /etc/group`, { user });
        gid = found;
      }
    }
  }
  if (sc?.runAsUser !== undefined) uid = sc.runAsUser;
  if (sc?.runAsGroup !== undefined) gid = sc.runAsGroup;
  if (sc?.runAsNonRoot && uid === 0) {
    throw new RuntimeError(`container ${JSON.stringify(input.container.name)}: runAsNonRoot is set but the container would run as root (uid 0)`, { container: input.container.name });
  }
  return { uid, gid };
}

function capabilities(input: SpecInput, uid: number): Record<string, string[]> {
  const sc = input.container.securityContext?.capabilities;
  const norm = (c: string) => (c.startsWith('CAP_') ? c : `CAP_${c}`);
  const drop = new Set((sc?.drop ?? []).map(norm));
  let set: string[] = drop.has('CAP_ALL') ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.has(c));
  for (const c of (sc?.add ?? []).map(norm)) if (c !== 'CAP_ALL' && !set.includes(c)) set.push(c);
  set = [...set];
  // a non-root process keeps the bounding set but has no effective capabilities (as Docker)
  const eff = uid === 0 ? set : [];
  return { bounding: set, effective: eff, permitted: eff, inheritable: [], ambient: [] };
}

export function buildSpec(input: SpecInput): Record<string, unknown> {
  const c = input.container;
  const args = mergeCommand(c, input.image);
  if (args.length === 0) {
    throw new RuntimeError(`container ${JSON.stringify(c.name)}: no command to run (neither the container nor image ${JSON.stringify(c.image)} names one)`, { container: c.name });
  }
  const { uid, gid } = resolveUser(input);
  const sc = c.securityContext;
  const namespaces: { type: string; path?: string }[] = [{ type: 'pid' }, { type: 'mount' }, { type: 'cgroup' }];
  for (const t of ['network', 'ipc', 'uts'] as const) {
    const path = input.joinNamespaces?.[t];
    namespaces.push(path ? { type: t, path } : { type: t });
  }
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid, gid },
      args,
      env: mergeEnv(input.image, c, input.extraEnv),
      cwd: c.workingDir ?? input.image.WorkingDir ?? '/',
      capabilities: capabilities(input, uid),
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: NOFILE, soft: NOFILE }],
      noNewPrivileges: sc?.allowPrivilegeEscalation !== true,
    },
    root: { path: input.rootfs, readonly: sc?.readOnlyRootFilesystem === true },
    // set in a joined UTS namespace too (crun does): a sandbox taken from the node's pool was
    // made before its pod was known
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      { destination: '/etc/hosts', type: 'bind', source: input.etcFiles.hosts, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/etc/hostname', type: 'bind', source: input.etcFiles.hostname, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: input.etcFiles.resolvConf, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] },
    ],
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}
