/**
 * `coffre server --config FILE`: the server's configuration in YAML (or JSON, which YAML
 * reads too), validated at the edge with messages that name the field and what to write.
 * Without a file, the embedded default is used: under the data folder, a primary region of
 * three zone folders and a secondary region of one, so that every redundancy works (and is
 * honest about it: folders on one disk protect against no disk failure).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { checkStoreUrl } from '../store/store-url.js';
import type { TopologySpec } from '../store/topology.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const name = z.string().regex(NAME, 'use 1-63 letters, digits, ".", "_" or "-"');

const zone = z.object({
  name,
  store: z.string().min(1),
  accountKey: z.string().min(1).optional(),
  accessKeyId: z.string().min(1).optional(),
  secretAccessKey: z.string().min(1).optional(),
}).strict();
const region = z.object({ name, zones: z.array(zone).min(1, 'a region needs at least one zone') }).strict();
const schema = z.object({
  data: z.string().min(1).optional(),
  listen: z.string().min(1).optional(),
  /** The catalog's database (scale-out): a postgresql:// URL; without it, SQLite in the data folder. */
  catalog: z.string().regex(/^postgres(ql)?:\/\//i, 'write postgresql://USER:PASSWORD@HOST:PORT/DATABASE').optional(),
  regions: z.object({ primary: region, secondary: region.optional() }).strict(),
  retry: z.object({
    attempts: z.number().int().min(1).max(20),
    baseDelayMs: z.number().int().min(1).max(60_000),
    factor: z.number().min(1).max(10),
    maxDelayMs: z.number().int().min(1).max(600_000),
  }).partial().strict().optional(),
}).strict();

export interface ServerConfig { data?: string | undefined; listen?: string | undefined; catalog?: string | undefined; topology: TopologySpec }

const invalid = (file: string, why: string) => new CoffreError('ConfigInvalid', `configuration ${file}: ${why}`);

export function parseConfig(text: string, file: string): ServerConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw invalid(file, `not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw invalid(file, `${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  const c = r.data;
  const seen = new Map<string, string>();
  const regions = [['primary', c.regions.primary], ...(c.regions.secondary ? [['secondary', c.regions.secondary] as const] : [])] as const;
  if (c.regions.secondary && c.regions.secondary.name === c.regions.primary.name) throw invalid(file, 'regions.secondary.name: the paired region needs a name of its own');
  for (const [role, reg] of regions) {
    const names = new Set<string>();
    reg.zones.forEach((zn, i) => {
      const at = `regions.${role}.zones.${i}`;
      if (names.has(zn.name)) throw invalid(file, `${at}.name: zone ${zn.name} appears twice in region ${reg.name}`);
      names.add(zn.name);
      try {
        checkStoreUrl(zn.store, `${at}.store`);
      } catch (e) {
        if (e instanceof CoffreError) throw invalid(file, e.message);
        throw e;
      }
      const url = zn.store.replace(/\/+$/, '');
      const other = seen.get(url);
      if (other) throw invalid(file, `${at}.store: ${zn.store} is also ${other}; each zone needs a store of its own, or the copies are one`);
      seen.set(url, at);
    });
  }
  const base = dirname(resolve(file));
  return {
    data: c.data === undefined ? undefined : resolve(base, c.data),
    listen: c.listen,
    catalog: c.catalog,
    topology: { primary: c.regions.primary, secondary: c.regions.secondary, retry: c.retry },
  };
}

export function loadConfig(file: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw invalid(file, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, file);
}

export const REGIONS_DIR = 'regions';

/** The embedded default: three zone folders in a primary region, one in a secondary, under the data folder. */
export function defaultTopology(dataDir: string): TopologySpec {
  const folder = (...parts: string[]) => pathToFileURL(join(dataDir, REGIONS_DIR, ...parts)).href;
  return {
    primary: { name: 'primary', zones: ['zone-1', 'zone-2', 'zone-3'].map((z) => ({ name: z, store: folder('primary', z) })) },
    secondary: { name: 'secondary', zones: [{ name: 'zone-1', store: folder('secondary', 'zone-1') }] },
  };
}

/**
 * `--store URL`: the shorthand for a one-zone LRS topology (one primary region of one zone, no
 * paired region), the store shared by every node of a scale-out deployment. Secrets come from
 * the environment ($AZURE_STORAGE_KEY, $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY).
 */
export function singleStoreTopology(url: string): TopologySpec {
  try {
    checkStoreUrl(url, '--store');
  } catch (e) {
    if (e instanceof CoffreError) throw new CoffreError('InvalidArgument', e.message);
    throw e;
  }
  return { primary: { name: 'primary', zones: [{ name: 'zone-1', store: url }] } };
}
