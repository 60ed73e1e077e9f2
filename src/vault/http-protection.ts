/**
 * The API of access and protection: principals and role assignments, the protection lifecycle
 * of items, vault security settings (soft delete, immutability, the guard), machines, vault
 * deletion, job cancellation, the guard's requests and the audit log. Registered by one call
 * from http.ts; like every route, each names its operation and target.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { RoleDefinition } from '../core/api.js';
import { CoffreError } from '../core/errors.js';
import { listAudit } from './audit.js';
import type { DataContext } from './data.js';
import { approveRequest, listRequests } from './guard.js';
import { cancelJob } from './jobs.js';
import { listItems, requestBackup, resumeProtection, stopProtection, undeleteItem } from './lifecycle.js';
import { deletePolicy } from './policies.js';
import { assignRole, createPrincipal, deletePrincipal, listAssignments, listPrincipals, removeRole } from './principals.js';
import { principalOf, type RouteAuth } from './route-auth.js';
import type { targets } from './route-targets.js';
import { ROLE_NAMES, ROLE_OPERATIONS, ROLES } from './roles.js';
import { describeSecurity } from './security-settings.js';
import { deleteVault, listMachines, unregisterMachine } from './teardown.js';
import { setSecurity } from './vault-security.js';
import { resolveVault } from './vaults.js';

interface Door {
  auth: (op: RouteAuth['op'], target?: RouteAuth['target'], audit?: boolean) => { config: { auth: RouteAuth } };
  t: ReturnType<typeof targets>;
  parse: <T>(schema: z.ZodType<T>, value: unknown) => T;
  guardRequest: (req: FastifyRequest) => string | undefined;
}

const NAME = z.string().min(1).max(63);

export function registerProtectionRoutes(app: FastifyInstance, ctx: DataContext, { auth, t, parse, guardRequest }: Door): void {
  const params = (req: FastifyRequest) => req.params as Record<string, string>;
  const query = (req: FastifyRequest) => req.query as Record<string, string | undefined>;
  const vaultOf = (req: FastifyRequest) => resolveVault(ctx, principalOf(req), params(req).vault);

  // Principals and roles: identity is the whole system's business ("/").
  app.post('/v1/principals', auth('access.grant', t.root), async (req) => createPrincipal(ctx, parse(z.object({ name: NAME }), req.body).name));
  app.get('/v1/principals', auth('access.grant', t.root), async () => listPrincipals(ctx));
  app.delete('/v1/principals/:name', auth('access.grant', t.root), async (req) => deletePrincipal(ctx, params(req).name!));
  const assignment = z.object({ principal: NAME, role: z.string(), scope: z.string() });
  app.post('/v1/role-assignments', auth('access.grant', t.assignmentScope), async (req) => assignRole(ctx, parse(assignment, req.body)));
  app.post('/v1/role-assignments/remove', auth('access.grant', t.assignmentScope), async (req) => removeRole(ctx, parse(assignment, req.body)));
  app.get('/v1/role-assignments', auth('view', t.filtered), async (req) => {
    const q = query(req);
    return listAssignments(ctx, principalOf(req), { ...(q.principal ? { principal: q.principal } : {}), ...(q.scope ? { scope: q.scope } : {}) });
  });
  app.get('/v1/roles', auth('view', t.filtered), async (): Promise<RoleDefinition[]> =>
    ROLE_NAMES.map((role) => ({ role, operations: Object.keys(ROLE_OPERATIONS).filter((op) => ROLES[role].has(op as keyof typeof ROLE_OPERATIONS)) })));

  // Vaults: delete, security settings, machines (redundancy: storage-http.ts).
  app.delete('/v1/vaults/:vault', auth('vault.delete', t.vault('params')), async (req) => deleteVault(ctx, principalOf(req), await vaultOf(req)));
  app.get('/v1/vaults/:vault/security', auth('view', t.vault('params')), async (req) => describeSecurity(ctx.db, await vaultOf(req)));
  app.put('/v1/vaults/:vault/security', auth('security.write', t.vault('params')), async (req) => {
    const body = parse(z.object({
      softDelete: z.enum(['Enabled', 'Disabled', 'AlwaysOn']).optional(), softDeleteDays: z.number().int().optional(),
      immutability: z.enum(['Disabled', 'Unlocked', 'Locked']).optional(), guard: NAME.nullable().optional(), guardWindowMinutes: z.number().int().optional(),
    }).strict(), req.body);
    const change = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
    return setSecurity(ctx, principalOf(req), await vaultOf(req), change, guardRequest(req));
  });
  app.get('/v1/vaults/:vault/machines', auth('view', t.vault('params')), async (req) => listMachines(ctx, principalOf(req), await vaultOf(req)));
  app.delete('/v1/vaults/:vault/machines/:machine', auth('machine.unregister', t.vault('params')), async (req) =>
    unregisterMachine(ctx, principalOf(req), await vaultOf(req), params(req).machine!));

  // Items: the protection lifecycle and on-demand backups.
  app.get('/v1/items', auth('view', t.vaultOrFiltered('query')), async (req) => listItems(ctx, principalOf(req), query(req).vault));
  const itemBody = z.object({ vault: z.string().optional() });
  app.post('/v1/items/:item/stop', {
    // Stopping with or without the data are two operations, with their own permissions.
    config: { auth: { op: 'protection.stopRetain', chooseOp: (req) => ((req.body as { deleteData?: unknown } | null)?.deleteData === true ? 'protection.stopDelete' : 'protection.stopRetain'), target: t.vault('body') } },
  }, async (req) => {
    const body = parse(itemBody.extend({ deleteData: z.boolean() }), req.body);
    return stopProtection(ctx, principalOf(req), { ...(body.vault ? { vault: body.vault } : {}), item: params(req).item!, deleteData: body.deleteData, ...(guardRequest(req) ? { requestId: guardRequest(req)! } : {}) });
  });
  app.post('/v1/items/:item/resume', auth('protection.enable', t.vault('body')), async (req) => {
    const body = parse(itemBody.extend({ policy: z.string().optional() }), req.body ?? {});
    return resumeProtection(ctx, principalOf(req), {
      ...(body.vault ? { vault: body.vault } : {}), item: params(req).item!, ...(body.policy ? { policy: body.policy } : {}), ...(guardRequest(req) ? { requestId: guardRequest(req)! } : {}),
    });
  });
  // Undelete brings an item back as "stopped, retain data": the permission of that state.
  app.post('/v1/items/:item/undelete', auth('protection.stopRetain', t.vault('body')), async (req) => {
    const body = parse(itemBody, req.body ?? {});
    return undeleteItem(ctx, principalOf(req), { ...(body.vault ? { vault: body.vault } : {}), item: params(req).item! });
  });
  app.post('/v1/items/:item/backup', auth('backup.onDemand', t.vault('body')), async (req) => {
    const body = parse(itemBody.extend({ retainUntil: z.string().optional() }), req.body ?? {});
    return requestBackup(ctx, principalOf(req), { ...(body.vault ? { vault: body.vault } : {}), item: params(req).item!, ...(body.retainUntil ? { retainUntil: body.retainUntil } : {}) });
  });

  app.delete('/v1/policies/:name', auth('policy.write', t.vault('query')), async (req) => deletePolicy(ctx, principalOf(req), query(req).vault, params(req).name!));
  app.post('/v1/jobs/:job/cancel', auth('job.cancel', t.job('params', 'job')), async (req) => cancelJob(ctx, principalOf(req), params(req).job!));

  // The guard (multi-user authorization) and the audit log.
  app.get('/v1/guard/requests', auth('view', t.filtered), async (req) => listRequests(ctx, principalOf(req)));
  app.post('/v1/guard/requests/:id/approve', auth('guard.approve', t.guardRequest()), async (req) => approveRequest(ctx, principalOf(req), params(req).id!));
  app.get('/v1/audit', auth('view', t.filtered), async (req) => {
    const since = query(req).since;
    if (since !== undefined && Number.isNaN(Date.parse(since))) throw new CoffreError('BadRequest', 'since must be an ISO 8601 time');
    return listAudit(ctx, principalOf(req), { ...(since ? { since: new Date(since).toISOString() } : {}) });
  });
}
