/**
 * How a route finds what its operation acts on, for authorisation: a vault named in the path,
 * body or query (or the caller's only vault), the vault of a machine, point or job, or the whole
 * system ("/"). Each resolver answers a Target (authorize.ts) with the scope string roles match.
 */
import type { FastifyRequest } from 'fastify';
import { CoffreError } from '../core/errors.js';
import { SYSTEM, type Principal } from './access.js';
import type { Target } from './authorize.js';
import { findPoint, type DataContext } from './data.js';
import { requestVault } from './guard.js';
import type { TargetResolver } from './route-auth.js';
import { formatScope, parseScope, vaultScope } from './roles.js';
import { checkName, findItem, resolveVault } from './vaults.js';

export type TargetContext = DataContext;

type Where = 'params' | 'body' | 'query';

function field(req: FastifyRequest, where: Where, key: string): string | undefined {
  const bag = (where === 'params' ? req.params : where === 'body' ? req.body : req.query) as Record<string, unknown> | undefined | null;
  const v = bag && typeof bag === 'object' && !Buffer.isBuffer(bag) ? bag[key] : undefined;
  return typeof v === 'string' && v !== '' ? v : undefined;
}

async function vaultTarget(ctx: TargetContext, vaultId: string, containerId?: string): Promise<Target> {
  const v = await ctx.db.selectFrom('vaults').select(['name', 'subscription']).where('id', '=', vaultId).executeTakeFirst();
  if (!v) throw new CoffreError('VaultNotFound', 'the vault of this object no longer exists');
  return { scope: vaultScope(v.subscription, v.name), vaultId, ...(containerId ? { containerId } : {}) };
}

export function targets(ctx: TargetContext) {
  const root: TargetResolver = async () => ({ scope: '/' });
  /** A listing: the service shows what the caller may view. */
  const filtered: TargetResolver = async () => ({ scope: null });

  /** A vault by name or id; with none given, the caller's only vault. */
  const vault = (where: Where, key = 'vault'): TargetResolver => async (req, p) => {
    const v = await resolveVault(ctx, p, field(req, where, key));
    return { scope: vaultScope(v.subscription, v.name), vaultId: v.id };
  };
  /** Like vault(), but a listing over every visible vault when no vault is named. */
  const vaultOrFiltered = (where: Where, key = 'vault'): TargetResolver => async (req, p) =>
    (field(req, where, key) ? vault(where, key)(req, p) : { scope: null });

  /** The vault a create would make: its scope, before it exists. */
  const newVault: TargetResolver = async (req) => {
    const name = field(req, 'body', 'name') ?? '';
    const subscription = field(req, 'body', 'subscription') ?? 'default';
    checkName('vault', name);
    checkName('subscription', subscription);
    return { scope: vaultScope(subscription, name) };
  };

  /** An agent's own vault; for anyone else the root (agent operations are granted by no role). */
  const ownVault: TargetResolver = async (_req, p: Principal) => (p.kind === 'agent' ? vaultTarget(ctx, p.vaultId, p.containerId) : { scope: '/' });

  const container = (param = 'c'): TargetResolver => async (req) => {
    const id = field(req, 'params', param) ?? '';
    const row = await ctx.db.selectFrom('containers').select(['id', 'vault_id']).where('id', '=', id).executeTakeFirst();
    if (!row) throw new CoffreError('NotFound', `no machine ${id}`);
    return vaultTarget(ctx, row.vault_id, row.id);
  };

  const point = (param = 'point'): TargetResolver => async (req) => {
    const row = await findPoint(ctx, SYSTEM, field(req, 'params', param) ?? '');
    return vaultTarget(ctx, row.vault_id, row.container_id);
  };

  const job = (where: Where, key: string): TargetResolver => async (req) => {
    const id = field(req, where, key) ?? '';
    const row = await ctx.db.selectFrom('jobs').select(['vault_id', 'container_id']).where('id', '=', id).executeTakeFirst();
    if (!row) throw new CoffreError('JobNotFound', `no job ${id}; list jobs with \`coffre jobs\``);
    return vaultTarget(ctx, row.vault_id, row.container_id ?? undefined);
  };

  /** A protected item by name (params), in the vault named by the query, or the caller's. */
  const item = (param = 'item'): TargetResolver => async (req, p) => {
    const vaultName = field(req, 'query', 'vault');
    const row = await findItem(ctx, p, field(req, 'params', param) ?? '', vaultName ? (await resolveVault(ctx, p, vaultName)).id : undefined);
    return vaultTarget(ctx, row.vault_id, row.container_id);
  };

  /** The vault of a guard request. */
  const guardRequest = (param = 'id'): TargetResolver => async (req) => {
    const id = field(req, 'params', param) ?? '';
    const vaultId = await requestVault(ctx, id);
    if (!vaultId) throw new CoffreError('GuardRequestNotFound', `no guard request ${id}; list them with \`coffre guard requests\``);
    return vaultTarget(ctx, vaultId);
  };

  /** The scope a role assignment is made at. */
  const assignmentScope: TargetResolver = async (req) => {
    const scope = field(req, 'body', 'scope');
    if (!scope) throw new CoffreError('BadRequest', 'invalid request: scope: required');
    return { scope: formatScope(parseScope(scope)) };
  };

  return { root, filtered, vault, vaultOrFiltered, newVault, ownVault, container, point, job, item, guardRequest, assignmentScope };
}
