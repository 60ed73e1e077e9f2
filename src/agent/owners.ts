/**
 * Owners by name as well as by number, as tar and restic keep them: a backup records the user
 * and group names of the ids it saw; a restore on another machine gives a file the local id of
 * that name when the name exists there, and the recorded number otherwise (`--numeric-owner`
 * forces numbers). Names come from the system's databases: /etc/passwd and /etc/group, then
 * `getent` for ids and names they lack (LDAP, sssd), asked once each.
 */
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { OwnerNames } from '../core/manifest.js';

type Db = 'passwd' | 'group';

/** name -> id and id -> name of one database file; unreadable or absent files are empty. */
function parseDb(path: string): { byId: Map<number, string>; byName: Map<string, number> } {
  const byId = new Map<number, string>();
  const byName = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // A system without the file (a minimal container) resolves through getent alone.
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3 || !fields[0] || fields[0].startsWith('#')) continue;
    const id = Number(fields[2]);
    if (!Number.isSafeInteger(id) || id < 0) continue;
    if (!byId.has(id)) byId.set(id, fields[0]);
    if (!byName.has(fields[0])) byName.set(fields[0], id);
  }
  return { byId, byName };
}

function getent(db: Db, key: string): string[] | null {
  const r = spawnSync('getent', [db, key], { encoding: 'utf8', timeout: 5000 });
  if (r.status !== 0 || !r.stdout) return null;
  const fields = r.stdout.split('\n')[0]!.split(':');
  return fields.length >= 3 ? fields : null;
}

export interface OwnerSources { passwd?: string; group?: string; getent?: boolean }

export class OwnerDirectory {
  private readonly dbs: Record<Db, { byId: Map<number, string>; byName: Map<string, number> }>;
  private readonly asked = new Set<string>();
  private readonly useGetent: boolean;

  constructor(sources: OwnerSources = {}) {
    this.dbs = { passwd: parseDb(sources.passwd ?? '/etc/passwd'), group: parseDb(sources.group ?? '/etc/group') };
    this.useGetent = sources.getent ?? true;
  }

  private ask(db: Db, key: string): void {
    const k = `${db}:${key}`;
    if (!this.useGetent || this.asked.has(k)) return;
    this.asked.add(k);
    const fields = getent(db, key);
    if (!fields) return;
    const id = Number(fields[2]);
    if (!Number.isSafeInteger(id)) return;
    const d = this.dbs[db];
    if (!d.byId.has(id)) d.byId.set(id, fields[0]!);
    if (!d.byName.has(fields[0]!)) d.byName.set(fields[0]!, id);
  }

  nameOf(db: Db, id: number): string | undefined {
    if (!this.dbs[db].byId.has(id)) this.ask(db, String(id));
    return this.dbs[db].byId.get(id);
  }

  idOf(db: Db, name: string): number | undefined {
    if (!this.dbs[db].byName.has(name)) this.ask(db, name);
    return this.dbs[db].byName.get(name);
  }
}

/** The names of the given ids that the system knows; ids without a name are left out. */
export function ownerNames(dir: OwnerDirectory, uids: Iterable<number>, gids: Iterable<number>): OwnerNames {
  const users: Record<string, string> = {};
  const groups: Record<string, string> = {};
  for (const uid of uids) { const n = dir.nameOf('passwd', uid); if (n !== undefined) users[uid] = n; }
  for (const gid of gids) { const n = dir.nameOf('group', gid); if (n !== undefined) groups[gid] = n; }
  return { users, groups };
}

/**
 * The ids a restore gives to a recorded owner: the local id of the recorded name when it
 * exists here, the recorded number otherwise, and always the number with `numeric`.
 * Each distinct id is looked up once.
 */
export function ownerMapper(names: OwnerNames | undefined, dir: OwnerDirectory | null): { uid(id: number): number; gid(id: number): number } {
  const cache = { passwd: new Map<number, number>(), group: new Map<number, number>() };
  const map = (db: Db, recorded: Record<string, string> | undefined, id: number): number => {
    if (!dir || !recorded) return id;
    let local = cache[db].get(id);
    if (local === undefined) {
      const name = recorded[id];
      local = (name === undefined ? undefined : dir.idOf(db, name)) ?? id;
      cache[db].set(id, local);
    }
    return local;
  };
  return { uid: (id) => map('passwd', names?.users, id), gid: (id) => map('group', names?.groups, id) };
}
