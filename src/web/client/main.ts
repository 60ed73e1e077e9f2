/**
 * The Backup center in the browser: signs in, then shows one page per hash route (#/items,
 * #/jobs, ...). Hash routes need no server-side routing: the server serves one page.
 */
import { render, type ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, setSession } from './api.js';
import { html } from './ui.js';
import { SignIn } from './page-signin.js';
import { OverviewPage } from './page-overview.js';
import { ItemsPage } from './page-items.js';
import { ItemPage } from './page-item.js';
import { JobsPage } from './page-jobs.js';
import { JobPage } from './page-job.js';
import { PoliciesPage } from './page-policies.js';
import { AlertsPage } from './page-alerts.js';
import { ReportsPage } from './page-reports.js';

interface Route { page: string; args: string[]; params: URLSearchParams }

function parseHash(): Route {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path = '/', search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] ?? 'overview', args: parts.slice(1), params: new URLSearchParams(search) };
}

const NAV: [string, string][] = [['overview', 'Overview'], ['items', 'Items'], ['jobs', 'Jobs'], ['policies', 'Policies'], ['alerts', 'Alerts'], ['reports', 'Reports']];

function Page(props: { route: Route }): ComponentChildren {
  const { page, args, params } = props.route;
  switch (page) {
    case 'items': return html`<${ItemsPage} health=${params.get('health') ?? ''} />`;
    case 'item': return html`<${ItemPage} vault=${args[0] ?? ''} item=${args[1] ?? ''} />`;
    case 'jobs': return html`<${JobsPage} status=${params.get('status') ?? ''} />`;
    case 'job': return html`<${JobPage} id=${args[0] ?? ''} />`;
    case 'policies': return html`<${PoliciesPage} />`;
    case 'alerts': return html`<${AlertsPage} />`;
    case 'reports': return html`<${ReportsPage} />`;
    default: return html`<${OverviewPage} />`;
  }
}

function App(): ComponentChildren {
  const [principal, setPrincipal] = useState<string | null | undefined>(undefined);
  const [route, setRoute] = useState(parseHash());
  const signedOut = () => setPrincipal(null);
  useEffect(() => {
    const onHash = () => { setRoute(parseHash()); window.scrollTo(0, 0); };
    window.addEventListener('hashchange', onHash);
    api.session().then((s) => { setSession(s.csrf, signedOut); setPrincipal(s.principal); }, () => setPrincipal(null));
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    const name = NAV.find(([k]) => k === route.page)?.[1] ?? (route.page === 'item' ? 'Item' : route.page === 'job' ? 'Job' : 'Overview');
    document.title = principal ? `${name} · Coffre Backup center` : 'Sign in · Coffre Backup center';
  }, [route, principal]);

  if (principal === undefined) return html`<p class="loading" role="status">Loading…</p>`;
  if (principal === null) {
    return html`<${SignIn} onSignedIn=${(s: { principal: string; csrf: string }) => { setSession(s.csrf, signedOut); setPrincipal(s.principal); }} />`;
  }
  const current = route.page === 'item' ? 'items' : route.page === 'job' ? 'jobs' : route.page;
  return html`
    <header class="top">
      <a class="brand" href="#/">Coffre <span>Backup center</span></a>
      <nav aria-label="Main">
        <ul>${NAV.map(([k, label]) => html`<li><a href=${`#/${k === 'overview' ? '' : k}`} aria-current=${current === k ? 'page' : undefined}>${label}</a></li>`)}</ul>
      </nav>
      <div class="who">
        <span class="principal" title="signed in as">${principal}</span>
        <button type="button" class="secondary" onClick=${async () => { await api.signOut().catch(() => undefined); setPrincipal(null); }}>Sign out</button>
      </div>
    </header>
    <main id="main"><${Page} route=${route} /></main>`;
}

render(html`<${App} />`, document.getElementById('app')!);
