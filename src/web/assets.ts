/**
 * The dashboard's files, served by the vault itself (no CDN): the page shell, our compiled
 * browser modules (dist/web/web/client, built by `tsc -p src/web/client`), our stylesheet, and
 * the libraries straight from node_modules (Preact, htm, uPlot). Everything is read once at
 * start into a table keyed by URL path, so a request can only ever get a file of that table.
 *
 * The modules import the libraries by bare name ("preact"); the page's import map resolves
 * those names, and the Content-Security-Policy allows that one inline script by its hash.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset { body: Buffer; type: string; etag: string }

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLIENT_DIR = join(ROOT, 'dist', 'web', 'web', 'client');
const STATIC_DIR = join(ROOT, 'src', 'web', 'static');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.html': 'text/html; charset=utf-8', '.json': 'application/json',
};

function asset(body: Buffer, name: string): Asset {
  const ext = name.slice(name.lastIndexOf('.'));
  return { body, type: TYPES[ext] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
}

/** The ES module builds of the libraries, found through Node's resolution from this package. */
const VENDOR: Record<string, (r: NodeJS.Require) => string> = {
  'preact.js': (r) => join(dirname(r.resolve('preact/package.json')), 'dist', 'preact.mjs'),
  'preact-hooks.js': (r) => join(dirname(r.resolve('preact/package.json')), 'hooks', 'dist', 'hooks.mjs'),
  'htm.js': (r) => join(dirname(r.resolve('htm')), 'htm.mjs'),
  'uplot.js': (r) => join(dirname(r.resolve('uplot/package.json')), 'dist', 'uPlot.esm.js'),
  'uplot.css': (r) => join(dirname(r.resolve('uplot/package.json')), 'dist', 'uPlot.min.css'),
};

export const IMPORT_MAP = JSON.stringify({
  imports: { preact: '/assets/vendor/preact.js', 'preact/hooks': '/assets/vendor/preact-hooks.js', htm: '/assets/vendor/htm.js', uplot: '/assets/vendor/uplot.js' },
});

export function contentSecurityPolicy(): string {
  const hash = createHash('sha256').update(IMPORT_MAP).digest('base64');
  return [
    "default-src 'none'", `script-src 'self' 'sha256-${hash}'`, "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
    "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
  ].join('; ');
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Coffre Backup center</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/vendor/uplot.css">
<link rel="stylesheet" href="/assets/style.css">
<script type="importmap">${IMPORT_MAP}</script>
<script type="module" src="/assets/app/main.js"></script>
</head>
<body>
<div id="app"><p class="loading">Loading the Backup center…</p></div>
<noscript>The Backup center needs JavaScript.</noscript>
</body>
</html>
`;

/** Every file the dashboard serves, by URL path; throws when the browser modules were not built. */
export function loadAssets(): Map<string, Asset> {
  const out = new Map<string, Asset>();
  out.set('/', asset(Buffer.from(PAGE), 'index.html'));
  if (!existsSync(join(CLIENT_DIR, 'main.js'))) {
    throw new Error(`the dashboard's browser code is not built (${CLIENT_DIR}): run \`npm run build\``);
  }
  for (const name of readdirSync(CLIENT_DIR)) {
    if (name.endsWith('.js')) out.set(`/assets/app/${name}`, asset(readFileSync(join(CLIENT_DIR, name)), name));
  }
  for (const name of readdirSync(STATIC_DIR)) out.set(`/assets/${name}`, asset(readFileSync(join(STATIC_DIR, name)), name));
  const require = createRequire(import.meta.url);
  for (const [name, locate] of Object.entries(VENDOR)) out.set(`/assets/vendor/${name}`, asset(readFileSync(locate(require)), name));
  return out;
}
