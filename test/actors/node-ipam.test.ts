/**
 * Node IPAM in a running control plane: each Node gets its own block of the cluster CIDR, block 0
 * never, a node whose podCIDR was set elsewhere keeps it and its block is not given again, and a
 * node that waits for a free block gets the block of a node that goes.
 */
import t from 'tap';
import { ControlPlane, Resources } from '../../actors/index.js';
import { kindInfo, type KObject } from '../../protocol/index.js';
import { quiet } from '../helpers/cluster.js';
import { waitFor, withBus, withNats } from '../helpers/nats.js';

const NODE = kindInfo('Node')!;

t.test('pod CIDRs: one block each, none twice, a freed block given to the node that waited', async (t) => {
  const srv = await withNats(t);
  const cpBus = await withBus(t, srv.url, { name: 'cp', logger: quiet });
  const bus = await withBus(t, srv.url, { name: 'test', logger: quiet });
  // a /22 cut in /24s: blocks 1, 2 and 3 (block 0 holds the range's network address)
  const cp = await ControlPlane.start({ bus: cpBus, logger: quiet, clusterCidr: '10.250.0.0/22' });
  t.teardown(() => cp.stop());
  const res = await Resources.open(bus);
  const register = (name: string, podCIDR?: string) =>
    res.send(NODE, undefined, name, { type: 'patch', create: { apiVersion: 'v1', kind: 'Node', metadata: { name }, ...(podCIDR ? { spec: { podCIDR } } : {}) } });
  const cidrOf = async (name: string) => ((await res.get(NODE, undefined, name)) as KObject | undefined)?.spec?.podCIDR as string | undefined;

  // one node brings its own block (set by whoever made it): it keeps it, and it is not given again
  await register('own', '10.250.2.0/24');
  await register('n1');
  await register('n2');
  const got = await waitFor(async () => {
    const c = await Promise.all(['own', 'n1', 'n2'].map(cidrOf));
    return c.every(Boolean) ? c : undefined;
  }, 'three nodes with a pod CIDR');
  t.equal(got[0], '10.250.2.0/24', 'a podCIDR set elsewhere is kept');
  t.same([...got].sort(), ['10.250.1.0/24', '10.250.2.0/24', '10.250.3.0/24'], 'each node its own block, block 0 to none');

  // the range is full: a fourth node waits, without a block
  await register('n3');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await cidrOf('n3'), undefined, 'no block while none is free');

  // n1 goes: its block goes to n3 at once (not at the next try, 30 s later)
  const freed = got[1]!;
  await res.send(NODE, undefined, 'n1', { type: 'delete' });
  t.equal(await waitFor(() => cidrOf('n3'), 'n3 gets the freed block', 10_000), freed);
  t.equal(await cidrOf('n2'), got[2], 'the others keep theirs');
  t.equal(await cidrOf('own'), got[0]);
});
