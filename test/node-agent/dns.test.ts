/**
 * The node's cluster DNS: names as Kubernetes gives them, the answers' wire format, and malformed
 * queries; then a real server on loopback, over UDP and TCP.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import t from 'tap';
import { DNS_RCODE, DNS_TYPE, DnsServer, clusterLookup, dnsAnswer, parseDnsQuery } from '../../node-agent/index.js';

const services: Record<string, { clusterIP?: string; ports?: { name?: string; port: number; protocol?: string }[] }> = {
  'default/web': { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] },
  'default/db': { clusterIP: 'None', ports: [{ port: 5432 }] },
};
const ready: Record<string, string[]> = { 'default/db': ['10.244.1.5', '10.244.2.7'] };
const lookup = clusterLookup(
  'cluster.local',
  (ns, name) => services[`${ns}/${name}`],
  (ns, name) => ready[`${ns}/${name}`] ?? [],
  (ns) => ns === 'default' || ns === 'kube-system',
);

/** A query message for one name and type (optionally with an EDNS0 OPT record). */
function query(name: string, type: number, opts: { id?: number; edns?: number; opcode?: number } = {}): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(opts.id ?? 0x1234, 0);
  head.writeUInt16BE(0x0100 | ((opts.opcode ?? 0) << 11), 2); // RD
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(opts.edns ? 1 : 0, 10);
  const labels = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  const opt = opts.edns ? Buffer.from([0, 0, 41, opts.edns >> 8, opts.edns & 255, 0, 0, 0, 0, 0, 0]) : Buffer.alloc(0);
  return Buffer.concat([head, ...labels, Buffer.from([0]), tail, opt]);
}

interface Parsed {
  id: number;
  rcode: number;
  aa: boolean;
  tc: boolean;
  answers: { type: number; ttl: number; data: string }[];
}

/** Reads a response (answers' owner names are pointers to the question). */
function parse(msg: Buffer): Parsed {
  const flags = msg.readUInt16BE(2);
  const an = msg.readUInt16BE(6);
  let off = 12;
  if (msg.readUInt16BE(4) === 1) {
    while (off < msg.length && msg[off] !== 0) off += 1 + msg[off]!;
    off += 5;
  }
  const answers = [];
  for (let i = 0; i < an; i++) {
    off += 2; // pointer
    const type = msg.readUInt16BE(off);
    const ttl = msg.readUInt32BE(off + 4);
    const len = msg.readUInt16BE(off + 8);
    const rd = msg.subarray(off + 10, off + 10 + len);
    let data: string;
    if (type === DNS_TYPE.A) data = [...rd].join('.');
    else {
      const labels = [];
      for (let p = 6; rd[p] !== 0; p += 1 + rd[p]!) labels.push(rd.toString('latin1', p + 1, p + 1 + rd[p]!));
      data = `${rd.readUInt16BE(4)} ${labels.join('.')}`;
    }
    answers.push({ type, ttl, data });
    off += 10 + len;
  }
  return { id: msg.readUInt16BE(0), rcode: flags & 0xf, aa: (flags & 0x0400) !== 0, tc: (flags & 0x0200) !== 0, answers };
}

const ask = (name: string, type: number = DNS_TYPE.A, opts: Parameters<typeof query>[2] & { udp?: boolean } = {}) => parse(dnsAnswer(query(name, type, opts), lookup, 'cluster.local', { udp: opts.udp })!);

t.test('a service name → its cluster IP, authoritative, with the query id', async (t) => {
  const r = ask('web.default.svc.cluster.local', DNS_TYPE.A, { id: 777 });
  t.equal(r.id, 777);
  t.equal(r.rcode, DNS_RCODE.NOERROR);
  t.ok(r.aa, 'authoritative');
  t.same(r.answers, [{ type: DNS_TYPE.A, ttl: 5, data: '10.96.0.10' }]);
  t.same(ask('WEB.Default.SVC.cluster.local.').answers.map((a) => a.data), ['10.96.0.10'], 'names are case-insensitive, a trailing dot is fine');
});

t.test('a headless service → the ready pod IPs', async (t) => {
  t.same(ask('db.default.svc.cluster.local').answers.map((a) => a.data), ['10.244.1.5', '10.244.2.7']);
});

t.test('SRV records for named ports', async (t) => {
  t.same(ask('_http._tcp.web.default.svc.cluster.local', DNS_TYPE.SRV).answers, [{ type: DNS_TYPE.SRV, ttl: 5, data: '80 web.default.svc.cluster.local' }]);
  t.same(ask('_dns._udp.web.default.svc.cluster.local', DNS_TYPE.SRV).answers.map((a) => a.data), ['53 web.default.svc.cluster.local']);
  t.equal(ask('_http._udp.web.default.svc.cluster.local', DNS_TYPE.SRV).rcode, DNS_RCODE.NXDOMAIN, 'no such port and protocol');
  t.same(ask('web.default.svc.cluster.local', DNS_TYPE.SRV).answers.map((a) => a.data).sort(), ['53 web.default.svc.cluster.local', '80 web.default.svc.cluster.local']);
});

t.test('pod names by address', async (t) => {
  t.same(ask('10-244-1-5.default.pod.cluster.local').answers.map((a) => a.data), ['10.244.1.5']);
  t.equal(ask('10-244-1-300.default.pod.cluster.local').rcode, DNS_RCODE.NXDOMAIN);
  t.equal(ask('10-244-1-5.nope.pod.cluster.local').rcode, DNS_RCODE.NXDOMAIN, 'in a namespace that does not exist');
});

t.test('existing names without that type, missing names, other zones, other opcodes', async (t) => {
  const aaaa = ask('web.default.svc.cluster.local', DNS_TYPE.AAAA);
  t.equal(aaaa.rcode, DNS_RCODE.NOERROR, 'AAAA of a service: no error');
  t.same(aaaa.answers, [], 'and no record');
  t.equal(ask('nope.default.svc.cluster.local').rcode, DNS_RCODE.NXDOMAIN);
  t.equal(ask('web.nope.svc.cluster.local').rcode, DNS_RCODE.NXDOMAIN);
  t.equal(ask('default.svc.cluster.local').rcode, DNS_RCODE.NOERROR, 'a namespace exists as a name');
  t.equal(ask('a.b.web.default.svc.cluster.local').rcode, DNS_RCODE.NXDOMAIN);
  t.equal(ask('example.com').rcode, DNS_RCODE.REFUSED, 'not recursive: nothing leaves the node');
  t.equal(ask('cluster.local.example.com').rcode, DNS_RCODE.REFUSED);
  t.equal(ask('web.default.svc.cluster.local', DNS_TYPE.A, { opcode: 2 }).rcode, DNS_RCODE.NOTIMP);
});

t.test('malformed queries: FORMERR, or no answer when even the header is cut', async (t) => {
  t.equal(dnsAnswer(Buffer.from([1, 2, 3]), lookup, 'cluster.local'), undefined, 'shorter than a header');
  const truncated = query('web.default.svc.cluster.local', DNS_TYPE.A).subarray(0, 20);
  t.equal(parse(dnsAnswer(truncated, lookup, 'cluster.local')!).rcode, DNS_RCODE.FORMERR, 'a name running past the end');
  const two = query('web.default.svc.cluster.local', DNS_TYPE.A);
  two.writeUInt16BE(2, 4);
  t.equal(parse(dnsAnswer(two, lookup, 'cluster.local')!).rcode, DNS_RCODE.FORMERR, 'two questions');
  const pointer = Buffer.concat([query('x', DNS_TYPE.A).subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.equal(parse(dnsAnswer(pointer, lookup, 'cluster.local')!).rcode, DNS_RCODE.FORMERR, 'a compression pointer in the question');
  const response = query('web.default.svc.cluster.local', DNS_TYPE.A);
  response.writeUInt16BE(0x8100, 2);
  t.equal(parse(dnsAnswer(response, lookup, 'cluster.local')!).rcode, DNS_RCODE.FORMERR, 'a response sent as a query');
  t.throws(() => parseDnsQuery(Buffer.concat([query('a', 1).subarray(0, 12), Buffer.alloc(300, 63)])), /past|longer/);
});

t.test('UDP answers stop at 512 bytes (or the EDNS0 size) with TC set', async (t) => {
  ready['default/db'] = Array.from({ length: 100 }, (_, i) => `10.244.${i >> 8}.${i & 255}`);
  t.teardown(() => {
    ready['default/db'] = ['10.244.1.5', '10.244.2.7'];
  });
  const udp = ask('db.default.svc.cluster.local', DNS_TYPE.A, { udp: true });
  t.ok(udp.tc, 'truncated');
  t.ok(udp.answers.length > 0 && udp.answers.length < 100, `a part of the answers (${udp.answers.length})`);
  const edns = ask('db.default.svc.cluster.local', DNS_TYPE.A, { udp: true, edns: 4096 });
  t.notOk(edns.tc, 'a 4096-byte EDNS0 buffer takes them all');
  t.equal(edns.answers.length, 100);
  t.equal(ask('db.default.svc.cluster.local').answers.length, 100, 'over TCP: all');
});

t.test('a real server on loopback answers over UDP and TCP, and survives garbage', async (t) => {
  const srv = new DnsServer('127.0.0.1', lookup, 'cluster.local', undefined, 0);
  await srv.start();
  t.teardown(() => srv.stop());
  const sock = createSocket('udp4');
  t.teardown(() => sock.close());
  const udpAsk = (msg: Buffer) =>
    new Promise<Buffer>((resolve) => {
      sock.once('message', (m) => resolve(m));
      sock.send(msg, srv.port, '127.0.0.1');
    });
  sock.send(Buffer.from('garbage'), srv.port, '127.0.0.1');
  const r = parse(await udpAsk(query('web.default.svc.cluster.local', DNS_TYPE.A, { id: 42 })));
  t.equal(r.id, 42);
  t.same(r.answers.map((a) => a.data), ['10.96.0.10'], 'UDP');
  const tcp = await new Promise<Buffer>((resolve, reject) => {
    const q = query('db.default.svc.cluster.local', DNS_TYPE.A, { id: 43 });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    const c = connect(srv.port, '127.0.0.1', () => c.write(Buffer.concat([len, q])));
    let buf = Buffer.alloc(0);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.end();
        resolve(buf.subarray(2));
      }
    });
    c.on('error', reject);
  });
  const rt = parse(tcp);
  t.equal(rt.id, 43);
  t.same(rt.answers.map((a) => a.data), ['10.244.1.5', '10.244.2.7'], 'TCP');
});
