/**
 * A folder of per-item protection settings in the agent folder (`coffre vm protect`, `coffre
 * db protect`): one JSON file per item, named by the item, checked against a schema when read.
 * A damaged file is an error that says how to write it again; a missing one is null.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { z } from 'zod';
import { CoffreError } from '../core/errors.js';
import { writeFileAtomic } from './state.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface SettingsWording {
  /** How the item is named in messages: "VM", "database". */
  noun: string;
  /** The command that protects an item, with the options a user must give: `coffre vm protect NAME --disk IMAGE`. */
  protect(name: string): string;
}

export class ItemSettings<T extends { name: string }> {
  constructor(private readonly dir: (agentDir: string) => string, private readonly schema: z.ZodType<T>, private readonly words: SettingsWording) {}

  private file(agentDir: string, name: string): string {
    return join(this.dir(agentDir), `${name}.json`);
  }

  checkName(name: string): void {
    if (!NAME.test(name)) throw new CoffreError('InvalidArgument', `${this.words.noun} name ${JSON.stringify(name)} is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }

  async save(agentDir: string, settings: T): Promise<void> {
    this.checkName(settings.name);
    await writeFileAtomic(this.file(agentDir, settings.name), JSON.stringify(this.schema.parse(settings), null, 2) + '\n');
  }

  async load(agentDir: string, name: string): Promise<T | null> {
    this.checkName(name);
    let text: string;
    try {
      text = await readFile(this.file(agentDir, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    let parsed: ReturnType<z.ZodType<T>['safeParse']> | null = null;
    try {
      parsed = this.schema.safeParse(JSON.parse(text));
    } catch (e) {
      // Not JSON at all: damaged like a file that fails the schema.
      if (!(e instanceof SyntaxError)) throw e;
    }
    if (!parsed?.success) {
      throw new CoffreError('InvalidArgument', `the protection settings of ${this.words.noun} ${name} (${this.file(agentDir, name)}) are damaged; run \`${this.words.protect(name).split(' --')[0]} ...\` again`);
    }
    return parsed.data;
  }

  async require(agentDir: string, name: string): Promise<T> {
    const c = await this.load(agentDir, name);
    if (!c) throw new CoffreError('ItemNotFound', `${this.words.noun} ${name} is not protected on this machine; run \`${this.words.protect(name)}\` first`);
    return c;
  }

  async list(agentDir: string): Promise<T[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir(agentDir))).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: T[] = [];
    for (const n of names.sort()) {
      if (!NAME.test(n)) continue;
      const c = await this.load(agentDir, n);
      if (c) out.push(c);
    }
    return out;
  }
}
