/**
 * The environment Kubernetes gives a container for each Service of its namespace that exists
 * when the pod starts (docker-links style): MYAPP_SERVICE_HOST, MYAPP_SERVICE_PORT,
 * MYAPP_SERVICE_PORT_<NAME>, MYAPP_PORT, MYAPP_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR].
 */
import type { KObject } from './resources.js';

const envName = (s: string) => s.toUpperCase().replace(/-/g, '_');

export function serviceEnv(services: KObject[]): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const svc of [...services].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const ip = svc.spec?.clusterIP as string | undefined;
    const ports = (svc.spec?.ports ?? []) as { name?: string; port: number; protocol?: string }[];
    if (!ip || ip === 'None' || ports.length === 0) continue;
    const p = envName(svc.metadata.name);
    out.push({ name: `${p}_SERVICE_HOST`, value: ip }, { name: `${p}_SERVICE_PORT`, value: String(ports[0]!.port) });
    for (const port of ports) if (port.name) out.push({ name: `${p}_SERVICE_PORT_${envName(port.name)}`, value: String(port.port) });
    const first = ports[0]!;
    out.push({ name: `${p}_PORT`, value: `${(first.protocol ?? 'TCP').toLowerCase()}://${ip}:${first.port}` });
    for (const port of ports) {
      const proto = port.protocol ?? 'TCP';
      const base = `${p}_PORT_${port.port}_${proto}`;
      out.push(
        { name: base, value: `${proto.toLowerCase()}://${ip}:${port.port}` },
        { name: `${base}_PROTO`, value: proto.toLowerCase() },
        { name: `${base}_PORT`, value: String(port.port) },
        { name: `${base}_ADDR`, value: ip },
      );
    }
  }
  return out;
}
