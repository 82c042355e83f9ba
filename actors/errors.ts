/**
 * Errors of the actor runtime and the bus.
 */
import { defineError } from '../protocol/index.js';

/** An actor's machine threw; it is restarted from its last persisted snapshot. */
export const ActorFailedError = defineError('TRP_ERR_ACTOR_FAILED', 'ActorFailedError');
export type ActorFailedError = InstanceType<typeof ActorFailedError>;
/** An actor has reached its final state and takes no more commands. */
export const ActorDoneError = defineError('TRP_ERR_ACTOR_DONE', 'ActorDoneError');
export type ActorDoneError = InstanceType<typeof ActorDoneError>;
/** The command's event type is not one the actor kind accepts. */
/** The bus connection could not be made or is closed. */
export const BusConnectError = defineError('TRP_ERR_BUS_CONNECT', 'BusConnectError');
export type BusConnectError = InstanceType<typeof BusConnectError>;
/** The actor's snapshot could not be persisted in time; the command's outcome is unknown. */
export const PersistError = defineError('TRP_ERR_PERSIST', 'PersistError');
export type PersistError = InstanceType<typeof PersistError>;
