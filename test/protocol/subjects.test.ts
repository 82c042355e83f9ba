import t from 'tap';
import { SubjectError, subjects, token, untoken } from '../../protocol/index.js';

t.test('subject layout', async (t) => {
  const s = subjects('prod');
  t.equal(s.cmd('pod', 'default', 'web-1'), 'troupe.prod.cmd.pod.default.web-1');
  t.equal(s.cmdAll('pod'), 'troupe.prod.cmd.pod.*.*');
  t.equal(s.evt('deployment', 'team-a', 'api'), 'troupe.prod.evt.deployment.team-a.api');
  t.equal(s.evtFilter('pod'), 'troupe.prod.evt.pod.*.*');
  t.equal(s.evtFilter(), 'troupe.prod.evt.*.*.*');
  t.equal(s.nodeCmd('n1'), 'troupe.prod.node.n1.cmd');
  t.equal(s.nodeHb('n1'), 'troupe.prod.node.n1.hb');
  t.equal(s.nodeScope('n1'), 'troupe.prod.node.n1.>', 'a node’s credentials can be limited to its own subjects');
  t.ok(s.nodeCmd('n1').startsWith(s.nodeScope('n1').slice(0, -1)));
  t.equal(s.stateKey('pod', 'default', 'a'), 'pod.default.a');
});

t.test('dotted names (DNS-1123 subdomains) stay one token and come back', async (t) => {
  const s = subjects('default');
  const subj = s.cmd('pod', 'default', 'my.app.v2');
  t.equal(subj.split('.').length, 6);
  t.same(s.parseCmd(subj), { kind: 'pod', namespace: 'default', name: 'my.app.v2' });
  t.equal(untoken(token('a.b')), 'a.b');
  t.equal(s.parseCmd('troupe.default.evt.pod.a.b'), undefined, 'an event subject is not a command');
  t.equal(s.parseCmd('troupe.default.cmd.pod.a'), undefined);
});

t.test('names that could break the subject space are refused', async (t) => {
  const s = subjects('default');
  for (const bad of ['', '*', '>', 'a b', 'A', 'a.*', 'x>', 'a\n', '-a', 'a_b', 'é']) {
    t.throws(() => s.cmd('pod', 'default', bad), SubjectError, JSON.stringify(bad));
  }
  t.throws(() => subjects('Bad Cluster'), SubjectError);
  try {
    s.cmd('pod', 'default', 'a b');
  } catch (err) {
    t.match((err as Error).message, /^name: expected a DNS-1123 name usable as a subject token, got "a b"$/);
  }
});

t.test('scoped subjects: a node’s actors live under its nodeScope', async (t) => {
  const s = subjects('prod');
  const n = s.scoped('node.n1');
  t.equal(n.cmd('pod', 'default', 'web'), 'troupe.prod.node.n1.cmd.pod.default.web');
  t.equal(n.cmdAll('pod'), 'troupe.prod.node.n1.cmd.pod.*.*');
  t.equal(n.evt('pod', 'default', 'web'), 'troupe.prod.node.n1.evt.pod.default.web');
  t.same(n.parseCmd('troupe.prod.node.n1.cmd.pod.default.web'), { kind: 'pod', namespace: 'default', name: 'web' });
  t.equal(n.stateKey('pod', 'default', 'web'), 'node.n1.pod.default.web');
  t.equal(n.stateBucket, s.stateBucket, 'one state bucket per cluster');
  const scope = s.nodeScope('n1').slice(0, -1);
  for (const subj of [n.cmd('pod', 'a', 'b'), n.evt('pod', 'a', 'b'), s.nodeHb('n1'), s.nodeCmd('n1')]) t.ok(subj.startsWith(scope), `${subj} is inside ${s.nodeScope('n1')}`);
  t.equal(n.nodeHb('n1'), s.nodeHb('n1'), 'node subjects do not nest');
  t.throws(() => s.scoped('node.Bad'), { name: 'SubjectError' });
});
