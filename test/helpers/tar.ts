/**
 * Builds tar archives byte by byte, including hostile ones a normal tar tool refuses to write.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TarSpec {
  path: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
}

function header(e: TarSpec, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, at: number, len: number) => h.write(s.slice(0, len), at, 'utf8');
  const oct = (n: number, at: number, len: number) => put(n.toString(8).padStart(len - 1, '0') + '\0', at, len);
  put(e.path, 0, 100);
  oct(e.mode ?? (e.type === 'dir' ? 0o755 : 0o644), 100, 8);
  oct(0, 108, 8);
  oct(0, 116, 8);
  oct(size, 124, 12);
  oct(1_700_000_000, 136, 12);
  h.write('        ', 148);
  h.write({ file: '0', dir: '5', symlink: '2', hardlink: '1' }[e.type ?? 'file'], 156);
  put(e.linkname ?? '', 157, 100);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

export function makeTar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === 'file' || e.type === undefined ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    parts.push(header(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A busybox userland in `dir` (relative applet links), for test images. */
export function busyboxRootfs(dir: string): string {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'var/www']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  return dir;
}

/** Tars a folder with GNU tar. */
export function tarDir(dir: string, out: string): string {
  execFileSync('tar', ['-C', dir, '-cf', out, '.']);
  return out;
}

/**
 * A real OCI image built with umoci from a busybox rootfs (gzip layer, CMD set), exported by
 * skopeo as a docker-save archive and as an OCI archive.
 */
export function busyboxArchives(dir: string, cmd: string[]): { docker: string; oci: string } {
  const layout = join(dir, 'layout');
  execFileSync('umoci', ['init', '--layout', layout]);
  execFileSync('umoci', ['new', '--image', `${layout}:1.0`]);
  execFileSync('umoci', ['unpack', '--rootless', '--image', `${layout}:1.0`, join(dir, 'bundle')]);
  busyboxRootfs(join(dir, 'bundle', 'rootfs'));
  execFileSync('umoci', ['repack', '--image', `${layout}:1.0`, join(dir, 'bundle')]);
  execFileSync('umoci', ['config', '--image', `${layout}:1.0`, ...cmd.flatMap((c) => ['--config.cmd', c])]);
  const docker = join(dir, 'docker.tar');
  const oci = join(dir, 'oci.tar');
  execFileSync('skopeo', ['copy', '-q', `oci:${layout}:1.0`, `docker-archive:${docker}:loaded:2.0`]);
  execFileSync('skopeo', ['copy', '-q', `oci:${layout}:1.0`, `oci-archive:${oci}:loaded:3.0`]);
  return { docker, oci };
}
