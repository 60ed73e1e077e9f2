import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { ItemSettings } from './item-settings.js';

const schema = z.strictObject({ name: z.string(), size: z.number() });
const settings = new ItemSettings((agentDir) => join(agentDir, 'things'), schema, { noun: 'thing', protect: (n) => `coffre thing protect ${n} --size N` });

test('item settings: saved, read back and listed by name; damaged or absent ones say what to do', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-settings-'));
  try {
    assert.deepEqual(await settings.list(dir), [], 'no folder yet: nothing protected');
    await settings.save(dir, { name: 'b', size: 2 });
    await settings.save(dir, { name: 'a', size: 1 });
    assert.deepEqual(await settings.list(dir), [{ name: 'a', size: 1 }, { name: 'b', size: 2 }]);
    assert.equal(JSON.parse(await readFile(join(dir, 'things', 'a.json'), 'utf8')).size, 1);
    assert.equal(await settings.load(dir, 'c'), null);
    await assert.rejects(settings.require(dir, 'c'), (e: unknown) => e instanceof CoffreError && e.code === 'ItemNotFound' && e.message.includes('coffre thing protect c --size N'));
    await assert.rejects(settings.save(dir, { name: '../x', size: 1 }), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument');
    await mkdir(join(dir, 'things'), { recursive: true });
    for (const [name, text] of [['torn', '{"name": "torn", "si'], ['wrong', '{"name": "wrong", "size": "big"}']]) {
      await writeFile(join(dir, 'things', `${name}.json`), text);
      await assert.rejects(settings.load(dir, name!), (e: unknown) => e instanceof CoffreError && e.code === 'InvalidArgument' && e.message.includes(`thing ${name}`) && e.message.includes('are damaged; run `coffre thing protect'));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
