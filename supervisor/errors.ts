/**
 * Errors of the supervisor tree.
 */
import { defineError } from '../protocol/index.js';

/** A supervisor or child spec is invalid; the message names the field. */
export const SupervisorSpecError = defineError('TRP_ERR_SUPERVISOR_SPEC', 'SupervisorSpecError');
export type SupervisorSpecError = InstanceType<typeof SupervisorSpecError>;
/** A child failed to start. */
export const ChildStartError = defineError('TRP_ERR_CHILD_START', 'ChildStartError');
export type ChildStartError = InstanceType<typeof ChildStartError>;
/** A supervisor gave up: more restarts than its intensity allows within its period. */
export const RestartIntensityError = defineError('TRP_ERR_RESTART_INTENSITY', 'RestartIntensityError');
export type RestartIntensityError = InstanceType<typeof RestartIntensityError>;
/** An operation on a supervisor that is stopping or stopped. */
export const SupervisorStoppedError = defineError('TRP_ERR_SUPERVISOR_STOPPED', 'SupervisorStoppedError');
export type SupervisorStoppedError = InstanceType<typeof SupervisorStoppedError>;
/** A child spec id that does not exist, or exists already. */
export const ChildIdError = defineError('TRP_ERR_CHILD_ID', 'ChildIdError');
export type ChildIdError = InstanceType<typeof ChildIdError>;
/** An OS process child exited abnormally. */
export const ProcessExitError = defineError('TRP_ERR_PROCESS_EXIT', 'ProcessExitError');
export type ProcessExitError = InstanceType<typeof ProcessExitError>;
/** A program the process child needs is not installed. */
export const ProgramMissingError = defineError('TRP_ERR_PROGRAM_MISSING', 'ProgramMissingError');
export type ProgramMissingError = InstanceType<typeof ProgramMissingError>;
