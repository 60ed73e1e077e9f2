/**
 * A real browser for the dashboard's tests: Debian's Chromium (installed by
 * scripts/test-deps.sh, never downloaded) driven by playwright-core, with a fresh profile that
 * is removed afterwards. One browser per test file: it is the heaviest thing the suite starts.
 *
 * `checkPage` is what every page must pass at every size: no horizontal scrolling, and an
 * accessible name on every control, as the browser itself computes them (its accessibility
 * tree, read over the DevTools protocol).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
/** Where the tests write screenshots for review (COFFRE_SCREENSHOTS overrides). */
export const SCREENSHOTS = process.env.COFFRE_SCREENSHOTS ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test-results', 'screenshots');

/** Roles a person operates: each needs a name. */
const CONTROL_ROLES = new Set(['button', 'link', 'textbox', 'searchbox', 'combobox', 'listbox', 'checkbox', 'radio', 'switch', 'slider', 'spinbutton', 'menuitem', 'tab', 'option', 'Date', 'date', 'DateTime']);

export interface Browser { context: BrowserContext; page: Page; cdp: CDPSession; close(): Promise<void> }

export async function launchBrowser(): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'coffre-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      // The vault serves HTTPS with its own self-signed certificate, which a test browser cannot pin.
      executablePath: CHROMIUM, headless: true, viewport: DESKTOP, ignoreHTTPSErrors: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  } catch (e) {
    await rm(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Accessibility.enable');
  return {
    context, page, cdp,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

interface AXNode { ignored: boolean; role?: { value: string }; name?: { value: string }; backendDOMNodeId?: number }

export async function checkPage(b: Browser, what: string): Promise<void> {
  const overflow = await b.page.evaluate(() => {
    const doc = document.documentElement;
    const wide = [...document.querySelectorAll<HTMLElement>('body *')]
      .filter((el) => el.getClientRects().length > 0 && el.getBoundingClientRect().right > doc.clientWidth + 1)
      .map((el) => `${el.tagName.toLowerCase()}.${el.className}`).slice(0, 5);
    return { scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, wide };
  });
  assert.ok(overflow.scrollWidth <= overflow.clientWidth, `${what}: scrolls horizontally (${overflow.scrollWidth} > ${overflow.clientWidth}): ${overflow.wide.join(', ')}`);
  assert.deepEqual(overflow.wide, [], `${what}: elements stick out to the right`);
  const { nodes } = await b.cdp.send('Accessibility.getFullAXTree') as { nodes: AXNode[] };
  const controls = nodes.filter((n) => !n.ignored && n.role && CONTROL_ROLES.has(n.role.value));
  assert.ok(controls.length > 0, `${what}: no control found in the accessibility tree`);
  const unnamed = controls.filter((n) => !(n.name?.value ?? '').trim()).map((n) => n.role!.value);
  assert.deepEqual(unnamed, [], `${what}: controls without an accessible name`);
}

/** Checks the page as it is at both sizes (resized in place, its state kept) and writes a screenshot of each. */
export async function snap(b: Browser, name: string): Promise<void> {
  await mkdir(SCREENSHOTS, { recursive: true });
  for (const size of [DESKTOP, PHONE]) {
    await b.page.setViewportSize(size);
    // Two frames: the resize handlers (the chart) have run and the layout has settled.
    await b.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await checkPage(b, `${name} at ${size.width}x${size.height}`);
    await b.page.screenshot({ path: join(SCREENSHOTS, `${name}-${size.width}x${size.height}.png`), fullPage: true });
  }
  await b.page.setViewportSize(DESKTOP);
}
