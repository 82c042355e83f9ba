/**
 * The pod actor kind on a node: the pod machine with its container effects bound to this node's
 * image store and crun runtime.
 */
import { portMappingsOf } from './cni.js';
import { assign, fromCallback, fromPromise } from 'xstate';
import { netProbe, runProbes, type ProbeExecutor } from './probes.js';
import { defineKind, Persist } from '../actors/index.js';
import type { ContainerRuntime, RunRequest } from './container-runtime.js';
import { containerMachine, type ContainerContext, type ContainerEvent, type ExitInfo, type InspectResult, type PreparedImage } from './container-machine.js';
import type { ImageStore } from './image-store.js';
import type { ClusterImages } from './cluster-images.js';
import { ImageNotFoundError } from './errors.js';
import { podEvents, podInitialSnapshot, podMachine, podStatus, type NodeTuning, type PodRunSpec } from './pod-machine.js';

export const DEFAULT_TUNING: NodeTuning = { backoffBaseMs: 10_000, backoffCapMs: 300_000, backoffResetMs: 600_000 };

/** The pod's sandbox (see ContainerRuntime.ensureSandbox), with the host ports its containers publish. */
function sandboxOf(runtime: ContainerRuntime, c: Pick<ContainerContext, 'podUid' | 'podName' | 'namespace' | 'podSpec'>, opts: { now?: boolean; ahead?: boolean } = {}) {
  return runtime.ensureSandbox(c.podUid, c.podName, c.namespace, portMappingsOf(((c.podSpec as { containers?: Parameters<typeof portMappingsOf>[0] } | undefined)?.containers) ?? []), opts);
}

/** What a container's start asks of the runtime: its actor's (runContainer) and one made ahead (startPodAhead) alike. */
function runRequest(runtime: ContainerRuntime, c: Pick<ContainerContext, 'podUid' | 'podName' | 'namespace' | 'container' | 'podSpec' | 'restartCount'>, image: PreparedImage, sandbox: Promise<{ pid: number }>): RunRequest {
  return {
    sandbox,
    sandboxPid: runtime.sandboxPid(c.podUid),
    podUid: c.podUid,
    podName: c.podName,
    namespace: c.namespace,
    container: c.container,
    image: image.config,
    lowerDir: image.lowerDir,
    podSpec: c.podSpec,
    restartCount: c.restartCount,
  };
}

/**
 * Starts the containers of a pod told of ahead before its actor exists (see PodSync.intent and
 * ContainerRuntime.startAhead): its sandbox is taken now, and each container whose image is on the
 * node is prepared up to crun, held until the pod's starts are released. The pod's actor, once
 * asked to run the pod with this very spec, takes these starts over; a container whose image is
 * not here is left to it (it pulls).
 */
export function startPodAhead(runtime: ContainerRuntime, images: ImageStore, pod: { uid: string; name: string; namespace: string }, spec: PodRunSpec): void {
  const c = { podUid: pod.uid, podName: pod.name, namespace: pod.namespace, podSpec: spec, restartCount: 0 };
  const sandbox = sandboxOf(runtime, c, { now: true, ahead: true });
  sandbox.catch(() => undefined);
  for (const container of spec.containers) {
    const at = images.rootfsAtHand(container.image);
    if (at) runtime.startAhead(runRequest(runtime, { ...c, container }, { config: at.image.config.config, lowerDir: at.path }, sandbox));
  }
}

/** The container machine with crun's effects. Stops wait for a start in flight (a kill is never lost). */
export function boundContainerMachine(runtime: ContainerRuntime, images: ImageStore, cluster?: ClusterImages) {
  const starting = new Map<string, Promise<unknown>>();
  // one download per image, however many containers wait for it
  const inflight = new Map<string, Promise<void>>();
  const fetching = (ref: string, fetch: () => Promise<void>) => {
    let p = inflight.get(ref);
    if (!p) {
      p = fetch().finally(() => inflight.delete(ref));
      inflight.set(ref, p);
    }
    return p;
  };
  const key = (c: ContainerContext) => `${c.podUid}/${c.container.name}`;
  return containerMachine.provide({
    guards: {
      imageAtHand: ({ context }) => images.rootfsAtHand(context.container.image) !== undefined,
    },
    actions: {
      takeImage: assign({
        image: ({ context }) => {
          // (gone since the guard looked, an image removed meanwhile: the start fails as a
          // container that cannot run, and its restart pulls)
          const at = images.rootfsAtHand(context.container.image);
          return at ? { config: at.image.config.config, lowerDir: at.path } : context.image;
        },
      }),
    },
    actors: {
      ensureImage: fromPromise<PreparedImage, { image: string; ctx?: ContainerContext }>(async ({ input }) => {
        // the pod's sandbox comes up meanwhile (the kubelet too makes it before it pulls): the
        // container's start waits for it, its failure is that start's
        if (input.ctx) sandboxOf(runtime, input.ctx).catch(() => undefined);
        try {
          const { path, image } = await images.rootfs(input.image);
          return { config: image.config.config, lowerDir: path };
        } catch (err) {
          if (!(err instanceof ImageNotFoundError) || !cluster) throw err;
        }
        // not on this node: the cluster's images have it, or nobody does
        await fetching(input.image, () => cluster.fetchInto(input.image, images));
        const { path, image } = await images.rootfs(input.image);
        return { config: image.config.config, lowerDir: path };
      }),
      runContainer: fromPromise<{ startedAt: string; pid: number }, { ctx: ContainerContext }>(async ({ input }) => {
        const c = input.ctx;
        // the container is prepared while the sandbox comes up; its config waits for the sandbox
        const run = runtime.run(runRequest(runtime, c, c.image!, sandboxOf(runtime, c)));
        starting.set(key(c), run.catch(() => undefined));
        const started = await run;
        return { startedAt: started.startedAt.toISOString(), pid: started.pid };
      }),
      waitExit: fromPromise<ExitInfo, { ctx: ContainerContext }>(async ({ input }) => {
        const e = await runtime.wait(input.ctx.podUid, input.ctx.container.name);
        return { exitCode: e.exitCode, signal: e.signal, reason: e.reason, message: e.message, finishedAt: e.finishedAt.toISOString() };
      }),
      stopContainer: fromPromise<void, { ctx: ContainerContext }>(async ({ input }) => {
        await starting.get(key(input.ctx));
        if (runtime.isRunning(input.ctx.podUid, input.ctx.container.name)) await runtime.stop(input.ctx.podUid, input.ctx.container.name, input.ctx.graceMs);
      }),
      inspectContainer: fromPromise<InspectResult, { ctx: ContainerContext }>(async ({ input }) => {
        const r = await runtime.inspect(input.ctx.podUid, input.ctx.container.name);
        if (r.state === 'running') return { state: 'running', startedAt: r.startedAt.toISOString(), pid: r.pid };
        if (r.state === 'exited') {
          const e = r.exit;
          return { state: 'exited', exit: { exitCode: e.exitCode, signal: e.signal, reason: e.reason, message: e.message, finishedAt: e.finishedAt.toISOString() } };
        }
        return { state: 'absent' };
      }),
      probes: fromCallback<ContainerEvent, { ctx: ContainerContext }>(({ input, sendBack }) => {
        const c = input.ctx;
        const exec: ProbeExecutor = async (probe, timeoutMs) => {
          if (probe.exec) {
            const r = await runtime.exec(c.podUid, c.container.name, probe.exec.command, { timeout: timeoutMs });
            return r.exitCode === 0 ? { ok: true } : { ok: false, message: `command exited ${r.exitCode}${r.stderr ? `: ${r.stderr.trim().slice(0, 200)}` : ''}` };
          }
          return netProbe(c.pid!, c.container, probe, timeoutMs, (argv, o) => runtime.runCommand(argv, o));
        };
        return runProbes(c.container, exec, (e) => sendBack(e));
      }),
      killContainer: fromPromise<void, { ctx: ContainerContext }>(async ({ input }) => {
        await runtime.stop(input.ctx.podUid, input.ctx.container.name, input.ctx.graceMs);
      }),
      removeContainer: fromPromise<void, { ctx: ContainerContext }>(async ({ input }) => {
        await starting.get(key(input.ctx));
        starting.delete(key(input.ctx));
        await runtime.remove(input.ctx.podUid, input.ctx.container.name);
      }),
    },
  });
}

/** The `pod` kind an agent hosts under its node scope. */
export function podKind(runtime: ContainerRuntime, images: ImageStore, tuning: NodeTuning = DEFAULT_TUNING, cluster?: ClusterImages) {
  const machine = podMachine.provide({
    actors: {
      container: boundContainerMachine(runtime, images, cluster),
      removeSandbox: fromPromise<void, { uid?: string }>(async ({ input }) => {
        if (input.uid) await runtime.removeSandbox(input.uid);
      }),
    },
  });
  return defineKind({
    kind: 'pod',
    machine,
    events: podEvents,
    input: (key) => ({ namespace: key.namespace, name: key.name, tuning }),
    initialSnapshot: (key) => podInitialSnapshot(key, tuning),
    reply: (snapshot) => podStatus(snapshot),
    publish: (snapshot) => podStatus(snapshot),
    // a pod's truth is the runtime's (containers, exit files), rebuilt on adoption, not a snapshot
    persist: Persist.None,
    // a pod that ended can come back under the same name (a new uid): a fresh actor then
    deleteWhenDone: true,
  });
}
