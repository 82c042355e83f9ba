/**
 * cli/: the `troupe` command's parts that other code may reuse.
 */
export { up } from './up.js';
export type { UpOptions, Cluster } from './up.js';
export { readContext, writeContext, resolveServer, contextFile } from './context.js';
export type { Context } from './context.js';
export { VERSION } from './version.js';
