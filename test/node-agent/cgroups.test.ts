import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ContainerCgroup, detectCgroups, favorDynamicCgroups, isSpareCgroup, sweepNodeCgroups } from '../../node-agent/index.js';
import { makeSpareCgroup, removeSpareCgroup, spareCgroupName } from '../../node-agent/cgroups.js';

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

t.test('a spare cgroup is renamed into place as a pod\'s first container, with its limits; otherwise the folders are made', async (t) => {
  const info = detectCgroups();
  const node = `spare-${process.pid}`;
  const roots = info.layout === 'v2' ? [info.unified!] : info.v1Mounts;
  t.teardown(() => sweepNodeCgroups(info, node, new Set()));
  const limitRoots = info.layout === 'v2' ? [info.unified!] : (['memory', 'cpu', 'cpuacct', 'pids'] as const).flatMap((c) => (info.v1[c] ? [info.v1[c]!] : []));
  const [a, b, c] = [spareCgroupName(1), spareCgroupName(2), spareCgroupName(3)];
  t.ok(isSpareCgroup(a) && !isSpareCgroup('0b6f0c1e-5b8e-4c1a-9d1e-3f2a1b0c9d8e'), 'a spare is told from a pod (named by uid)');
  for (const s of [a, b, c]) t.ok(makeSpareCgroup(info, node, s), `spare ${s} made`);
  for (const r of limitRoots) t.ok(existsSync(join(r, `troupe-${node}`, a, 'c')), `${r}: the spare's folders are there`);

  // the pod's first container takes spare a: a's folders become the pod's and the container's
  const first = new ContainerCgroup(info, `troupe-${node}/pod-1/web`);
  t.notOk(first.podExists());
  first.create({ pids: 77, memory: 64 * 1024 * 1024 }, a);
  for (const r of limitRoots) {
    t.ok(existsSync(join(r, `troupe-${node}`, 'pod-1', 'web')), `${r}: the container's folder is there`);
    t.notOk(existsSync(join(r, `troupe-${node}`, a)), `${r}: the spare is gone (renamed)`);
    t.notOk(existsSync(join(r, `troupe-${node}`, 'pod-1', 'c')), `${r}: its leaf too`);
  }
  t.match(await first.readLimits(), { pids: 77, memory: 64 * 1024 * 1024 }, 'the limits are written on the renamed folders');

  // a pod whose folder is there already: spare b cannot become it; the folders are made and b goes
  const second = new ContainerCgroup(info, `troupe-${node}/pod-1/sidecar`);
  t.ok(second.podExists());
  second.create({ pids: 33 }, b);
  for (const r of limitRoots) {
    t.ok(existsSync(join(r, `troupe-${node}`, 'pod-1', 'sidecar')), `${r}: the second container's folder is made`);
    t.notOk(existsSync(join(r, `troupe-${node}`, b)), `${r}: the spare that could not be taken is removed`);
  }
  t.match(await second.readLimits(), { pids: 33 });

  // the sweep keeps what it is told to keep (a runtime's spares), then removing the last spare
  // and the pod leaves no node folder
  t.same(await sweepNodeCgroups(info, node, new Set(['pod-1', c])), [], 'nothing swept');
  await first.remove();
  await second.remove();
  t.ok(roots.some((r) => existsSync(join(r, `troupe-${node}`))), 'the node folder stays while a spare is in it');
  removeSpareCgroup(info, node, c);
  for (const r of roots) t.notOk(existsSync(join(r, `troupe-${node}`)), `${r}: no node folder once the last spare is removed`);
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
