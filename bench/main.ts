/**
 * `npm run bench -- NAME`: runs one benchmark and prints its figures; the last line is one JSON object.
 */
import { printFigures } from './stats.js';

const benches: Record<string, () => Promise<Record<string, number>>> = {
  bus: async () => (await import('./bus.js')).benchBus(),
  'pod-start': async () => (await import('./pod-start.js')).benchPodStart(),
  'apply-to-running': async () => (await import('./apply-to-running.js')).benchApplyToRunning(),
  'control-plane': async () => (await import('./control-plane.js')).benchControlPlane(),
  service: async () => (await import('./service.js')).benchService(),
};

const name = process.argv[2];
if (!name || !benches[name]) {
  process.stderr.write(`usage: npm run bench -- NAME   (one of: ${Object.keys(benches).join(', ')})\n`);
  process.exit(2);
}
printFigures(name, await benches[name]!());
process.exit(0);
