import { readdirSync, readFileSync } from 'node:fs';

/** A file's text, or '' when it cannot be read (not there yet, or gone). */
export function readIf(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** A folder's entries, or none when it cannot be read (not there yet, or gone). */
export function readdirIf(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Whether a process runs: there, and not a zombie (one that ended stays a zombie until its parent
 * reaps it, and `kill -0` finds it all the same).
 */
export function running(pid: number): boolean {
  const stat = readIf(`/proc/${pid}/stat`);
  return stat !== '' && !/^\d+ \(.*\) Z/.test(stat);
}
