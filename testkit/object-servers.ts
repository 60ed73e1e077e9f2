/**
 * Real object services for the tests, each started once per test file on a free loopback
 * port and stopped after: Azurite (Azure Blob) and fauxqs's S3 service, both from npm. They
 * run as child processes, so that a test never shares its process (or its event loop) with
 * them.
 *
 * Why fauxqs for S3: s3rver, the usual choice, fails the store contract — it answers a
 * PutObject before the object is written (a read right after sees it truncated), writes in
 * place (concurrent puts of one key mix their bytes), and its list continuation tokens need
 * OpenSSL's legacy DES. fauxqs keeps objects in memory, stores a put whole once its body has
 * arrived, and pages ListObjectsV2 with continuation tokens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Azurite's well-known development account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
export const S3_KEY_ID = 'coffre-test';
export const S3_SECRET = 'coffre-test-secret';

export interface ObjectServer {
  /** The service's URL (for Azurite, with the account: http://127.0.0.1:PORT/devstoreaccount1). */
  endpoint: string;
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);

async function startChild(args: string[], ready: RegExp, what: string, dir: string): Promise<{ child: ChildProcess; port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${what} did not start within 60 s: ${out}`)); }, 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}: ${out}`)); });
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child, port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startAzurite(): Promise<ObjectServer> {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-azurite-'));
  const main = join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');
  // --disableTelemetry: Azurite reports usage over the network otherwise.
  const s = await startChild([main, '--blobHost', '127.0.0.1', '--blobPort', '0', '--location', dir, '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent'],
    /listens on http:\/\/127\.0\.0\.1:(\d+)/, 'Azurite', dir);
  return { endpoint: `http://127.0.0.1:${s.port}/${AZURITE_ACCOUNT}`, stop: () => s.stop() };
}

export async function startS3(): Promise<ObjectServer> {
  const dir = await mkdtemp(join(tmpdir(), 'coffre-s3-'));
  const main = join(dirname(fileURLToPath(import.meta.url)), 's3-main.js');
  const s = await startChild([main], /s3 listening on (\d+)/, 'the S3 service (fauxqs)', dir);
  return { endpoint: `http://127.0.0.1:${s.port}`, stop: () => s.stop() };
}

export function azblobUrl(server: ObjectServer, container: string, prefix = ''): string {
  return `azblob://${AZURITE_ACCOUNT}/${container}${prefix ? `/${prefix}` : ''}?endpoint=${encodeURIComponent(server.endpoint)}`;
}

export function s3Url(server: ObjectServer, bucket: string, prefix = ''): string {
  return `s3://${bucket}${prefix ? `/${prefix}` : ''}?endpoint=${encodeURIComponent(server.endpoint)}&region=us-east-1`;
}

/** The environment that gives the test services' keys to `coffre server --config`. */
export const OBJECT_SERVER_ENV = { AZURE_STORAGE_KEY: AZURITE_KEY, AWS_ACCESS_KEY_ID: S3_KEY_ID, AWS_SECRET_ACCESS_KEY: S3_SECRET };
