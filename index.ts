/**
 * troupe's public entry for services that embed it: `import { … } from 'troupe'`.
 */
export * from './protocol/index.js';
export * from './supervisor/index.js';
export * from './actors/index.js';
export * from './node-agent/index.js';
