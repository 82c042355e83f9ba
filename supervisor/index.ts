/**
 * supervisor/: the supervisor tree (OTP semantics), injected clocks, process and task children,
 * the root logger. Knows nothing about pods.
 */
export { Supervisor, supervisorChild } from './supervisor.js';
export type { SupervisorReport, SupervisorOptions, ChildInfo, ReportContext } from './supervisor.js';
export { Restart, Strategy, isAbnormal, validateChildSpec, validateSupervisorSpec } from './child-spec.js';
export type { ChildSpec, ChildHandle, ChildContext, ExitReason, Shutdown, SupervisorSpec } from './child-spec.js';
export { RestartIntensity } from './restart-intensity.js';
export { systemClock, SimulatedClock, sleep, backoff, flush } from './clock.js';
export type { Clock, TimerHandle } from './clock.js';
export { processChild, findProgram, requireProgram } from './process-child.js';
export type { ProcessChildOptions, ProcessValue } from './process-child.js';
export { taskChild } from './task-child.js';
export type { TaskChildOptions } from './task-child.js';
export { createLogger, silentLogger, isLogLevel, LOG_LEVELS } from './logger.js';
export type { Logger, LoggerOptions } from './logger.js';
export {
  SupervisorSpecError,
  ChildStartError,
  RestartIntensityError,
  SupervisorStoppedError,
  ChildIdError,
  ProcessExitError,
  ProgramMissingError,
} from './errors.js';
