import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { detectCgroups, sweepNodeCgroups } from '../../node-agent/index.js';

t.test('the sweep removes the cgroups of pods that are gone, keeps the others, and the node folder once empty', async (t) => {
  const info = detectCgroups();
  const roots = info.layout === 'v2' ? [info.unified!] : info.v1Mounts;
  const node = `sweep-${process.pid}`;
  const made: string[] = [];
  t.teardown(() => {
    for (const d of made.reverse()) if (existsSync(d)) rmdirSync(d);
  });
  for (const r of roots) {
    for (const d of [`troupe-${node}`, `troupe-${node}/gone-pod`, `troupe-${node}/gone-pod/c`, `troupe-${node}/live-pod`, `troupe-${node}/live-pod/c`]) {
      mkdirSync(join(r, d));
      made.push(join(r, d));
    }
  }
  const removed = await sweepNodeCgroups(info, node, new Set(['live-pod']));
  t.equal(removed.length, roots.length, 'one folder per hierarchy');
  for (const r of roots) {
    t.notOk(existsSync(join(r, `troupe-${node}`, 'gone-pod')), `${r}: the gone pod's cgroup is removed`);
    t.ok(existsSync(join(r, `troupe-${node}`, 'live-pod', 'c')), `${r}: the live pod's stays`);
  }
  for (const r of roots) rmdirSync(join(r, `troupe-${node}`, 'live-pod', 'c'));
  await sweepNodeCgroups(info, node, new Set());
  for (const r of roots) t.notOk(existsSync(join(r, `troupe-${node}`)), `${r}: the node folder goes when empty`);
});
