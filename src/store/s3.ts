/**
 * S3 driver (AWS S3 and compatible services: MinIO, Ceph, ...): one bucket and an optional
 * prefix is one store. PutObject is atomic on S3; ranges are read with one ranged GET; lists
 * follow ListObjectsV2 continuation tokens. The SDK's retries are off (RetryStore retries for
 * every driver), and credentials are always given explicitly: the SDK's default chain would
 * otherwise ask the network for instance metadata.
 */
import {
  CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { checkKey, listBase, type ObjectStore } from './object-store.js';
import { fromHttpStatus, notFound, storageError, TRANSIENT_ERRNOS, truncated, unavailable, type StoreFailure } from './store-error.js';
import { readBody } from './read-body.js';

export interface S3Options {
  name: string;
  bucket: string;
  /** Folder inside the bucket, without slashes at the ends; "" for the whole bucket. */
  prefix?: string;
  region: string;
  /** e.g. http://127.0.0.1:9000 for a local service; path-style addressing is used with it. */
  endpoint?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Keys per listing page (S3 allows up to 1000). */
  pageSize?: number;
  timeoutMs?: number;
}

interface S3ErrorLike { name?: string; Code?: string; code?: string; $metadata?: { httpStatusCode?: number }; message?: string; cause?: { code?: string } }

export class S3Store implements ObjectStore {
  readonly name: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly pageSize: number;

  constructor(opts: S3Options) {
    // The SDK warns on every start that future versions need Node 22: not the user's concern here.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.name = opts.name;
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ? `${opts.prefix.replace(/^\/+|\/+$/g, '')}/` : '';
    this.pageSize = opts.pageSize ?? 1000;
    this.client = new S3Client({
      region: opts.region,
      ...(opts.endpoint ? { endpoint: opts.endpoint, forcePathStyle: true } : {}),
      credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
      maxAttempts: 1,
      requestHandler: { requestTimeout: opts.timeoutMs ?? 120_000, connectionTimeout: 10_000 },
    });
  }

  /** Creates the bucket if it does not exist yet. */
  async create(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (e) {
      if ((e as S3ErrorLike).$metadata?.httpStatusCode !== 404) throw this.failure(e, undefined);
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      const name = (e as S3ErrorLike).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw this.failure(e, undefined);
    }
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.prefix + key;
  }

  private failure(e: unknown, key: string | undefined): StoreFailure {
    const r = e as S3ErrorLike;
    const service = r.Code ?? r.name;
    const status = r.$metadata?.httpStatusCode;
    if (service === 'NoSuchBucket') return unavailable(this.name, key, `bucket ${this.bucket} does not exist`, false, e);
    if (status === 404 && key !== undefined) return notFound(this.name, key);
    if (typeof status === 'number' && status > 0) return fromHttpStatus(this.name, key, status, service, e);
    const errno = r.code ?? r.cause?.code;
    if (r.name === 'TimeoutError' || r.name === 'AbortError' || (errno && TRANSIENT_ERRNOS.has(errno))) return unavailable(this.name, key, errno ?? r.name ?? 'timeout', true, e);
    return storageError(this.name, key, r.message ?? String(e), false, e);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.byteLength }));
    } catch (e) {
      throw this.failure(e, key);
    }
  }

  async get(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    const Key = this.objectKey(key);
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({
        Bucket: this.bucket, Key, ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
      }));
    } catch (e) {
      if (range && (e as S3ErrorLike).$metadata?.httpStatusCode === 416) throw truncated(this.name, key);
      throw this.failure(e, key);
    }
    return readBody(this.name, key, res.Body as AsyncIterable<Buffer> | undefined, res.ContentLength ?? 0, range, (e) => this.failure(e, key));
  }

  async stat(key: string): Promise<{ size: number; mtime: Date } | null> {
    const Key = this.objectKey(key);
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { size: h.ContentLength ?? 0, mtime: h.LastModified ?? new Date(0) };
    } catch (e) {
      const f = this.failure(e, key);
      if (f.code === 'NotFound') return null;
      throw f;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = listBase(prefix);
    const full = this.prefix + (base ? `${base}/` : '');
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, MaxKeys: this.pageSize, ...(token ? { ContinuationToken: token } : {}) }));
      } catch (e) {
        throw this.failure(e, undefined);
      }
      for (const o of page.Contents ?? []) if (o.Key) yield o.Key.slice(this.prefix.length);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      const f = this.failure(e, key);
      if (f.code !== 'NotFound') throw f;
    }
  }

  /** Closes the SDK's connections (a server stopping, a test ending). */
  close(): void {
    this.client.destroy();
  }
}
