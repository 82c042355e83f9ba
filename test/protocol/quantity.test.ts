import t from 'tap';
import { bytes, milliCpu, parseQuantity } from '../../protocol/index.js';

t.test('quantities: Kubernetes suffixes, exponents and plain numbers; anything else does not parse', async (t) => {
  for (const [q, v] of [
    ['500m', 0.5],
    ['2', 2],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['+3', 3],
    ['64Mi', 64 * 1024 ** 2],
    ['1G', 1e9],
    ['1e3', 1000],
    ['2k', 2000],
    ['1Ki', 1024],
    [7, 7],
  ] as const) {
    t.equal(parseQuantity(q), v, `${q}`);
    t.equal(parseQuantity(q), v, `${q} again (from the cache)`);
  }
  for (const q of ['', 'abc', '1x', '-1', '1Mi ', '1.2.3', 'Mi', -4, Number.NaN, Infinity]) {
    t.equal(parseQuantity(q as string), q === '1Mi ' ? 1024 ** 2 : undefined, `${JSON.stringify(q)}`);
    t.equal(parseQuantity(q as string), q === '1Mi ' ? 1024 ** 2 : undefined, `${JSON.stringify(q)} again`);
  }
  const long = `${'0'.repeat(40)}5m`;
  t.equal(parseQuantity(long), 0.005, 'a long one (not kept) parses as well');
  t.equal(parseQuantity(long), 0.005, 'and again');
  t.equal(parseQuantity(`${long}x`), undefined);
  t.equal(milliCpu('100m'), 100);
  t.equal(milliCpu('0.0001'), 1, 'millicores round up');
  t.equal(bytes('1.5Ki'), 1536);
});

t.test('quantities: the cache holds many distinct ones without changing any answer', async (t) => {
  for (let i = 0; i < 3000; i++) if (parseQuantity(`${i}Mi`) !== i * 1024 ** 2) t.fail(`${i}Mi`);
  t.equal(parseQuantity('5Mi'), 5 * 1024 ** 2);
  t.equal(parseQuantity('2999Mi'), 2999 * 1024 ** 2);
});
