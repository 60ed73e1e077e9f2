/**
 * Azure Blob Storage driver: one container (and an optional prefix inside it) is one store.
 * Block blobs are written with a single Put Blob, which Azure commits atomically; ranges are
 * read with one ranged GET. The SDK's own retries are off: RetryStore retries transient
 * failures for every driver alike, and the driver only says which failures are transient.
 */
import { BlobServiceClient, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { checkKey, listBase, type ObjectStore } from './object-store.js';
import { fromHttpStatus, notFound, storageError, TRANSIENT_ERRNOS, truncated, unavailable, type StoreFailure } from './store-error.js';
import { readBody } from './read-body.js';

export interface AzureBlobOptions {
  name: string;
  account: string;
  accountKey: string;
  container: string;
  /** Folder inside the container, without slashes at the ends; "" for the whole container. */
  prefix?: string;
  /** Service URL, e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite; default https://ACCOUNT.blob.core.windows.net. */
  endpoint?: string;
  /** Keys per listing page (the service allows up to 5000). */
  pageSize?: number;
  /** Per-request timeout. */
  timeoutMs?: number;
}

/** What the SDK's RestError carries, as far as we read it. */
interface RestErrorLike { statusCode?: number; code?: string; details?: { errorCode?: string }; message?: string; name?: string }

export class AzureBlobStore implements ObjectStore {
  readonly name: string;
  private readonly container: ContainerClient;
  private readonly prefix: string;
  private readonly pageSize: number;

  constructor(opts: AzureBlobOptions) {
    this.name = opts.name;
    const endpoint = opts.endpoint ?? `https://${opts.account}.blob.core.windows.net`;
    const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(opts.account, opts.accountKey), {
      retryOptions: { maxTries: 1, tryTimeoutInMs: opts.timeoutMs ?? 120_000 },
      // No telemetry header beyond the SDK's default user agent; no logging of bodies.
      userAgentOptions: { userAgentPrefix: 'coffre' },
    });
    this.container = service.getContainerClient(opts.container);
    this.prefix = opts.prefix ? `${opts.prefix.replace(/^\/+|\/+$/g, '')}/` : '';
    this.pageSize = opts.pageSize ?? 5000;
  }

  /** Creates the container if it does not exist yet. */
  async create(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (e) {
      throw this.failure(e, undefined);
    }
  }

  private blob(key: string) {
    checkKey(key);
    return this.container.getBlockBlobClient(this.prefix + key);
  }

  private failure(e: unknown, key: string | undefined): StoreFailure {
    const r = e as RestErrorLike;
    const service = r.details?.errorCode ?? r.code;
    if (r.statusCode === 404) {
      if (service === 'ContainerNotFound') return unavailable(this.name, key, `container ${this.container.containerName} does not exist`, false, e);
      if (key !== undefined) return notFound(this.name, key);
    }
    if (typeof r.statusCode === 'number' && r.statusCode > 0) return fromHttpStatus(this.name, key, r.statusCode, service, e);
    // No answer at all: the connection failed, timed out or was reset.
    const errno = (e as { cause?: { code?: string } }).cause?.code ?? r.code;
    if (r.name === 'AbortError' || (errno && (TRANSIENT_ERRNOS.has(errno) || errno === 'REQUEST_SEND_ERROR'))) {
      return unavailable(this.name, key, errno ?? 'timeout', true, e);
    }
    return storageError(this.name, key, r.message ?? String(e), false, e);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const blob = this.blob(key);
    try {
      await blob.upload(data, data.byteLength);
    } catch (e) {
      throw this.failure(e, key);
    }
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    const blob = this.blob(key);
    let res;
    try {
      res = await blob.download(range?.offset ?? 0, range?.length, { maxRetryRequests: 0 });
    } catch (e) {
      const r = e as RestErrorLike;
      if (range && r.statusCode === 416) throw truncated(this.name, key);
      throw this.failure(e, key);
    }
    return readBody(this.name, key, res.readableStreamBody as AsyncIterable<Buffer> | undefined, res.contentLength ?? 0, range, (e) => this.failure(e, key));
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    try {
      const p = await this.blob(key).getProperties();
      return { size: p.contentLength ?? 0, mtime: p.lastModified ?? new Date(0) };
    } catch (e) {
      const f = this.failure(e, key);
      if (f.code === 'NotFound') return null;
      throw f;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = listBase(prefix);
    const full = this.prefix + (base ? `${base}/` : '');
    const pages = this.container.listBlobsFlat({ prefix: full }).byPage({ maxPageSize: this.pageSize });
    for (;;) {
      let page;
      try {
        page = await pages.next();
      } catch (e) {
        throw this.failure(e, undefined);
      }
      if (page.done) return;
      for (const item of page.value.segment.blobItems) yield item.name.slice(this.prefix.length);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.blob(key).deleteIfExists();
    } catch (e) {
      throw this.failure(e, key);
    }
  }
}
