/** Principals, roles and the audit log through the real `coffre` command, with its JSON and exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli, harness } from '../testkit/harness.js';

test('principals and roles from the CLI: a key shown once, a role at a scope, a refusal that names what is missing, the audit log', async () => {
  const h = await harness({ vault: 'myvault' });
  try {
    const env = { COFFRE_SERVER: h.server.url, COFFRE_FINGERPRINT: h.server.fingerprint!, COFFRE_AGENT_DIR: `${h.dir}/none` };
    const as = (token: string, args: string[]) => cli(args, { ...env, COFFRE_TOKEN: token }, { cwd: h.dir });
    const admin = h.server.adminToken;

    const created = await as(admin, ['principal', 'create', 'alice']);
    assert.equal(created.code, 0, created.stderr);
    const key = /API key \(shown once, keep it safe\): (cpk_\S+)/.exec(created.stdout)?.[1];
    assert.ok(key, created.stdout);
    const dup = await as(admin, ['principal', 'create', 'alice']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /\[PrincipalExists\]/);

    // No role yet: alice is known but may do nothing, and sees nothing.
    assert.deepEqual(JSON.parse((await as(key!, ['vault', 'list', '--json'])).stdout), []);
    const bad = await as(admin, ['role', 'assign', '--principal', 'alice', '--role', 'Janitor', '--scope', '/subscriptions/default/vaults/myvault']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /the built-in roles are Owner, Contributor, Reader, Backup Contributor, Backup Operator, Backup Reader \[InvalidArgument\]/);
    const badScope = await as(admin, ['role', 'assign', '--principal', 'alice', '--role', 'Reader', '--scope', 'myvault']);
    assert.equal(badScope.code, 2);
    assert.match(badScope.stderr, /scope "myvault" is not valid/);

    const assigned = await as(admin, ['role', 'assign', '--principal', 'alice', '--role', 'Backup Reader', '--scope', '/subscriptions/default/vaults/myvault', '--json']);
    assert.equal(assigned.code, 0, assigned.stderr);
    assert.deepEqual((({ principal, role, scope }) => ({ principal, role, scope }))(JSON.parse(assigned.stdout)), { principal: 'alice', role: 'Backup Reader', scope: '/subscriptions/default/vaults/myvault' });
    const roles = JSON.parse((await as(admin, ['role', 'list', '--json'])).stdout) as { principal: string; role: string; scope: string }[];
    assert.deepEqual(roles.map((r) => `${r.principal} ${r.role} ${r.scope}`).sort(), ['admin Owner /', 'alice Backup Reader /subscriptions/default/vaults/myvault']);
    const principals = JSON.parse((await as(admin, ['principal', 'list', '--json'])).stdout) as { name: string; builtin: boolean }[];
    assert.deepEqual(principals.map((p) => [p.name, p.builtin]), [['admin', true], ['alice', false]]);
    const defs = JSON.parse((await as(admin, ['role', 'list', '--definitions', '--json'])).stdout) as { role: string; operations: string[] }[];
    assert.deepEqual(defs.find((d) => d.role === 'Backup Reader')!.operations, ['view']);

    // Now alice views the vault, and is refused what her role lacks, by name.
    assert.deepEqual(JSON.parse((await as(key!, ['vault', 'list', '--json'])).stdout).map((v: { name: string }) => v.name), ['myvault']);
    assert.equal((await as(key!, ['item', 'list', '--json'])).code, 0);
    const refused = await as(key!, ['vault', 'credentials', 'myvault', '--out', `${h.dir}/x.cred`]);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /^coffre: alice may not register machine at \/subscriptions\/default\/vaults\/myvault: that needs the permission "register machine" \(machine\.register\), which only Owner, Contributor, Backup Contributor, Backup Operator grant; alice holds Backup Reader at \/subscriptions\/default\/vaults\/myvault \[Forbidden\]\n$/);
    const grant = await as(key!, ['role', 'assign', '--principal', 'alice', '--role', 'Owner', '--scope', '/']);
    assert.equal(grant.code, 3);
    assert.match(grant.stderr, /may not grant access at \/.*\[Forbidden\]/);

    // The audit log: every mutating call, refused ones included, with who did it.
    const audit = await as(admin, ['audit', '--since', '1h', '--json']);
    assert.equal(audit.code, 0, audit.stderr);
    const entries = JSON.parse(audit.stdout) as { principal: string; operation: string; result: string; code: string | null; time: string; target: string }[];
    const line = (e: typeof entries[number]) => `${e.principal} ${e.operation} ${e.result}${e.code ? ` ${e.code}` : ''}`;
    const lines = entries.map(line);
    for (const expected of ['admin access.grant Succeeded', 'admin access.grant Failed PrincipalExists', 'admin access.grant Failed InvalidArgument', 'alice machine.register Refused Forbidden', 'alice access.grant Refused Forbidden', 'admin vault.create Succeeded', 'admin machine.register Succeeded']) {
      assert.ok(lines.includes(expected), `${expected} in ${JSON.stringify(lines)}`);
    }
    assert.ok(entries.every((e, i) => i === 0 || e.time >= entries[i - 1]!.time), 'oldest first');
    const later = await as(admin, ['audit', '--since', new Date(Date.now() + 60_000).toISOString(), '--json']);
    assert.deepEqual(JSON.parse(later.stdout), []);
    assert.match((await as(admin, ['audit'])).stdout, /alice\s.*machine\.register.*Refused/);
    const badSince = await as(admin, ['audit', '--since', 'yesterday']);
    assert.equal(badSince.code, 2);

    // Deleting alice ends her key.
    assert.equal((await as(admin, ['principal', 'delete', 'alice'])).code, 0);
    const gone = await as(key!, ['vault', 'list']);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /\[Unauthorized\]/);
    assert.match((await as(admin, ['principal', 'delete', 'admin'])).stderr, /built-in principal.*\[InvalidArgument\]/);
  } finally {
    await h.close();
  }
});
