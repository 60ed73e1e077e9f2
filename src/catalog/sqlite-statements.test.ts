/** Kept statements give the same answers as fresh ones: across evictions, writes, and a streamed query running beside a lookup of the same SQL. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { keepingStatements } from './sqlite-statements.js';

interface Schema { t: { id: number; v: string } }

test('kept statements answer like fresh ones, evicted or not, and a stream runs beside a lookup of the same SQL', async () => {
  const sqlite = new Database(':memory:');
  const prepared: string[] = [];
  const prepare = sqlite.prepare.bind(sqlite);
  sqlite.prepare = ((sql: string) => { prepared.push(sql); return prepare(sql); }) as typeof sqlite.prepare;
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: keepingStatements(sqlite, 2) }) });
  try {
    await db.schema.createTable('t').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('v', 'text').execute();
    for (let i = 1; i <= 5; i++) await db.insertInto('t').values({ id: i, v: `v${i}` }).execute();
    const byId = (id: number) => db.selectFrom('t').select('v').where('id', '=', id).executeTakeFirst();
    const before = prepared.length;
    assert.deepEqual(await byId(3), { v: 'v3' });
    assert.deepEqual(await byId(4), { v: 'v4' });
    assert.equal(prepared.length, before + 1, 'the same SQL is prepared once');
    // Two other statements push it out; it is prepared again and still right.
    await db.selectFrom('t').select('id').where('v', '=', 'v1').execute();
    await db.selectFrom('t').select('id').where('id', '>', 4).execute();
    assert.deepEqual(await byId(5), { v: 'v5' });
    assert.equal(prepared.length, before + 4);
    await db.updateTable('t').set({ v: 'changed' }).where('id', '=', 5).execute();
    assert.deepEqual(await byId(5), { v: 'changed' }, 'a kept statement reads what was written since');

    const seen: number[] = [];
    for await (const row of db.selectFrom('t').select('id').where('id', '>', 0).orderBy('id').stream()) seen.push(row.id);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    // Below Kysely: an iteration keeps its statement busy; the same SQL run meanwhile must not reuse it.
    const raw = keepingStatements(new Database(':memory:'));
    raw.prepare('create table n (x integer)').run([]);
    for (const x of [1, 2, 3]) raw.prepare('insert into n values (?)').run([x]);
    const sql = 'select x from n where x > ? order by x';
    const rows: unknown[] = [];
    for (const row of raw.prepare(sql).iterate([0])) rows.push([row, raw.prepare(sql).all([1]).length]);
    assert.deepEqual(rows, [[{ x: 1 }, 2], [{ x: 2 }, 2], [{ x: 3 }, 2]]);
    raw.close();
  } finally {
    await db.destroy();
  }
});
