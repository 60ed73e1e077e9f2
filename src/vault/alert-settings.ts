/** Alert settings: webhooks, storage thresholds, the replication lag allowed and disabled rules, one validated document per server. */
import type { Kysely } from 'kysely';
import { z } from 'zod';
import type { Database } from '../catalog/schema.js';
import type { Clock } from '../core/clock.js';
import { CoffreError } from '../core/errors.js';
import { ALERT_RULES, type AlertRule, type AlertSettings } from '../core/monitor-api.js';

/** An hour: the service we model typically replicates within 15 minutes, so an hour is a real problem, not a busy moment. */
export const DEFAULT_REPLICATION_LAG_SECONDS = 3600;

export const DEFAULT_SETTINGS: AlertSettings = {
  webhooks: [], storageThresholdBytes: null, vaultStorageThresholdBytes: {}, replicationLagSeconds: DEFAULT_REPLICATION_LAG_SECONDS, disabledRules: [],
};

const bytes = z.number().int().nonnegative();
const schema = z.object({
  webhooks: z.array(z.object({
    url: z.string().url().refine((u) => /^https?:\/\//i.test(u), 'a webhook is an http:// or https:// URL'),
    secret: z.string().min(1).optional(),
  }).strict()).max(20),
  storageThresholdBytes: bytes.nullable(),
  vaultStorageThresholdBytes: z.record(z.string(), bytes),
  replicationLagSeconds: z.number().int().positive().nullable().default(DEFAULT_REPLICATION_LAG_SECONDS),
  disabledRules: z.array(z.enum(ALERT_RULES as [AlertRule, ...AlertRule[]])),
}).strict();

export function validateSettings(body: unknown): AlertSettings {
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new CoffreError('InvalidArgument', `invalid alert settings: ${issue ? `${issue.path.join('.') || 'settings'}: ${issue.message}` : 'malformed'}`);
  }
  const s = r.data;
  return {
    webhooks: s.webhooks.map((w) => ({ url: w.url, ...(w.secret ? { secret: w.secret } : {}) })),
    storageThresholdBytes: s.storageThresholdBytes, vaultStorageThresholdBytes: s.vaultStorageThresholdBytes, replicationLagSeconds: s.replicationLagSeconds, disabledRules: [...new Set(s.disabledRules)],
  };
}

export async function loadSettings(db: Kysely<Database>): Promise<AlertSettings> {
  const row = await db.selectFrom('alert_settings').select('body').where('id', '=', 'default').executeTakeFirst();
  return row ? validateSettings(JSON.parse(row.body)) : DEFAULT_SETTINGS;
}

export async function saveSettings(ctx: { db: Kysely<Database>; clock: Clock }, body: unknown): Promise<AlertSettings> {
  const settings = validateSettings(body);
  const now = ctx.clock.now().toISOString();
  await ctx.db.insertInto('alert_settings').values({ id: 'default', body: JSON.stringify(settings), updated_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet({ body: JSON.stringify(settings), updated_at: now })).execute();
  return settings;
}
