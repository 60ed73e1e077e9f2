/**
 * The dashboard's only way to the vault: `/ui/api/v1/...`, which the server forwards to the
 * REST API with the signed-in principal's key. Writes carry the session's CSRF token. A 401
 * means the session ended: the app shows the sign-in page again.
 */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) { super(message); }
}

let csrf = '';
let onSignedOut: () => void = () => undefined;

export function setSession(token: string, signedOut: () => void): void {
  csrf = token;
  onSignedOut = signedOut;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let data: unknown = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; } // a non-JSON answer (a proxy's page) is kept as text
  if (!res.ok) {
    const err = (data as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 401 && !path.startsWith('/ui/session')) onSignedOut();
    throw new ApiError(res.status, err?.code ?? 'Internal', err?.message ?? `the server answered ${res.status}`);
  }
  return data as T;
}

export const api = {
  get: <T>(path: string) => call<T>('GET', `/ui/api${path}`),
  post: <T>(path: string, body: unknown) => call<T>('POST', `/ui/api${path}`, body),
  put: <T>(path: string, body: unknown) => call<T>('PUT', `/ui/api${path}`, body),
  session: () => call<{ principal: string; csrf: string }>('GET', '/ui/session'),
  signIn: (key: string) => call<{ principal: string; csrf: string }>('POST', '/ui/session', { key }),
  signOut: () => call<{ ok: true }>('DELETE', '/ui/session'),
};

export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1] !== ''));
  const s = q.toString();
  return s ? `?${s}` : '';
}
