/**
 * The node's cluster DNS (what CoreDNS's kubernetes plugin answers), served by the agent on its
 * pod bridge's gateway address, port 53, over UDP and TCP. Pods have it as their nameserver with
 * the Kubernetes search path, so `myapp`, `myapp.default`, `myapp.default.svc` and
 * `myapp.default.svc.cluster.local` all resolve:
 *
 *  - `<service>.<ns>.svc.<domain>` A → the cluster IP; for a headless Service, every ready pod IP
 *  - `_<port>._<proto>.<service>.<ns>.svc.<domain>` SRV → the named port, target the service name
 *  - `<a-b-c-d>.<ns>.pod.<domain>` A → a.b.c.d
 *
 * It is authoritative for the cluster domain only and recursive for nothing: any other name is
 * REFUSED, so a pod's lookups never leave the node. A malformed query gets FORMERR (or nothing,
 * when even its header is cut short); a name that does not exist, NXDOMAIN; a name that exists
 * without records of the asked type, an empty NOERROR. UDP answers stop at 512 bytes (more than
 * 512 bytes of EDNS0 buffer when the client offers one) with TC set, and the client asks again over TCP.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:net';
import type { Logger } from '../supervisor/index.js';

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface Question {
  name: string;
  type: number;
  klass: number;
}

export interface Query {
  id: number;
  flags: number;
  question: Question;
  /** Bytes of the question section (name, type, class), echoed in the answer. */
  questionBytes: Buffer;
  /** The client's EDNS0 UDP buffer size, when it sent an OPT record. */
  udpSize?: number;
}

export type Answer = { type: typeof TYPE.A; ip: string } | { type: typeof TYPE.SRV; priority: number; weight: number; port: number; target: string };

/** What the node knows: the answers for a name, or undefined when the name does not exist. */
export type Lookup = (name: string) => Answer[] | undefined;

export class DnsFormatError extends Error {}

/** Parses a query; throws DnsFormatError on anything malformed. */
export function parseQuery(msg: Buffer): Query {
  if (msg.length < 12) throw new DnsFormatError('shorter than a DNS header');
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qd = msg.readUInt16BE(4);
  const ar = msg.readUInt16BE(10);
  if (flags & 0x8000) throw new DnsFormatError('a response, not a query');
  if (qd !== 1) throw new DnsFormatError(`expected one question, got ${qd}`);
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    if (off >= msg.length) throw new DnsFormatError('name runs past the message');
    const len = msg[off]!;
    if (len === 0) {
      off++;
      break;
    }
    if (len & 0xc0) throw new DnsFormatError('compressed or extended label in the question');
    if (off + 1 + len > msg.length) throw new DnsFormatError('label runs past the message');
    labels.push(msg.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
    if (off - 12 > 255) throw new DnsFormatError('name longer than 255 bytes');
  }
  if (off + 4 > msg.length) throw new DnsFormatError('question type and class missing');
  const question = { name: labels.join('.'), type: msg.readUInt16BE(off), klass: msg.readUInt16BE(off + 2) };
  const questionBytes = msg.subarray(12, off + 4);
  off += 4;
  // an EDNS0 OPT record in the additional section gives the client's UDP buffer size
  let udpSize: number | undefined;
  if (ar >= 1 && off + 11 <= msg.length && msg[off] === 0 && msg.readUInt16BE(off + 1) === TYPE.OPT) udpSize = Math.max(512, Math.min(4096, msg.readUInt16BE(off + 3)));
  return { id, flags, question, questionBytes, udpSize };
}

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])]);
}

function record(a: Answer, ttl: number): Buffer {
  // the owner name points at the question (offset 12)
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0);
  head.writeUInt16BE(a.type, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt32BE(ttl, 6);
  let data: Buffer;
  if (a.type === TYPE.A) {
    data = Buffer.from(a.ip.split('.').map(Number));
  } else {
    const fixed = Buffer.alloc(6);
    fixed.writeUInt16BE(a.priority, 0);
    fixed.writeUInt16BE(a.weight, 2);
    fixed.writeUInt16BE(a.port, 4);
    data = Buffer.concat([fixed, encodeName(a.target)]);
  }
  head.writeUInt16BE(data.length, 10);
  return Buffer.concat([head, data]);
}

/** An answer message; answers stop before `limit` bytes, with TC set when some were left out. */
export function encodeResponse(q: Pick<Query, 'id' | 'flags' | 'questionBytes'>, rcode: number, answers: Answer[], ttl: number, limit = 65_535): Buffer {
  const recs: Buffer[] = [];
  let size = 12 + q.questionBytes.length;
  let truncated = false;
  for (const a of answers) {
    const r = record(a, ttl);
    if (size + r.length > limit) {
      truncated = true;
      break;
    }
    recs.push(r);
    size += r.length;
  }
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  // QR, the query's opcode and RD, AA (authoritative), TC when cut short; RA clear (not recursive)
  head.writeUInt16BE(0x8000 | (q.flags & 0x7900) | 0x0400 | (truncated ? 0x0200 : 0) | (rcode & 0xf), 2);
  head.writeUInt16BE(q.questionBytes.length > 0 ? 1 : 0, 4);
  head.writeUInt16BE(recs.length, 6);
  return Buffer.concat([head, q.questionBytes, ...recs]);
}

/** The answer to one message; undefined when it should go unanswered (not even a header). */
export function answer(msg: Buffer, lookup: Lookup, domain: string, opts: { ttl?: number; udp?: boolean } = {}): Buffer | undefined {
  let q: Query;
  try {
    q = parseQuery(msg);
  } catch (err) {
    if (msg.length < 12 || !(err instanceof DnsFormatError)) return undefined;
    const id = msg.readUInt16BE(0);
    return encodeResponse({ id, flags: msg.readUInt16BE(2) & 0x7900, questionBytes: Buffer.alloc(0) }, RCODE.FORMERR, [], 0);
  }
  const ttl = opts.ttl ?? 5;
  const limit = opts.udp ? (q.udpSize ?? 512) : 65_535;
  if ((q.flags >> 11) & 0xf) return encodeResponse(q, RCODE.NOTIMP, [], ttl, limit);
  const name = q.question.name.toLowerCase().replace(/\.$/, '');
  const d = domain.toLowerCase();
  if (q.question.klass !== 1 || !(name === d || name.endsWith(`.${d}`))) return encodeResponse(q, RCODE.REFUSED, [], ttl, limit);
  const found = lookup(name);
  if (!found) return encodeResponse(q, RCODE.NXDOMAIN, [], ttl, limit);
  const wanted = q.question.type === TYPE.ANY ? found : found.filter((a) => a.type === q.question.type);
  return encodeResponse(q, RCODE.NOERROR, wanted, ttl, limit);
}

/**
 * The cluster's names from its Services and Endpoints. `services(ns, name)` gives a Service,
 * `readyIps(ns, name)` the ready addresses of its Endpoints.
 */
export function clusterLookup(
  domain: string,
  services: (ns: string, name: string) => { clusterIP?: string; ports?: { name?: string; port: number; protocol?: string }[] } | undefined,
  readyIps: (ns: string, name: string) => string[],
  namespaceExists: (ns: string) => boolean,
): Lookup {
  const suffix = `.${domain.toLowerCase()}`;
  return (name) => {
    if (!name.endsWith(suffix)) return name === domain ? [] : undefined;
    const parts = name.slice(0, -suffix.length).split('.');
    // <a-b-c-d>.<ns>.pod
    if (parts.length === 3 && parts[2] === 'pod') {
      const m = /^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$/.exec(parts[0]!);
      if (!m || m.slice(1).some((x) => Number(x) > 255) || !namespaceExists(parts[1]!)) return undefined;
      return [{ type: TYPE.A, ip: m.slice(1).join('.') }];
    }
    if (parts[parts.length - 1] !== 'svc') return parts.length === 1 && parts[0] === 'pod' ? [] : undefined;
    // svc, <ns>.svc, <service>.<ns>.svc, _<port>._<proto>.<service>.<ns>.svc
    if (parts.length === 1) return [];
    if (parts.length === 2) return namespaceExists(parts[0]!) ? [] : undefined;
    const ns = parts[parts.length - 2]!;
    const svcName = parts[parts.length - 3]!;
    const svc = services(ns, svcName);
    if (!svc) return undefined;
    const target = `${svcName}.${ns}.svc.${domain}`;
    const addresses = (): Answer[] => (svc.clusterIP && svc.clusterIP !== 'None' ? [svc.clusterIP] : readyIps(ns, svcName)).map((ip) => ({ type: TYPE.A, ip }));
    if (parts.length === 3) {
      return [...addresses(), ...(svc.ports ?? []).filter((p) => p.name).map((p) => ({ type: TYPE.SRV, priority: 0, weight: 100, port: p.port, target }) as Answer)];
    }
    if (parts.length === 5 && parts[0]!.startsWith('_') && parts[1]!.startsWith('_')) {
      const port = (svc.ports ?? []).find((p) => p.name === parts[0]!.slice(1) && (p.protocol ?? 'TCP').toLowerCase() === parts[1]!.slice(1));
      return port ? [{ type: TYPE.SRV, priority: 0, weight: 100, port: port.port, target }] : undefined;
    }
    return undefined;
  };
}

/** Resolves once `listen` calls back; rejects with the socket's error if it comes first. */
function whenListening(socket: EventEmitter, listen: (ready: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    listen(() => {
      socket.off('error', reject);
      resolve();
    });
  });
}

/** Serves `lookup` on address:port over UDP and TCP. */
export class DnsServer {
  private udp?: Socket;
  private tcp?: Server;
  port = 0;

  constructor(
    readonly address: string,
    private readonly lookup: Lookup,
    private readonly domain: string,
    private readonly logger?: Logger,
    private readonly wantPort = 53,
  ) {}

  async start(): Promise<void> {
    const udp = createSocket({ type: 'udp4', reuseAddr: false });
    udp.on('message', (msg, rinfo) => {
      try {
        const out = answer(msg, this.lookup, this.domain, { udp: true });
        if (out) udp.send(out, rinfo.port, rinfo.address);
      } catch (err) {
        this.logger?.warn({ err }, 'dns query not answered');
      }
    });
    udp.on('error', (err) => this.logger?.warn({ err }, 'dns socket error'));
    await whenListening(udp, (ready) => udp.bind(this.wantPort, this.address, ready));
    this.udp = udp;
    this.port = udp.address().port;
    const tcp = createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.setTimeout(10_000, () => sock.destroy());
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 70_000) return sock.destroy();
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          const out = answer(msg, this.lookup, this.domain);
          if (!out) return sock.destroy();
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        }
      });
    });
    await whenListening(tcp, (ready) => tcp.listen(this.port, this.address, ready));
    this.tcp = tcp;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r()));
    await new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r()));
    this.udp = undefined;
    this.tcp = undefined;
  }
}
