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
