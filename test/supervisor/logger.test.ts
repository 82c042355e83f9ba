import t from 'tap';
import { createLogger, isLogLevel } from '../../supervisor/index.js';

t.test('JSON lines, levels, child bindings, errors under err', async (t) => {
  const out: string[] = [];
  const logger = createLogger({ level: 'info', pretty: false, destination: { write: (s: string) => out.push(s) } });
  const child = logger.child({ component: 'actor-host', kind: 'pod' });
  child.debug('hidden');
  child.info({ n: 1 }, 'shown');
  child.error({ err: new Error('boom') }, 'failed');
  const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, 2, 'debug is below info');
  t.match(lines[0], { level: 30, name: 'troupe', component: 'actor-host', kind: 'pod', n: 1, msg: 'shown' });
  t.match(lines[1], { level: 50, err: { type: 'Error', message: 'boom' } });
});

t.test('log levels', async (t) => {
  for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.ok(isLogLevel(l), l);
  t.notOk(isLogLevel('loud'));
  const out: string[] = [];
  createLogger({ level: 'silent', pretty: false, destination: { write: (s: string) => out.push(s) } }).fatal('x');
  t.equal(out.length, 0);
});
