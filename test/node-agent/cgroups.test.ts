import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { detectCgroups, favorDynamicCgroups, sweepNodeCgroups } from '../../node-agent/index.js';

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

const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 OPTS',
].join('\n');

t.test('favordynmods: set on the cgroup2 mount once, left alone when on, reported when impossible', async (t) => {
  const calls: string[][] = [];
  const remount = (mp: string, opt: string) => void calls.push([mp, opt]);
  t.same(favorDynamicCgroups(HYBRID.replace('OPTS', 'rw'), remount), { state: 'enabled', mountPoint: '/sys/fs/cgroup/unified' });
  t.same(calls, [['/sys/fs/cgroup/unified', 'favordynmods']], 'one remount of the cgroup2 mount, asking for the option');
  calls.length = 0;
  t.same(favorDynamicCgroups(HYBRID.replace('OPTS', 'rw,nsdelegate,favordynmods'), remount), { state: 'on', mountPoint: '/sys/fs/cgroup/unified' });
  t.same(calls, [], 'already on: no remount');
  const v1only = HYBRID.split('\n').slice(0, 2).join('\n');
  const r = favorDynamicCgroups(v1only, remount);
  t.equal(r.state, 'unavailable', 'v1 alone cannot take it');
  t.match(r.message, /no cgroup2 mount/);
  t.same(calls, []);
  const refused = favorDynamicCgroups(HYBRID.replace('OPTS', 'rw'), () => {
    throw Object.assign(new Error('Command failed'), { stderr: Buffer.from('mount: /sys/fs/cgroup/unified: bad option.\n       dmesg(1) may have more information\n') });
  });
  t.same(refused, { state: 'failed', mountPoint: '/sys/fs/cgroup/unified', message: 'mount: /sys/fs/cgroup/unified: bad option.' }, "the kernel's refusal, first line");
});

t.test('favordynmods on this machine: the real remount leaves the option on the cgroup2 mount', async (t) => {
  const cg2 = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => / - cgroup2 /.test(l));
  if (!cg2()) {
    t.equal(favorDynamicCgroups().state, 'unavailable');
    return;
  }
  const r = favorDynamicCgroups();
  t.ok(r.state === 'on' || r.state === 'enabled', `state ${r.state} ${r.message ?? ''}`);
  t.match(cg2()!.split(' - ')[1], /\bfavordynmods\b/, 'the mount says so');
  const again = favorDynamicCgroups(undefined, () => {
    throw new Error('must not remount again');
  });
  t.equal(again.state, 'on', 'a second call finds it on');
});
