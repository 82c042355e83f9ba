import { readFileSync } from 'node:fs';
import t from 'tap';
// importing the root entry registers every folder's errors
import {
  ConflictError,
  TroupeError,
  ValidationError,
  errorFromWire,
  registeredErrorCodes,
  toTroupeError,
  InternalError,
} from '../../index.js';

const PINNED = [
  'TRP_ERR_ACTOR_DONE',
  'TRP_ERR_ACTOR_FAILED',
  'TRP_ERR_BUS_CONNECT',
  'TRP_ERR_CHILD_ID',
  'TRP_ERR_CHILD_START',
  'TRP_ERR_CONFLICT',
  'TRP_ERR_DECODE',
  'TRP_ERR_IMAGE_FORMAT',
  'TRP_ERR_IMAGE_NOT_FOUND',
  'TRP_ERR_IMAGE_REF',
  'TRP_ERR_INTERNAL',
  'TRP_ERR_NOT_FOUND',
  'TRP_ERR_PAYLOAD_TOO_LARGE',
  'TRP_ERR_PERSIST',
  'TRP_ERR_PROCESS_EXIT',
  'TRP_ERR_PROGRAM_MISSING',
  'TRP_ERR_RESTART_INTENSITY',
  'TRP_ERR_RUNTIME',
  'TRP_ERR_SUBJECT',
  'TRP_ERR_SUPERVISOR_SPEC',
  'TRP_ERR_SUPERVISOR_STOPPED',
  'TRP_ERR_TIMEOUT',
  'TRP_ERR_UNAVAILABLE',
  'TRP_ERR_UNKNOWN_TYPE',
  'TRP_ERR_UNSAFE_ARCHIVE',
  'TRP_ERR_VALIDATION',
  'TRP_ERR_VERSION',
];

t.test('the list of error codes is pinned', async (t) => {
  t.same(registeredErrorCodes(), PINNED);
});

t.test('every code is documented in protocol/ERRORS.md', async (t) => {
  const doc = readFileSync(new URL('../../../protocol/ERRORS.md', import.meta.url), 'utf8');
  for (const code of registeredErrorCodes()) t.match(doc, new RegExp(`\\| \`${code}\` \\|`), code);
});

t.test('errors travel as {code, message, details} and come back as their class', async (t) => {
  const e = new ConflictError('pod "a": changed', { key: 'pod.default.a' });
  const wire = e.toWire();
  t.same(wire, { code: 'TRP_ERR_CONFLICT', message: 'pod "a": changed', details: { key: 'pod.default.a' } });
  const back = errorFromWire(wire);
  t.type(back, ConflictError);
  t.equal(back.code, 'TRP_ERR_CONFLICT');
  t.same(back.details, { key: 'pod.default.a' });
  const unknown = errorFromWire({ code: 'TRP_ERR_FROM_THE_FUTURE', message: 'm' });
  t.type(unknown, TroupeError);
  t.equal(unknown.code, 'TRP_ERR_FROM_THE_FUTURE');
});

t.test('anything thrown becomes a TroupeError', async (t) => {
  t.type(toTroupeError(new TypeError('x')), InternalError);
  t.type(toTroupeError('a string'), InternalError);
  const v = new ValidationError('v');
  t.equal(toTroupeError(v), v);
});
