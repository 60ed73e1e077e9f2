/**
 * A cloud store's answer body gathered into one buffer of the announced length: more bytes
 * than announced, or fewer, or a range shorter than asked, is an error naming the store and key.
 */
import { storageError, truncated, unavailable, type StoreFailure } from './store-error.js';

export async function readBody(store: string, key: string, body: AsyncIterable<Buffer> | undefined, length: number,
  range: { offset: number; length: number } | undefined, failure: (e: unknown) => Error): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  try {
    if (body) {
      for await (const chunk of body) {
        if (at + chunk.length > length) throw storageError(store, key, 'the service sent more bytes than announced', true);
        chunk.copy(out, at);
        at += chunk.length;
      }
    }
  } catch (e) {
    if ((e as StoreFailure).store === store) throw e;
    throw failure(e);
  }
  if (at !== length) throw unavailable(store, key, `the answer was cut after ${at} of ${length} bytes`, true);
  if (range && length !== range.length) throw truncated(store, key);
  return out;
}
