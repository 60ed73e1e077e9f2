/**
 * Store URLs, the way a configuration names a zone's store:
 *   file:///srv/disk1/coffre
 *   azblob://ACCOUNT/CONTAINER[/PREFIX]?endpoint=https://…   (key: `accountKey` or $AZURE_STORAGE_KEY)
 *   s3://BUCKET[/PREFIX]?endpoint=https://…&region=…         (keys: `accessKeyId`/`secretAccessKey` or $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY)
 * The choice of driver is made here, once; nothing above this file asks which one it has.
 */
import { fileURLToPath } from 'node:url';
import { CoffreError } from '../core/errors.js';
import { LocalFolderStore } from './local-folder.js';
import type { ObjectStore } from './object-store.js';

export interface StoreSecrets { accountKey?: string | undefined; accessKeyId?: string | undefined; secretAccessKey?: string | undefined }

/** A driver, with what it needs before first use (a folder, a container, a bucket) and its shutdown. */
export interface Driver { name: string; store: ObjectStore; create(): Promise<void>; close(): void }

const invalid = (where: string, why: string) => new CoffreError('ConfigInvalid', `${where}: ${why}`);

function pageSize(url: URL, where: string): number | undefined {
  const v = url.searchParams.get('pageSize');
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 5000) throw invalid(where, 'pageSize must be an integer from 1 to 5000');
  return n;
}

function pathParts(url: URL): string[] {
  return url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
}

/** Checks a store URL without opening anything: for configuration validation. */
export function checkStoreUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(where, `${JSON.stringify(text)} is not a store URL (file:///PATH, azblob://ACCOUNT/CONTAINER?endpoint=…, s3://BUCKET/PREFIX?endpoint=…&region=…)`);
  }
  if (url.protocol === 'file:') {
    if (url.host) throw invalid(where, `${text}: a file URL names a local folder, file:///PATH (three slashes)`);
    if (url.pathname === '/' || url.pathname === '') throw invalid(where, `${text}: name a folder, not the root of the file system`);
    return;
  }
  if (url.protocol === 'azblob:') {
    if (!url.host) throw invalid(where, `${text}: give the storage account, azblob://ACCOUNT/CONTAINER`);
    const parts = pathParts(url);
    if (!parts[0] || !/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/.test(parts[0])) throw invalid(where, `${text}: give a container name (3-63 lower-case letters, digits and single hyphens), azblob://ACCOUNT/CONTAINER`);
  } else if (url.protocol === 's3:') {
    if (!url.host || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(url.host)) throw invalid(where, `${text}: give a bucket name (3-63 lower-case letters, digits, dots and hyphens), s3://BUCKET/PREFIX`);
  } else {
    throw invalid(where, `${text}: unknown kind of store ${url.protocol}// (use file://, azblob:// or s3://)`);
  }
  const endpoint = url.searchParams.get('endpoint');
  if (endpoint !== null) {
    try {
      const e = new URL(endpoint);
      if (e.protocol !== 'http:' && e.protocol !== 'https:') throw new Error('not http');
    } catch {
      throw invalid(where, `${text}: endpoint ${JSON.stringify(endpoint)} is not an http(s) URL`);
    }
  }
  pageSize(url, where);
}

/**
 * The Azure and S3 drivers load their SDKs only when a store uses them: unused, they were
 * several megabytes of code and source in every server's heap, which each full garbage
 * collection walks again.
 */
export async function openStoreUrl(text: string, name: string, secrets: StoreSecrets, env: NodeJS.ProcessEnv, where: string): Promise<Driver> {
  checkStoreUrl(text, where);
  const url = new URL(text);
  if (url.protocol === 'file:') {
    const store = new LocalFolderStore(fileURLToPath(url), name);
    return { name, store, create: () => store.create(), close: () => undefined };
  }
  const endpoint = url.searchParams.get('endpoint') ?? undefined;
  const size = pageSize(url, where);
  if (url.protocol === 'azblob:') {
    const [container, ...prefix] = pathParts(url);
    const accountKey = secrets.accountKey ?? env.AZURE_STORAGE_KEY;
    if (!accountKey) throw invalid(where, `no key for storage account ${url.host}: set accountKey in the configuration or AZURE_STORAGE_KEY in the environment`);
    const { AzureBlobStore } = await import('./azure-blob.js');
    const store = new AzureBlobStore({
      name, account: url.host, accountKey, container: container!, prefix: prefix.join('/'), ...(endpoint ? { endpoint } : {}), ...(size ? { pageSize: size } : {}),
    });
    return { name, store, create: () => store.create(), close: () => undefined };
  }
  const accessKeyId = secrets.accessKeyId ?? env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = secrets.secretAccessKey ?? env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw invalid(where, `no credentials for bucket ${url.host}: set accessKeyId and secretAccessKey in the configuration or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment`);
  }
  const { S3Store } = await import('./s3.js');
  const store = new S3Store({
    name, bucket: url.host, prefix: pathParts(url).join('/'), region: url.searchParams.get('region') ?? 'us-east-1',
    accessKeyId, secretAccessKey, ...(endpoint ? { endpoint } : {}), ...(size ? { pageSize: size } : {}),
  });
  return { name, store, create: () => store.create(), close: () => store.close() };
}
