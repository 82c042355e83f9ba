/**
 * `-f FILE|DIR|-`: reads manifests as kubectl does (a folder's .yaml, .yml and .json files in
 * name order; `-` is stdin) and parses every object before any is sent, so a bad one anywhere
 * means nothing is applied.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_MANIFEST_BYTES, ValidationError, parseManifests, type ParsedManifest } from '../protocol/index.js';

function readLimited(path: string): string {
  const size = statSync(path).size;
  if (size > MAX_MANIFEST_BYTES) throw new ValidationError(`${path}: the manifest is ${size} bytes; at most ${MAX_MANIFEST_BYTES} bytes are accepted`, { size, max: MAX_MANIFEST_BYTES });
  return readFileSync(path, 'utf8');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    size += (c as Buffer).length;
    if (size > MAX_MANIFEST_BYTES) throw new ValidationError(`stdin: the manifest is over ${MAX_MANIFEST_BYTES} bytes; at most ${MAX_MANIFEST_BYTES} bytes are accepted`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readManifests(paths: string[], namespace?: string): Promise<ParsedManifest[]> {
  const out: ParsedManifest[] = [];
  const problems: string[] = [];
  const files: string[] = [];
  for (const p of paths) {
    if (p === '-') {
      files.push('-');
      continue;
    }
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new ValidationError(`${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      const names = readdirSync(p).filter((n) => /\.(ya?ml|json)$/.test(n)).sort();
      if (names.length === 0) throw new ValidationError(`${p}: no .yaml, .yml or .json files in this folder`);
      files.push(...names.map((n) => join(p, n)));
    } else files.push(p);
  }
  for (const f of files) {
    try {
      const text = f === '-' ? await readStdin() : readLimited(f);
      out.push(...parseManifests(text, f === '-' ? 'stdin' : f));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length) throw new ValidationError(`${problems.join('\n')}\nnothing was applied`);
  if (namespace) {
    for (const m of out) {
      const o = m.object;
      if (o.kind === 'Namespace' || o.kind === 'Node') continue;
      if (o.metadata.namespace !== 'default' && o.metadata.namespace !== namespace) {
        throw new ValidationError(`${m.source}: the namespace from the manifest (${o.metadata.namespace}) does not match --namespace ${namespace}; nothing was applied`);
      }
      o.metadata.namespace = namespace;
    }
  }
  return out;
}
