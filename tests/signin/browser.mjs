/**
 * The person at the keyboard: Debian's Chromium, headless, driven by
 * `playwright-core` (the driver only; it downloads no browser of its own).
 *
 * `signIn` opens an authorization URL the way an MCP client's redirect handler
 * would, signs in at the provider's login page when it shows one, answers
 * Tessera's consent page (ids from docs/signin-contract.md) and stops once the
 * browser is sent to the client's loopback callback, whose server gets the
 * request as it would from a real browser.
 *
 * Only loopback is reachable from the pages: any other request is aborted and
 * recorded, and a test fails on it (the machine has no other network, and a
 * page that needs one is a bug).
 */
import { chromium } from 'playwright-core';

import { ACCOUNT } from './provider.mjs';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run', '--disable-component-update'],
  });
  const offLoopback = [];

  /** A fresh profile (no cookies: the provider asks for the password again). */
  async function context() {
    const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
    await ctx.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (LOOPBACK.has(url.hostname) || url.protocol === 'data:') return route.continue();
      offLoopback.push(url.href);
      return route.abort('blockedbyclient');
    });
    return ctx;
  }

  /**
   * Follows `authorizationUrl` until the browser is sent to a URL that `arrived(url)`
   * accepts (the client's callback), signing in as `account` and answering Tessera's
   * consent page with `decision` ('approve' or 'deny'). `beforeStart(page)` and
   * `beforeConsent(page)` may tamper (negative tests); `screenshot` is where to keep the consent
   * page. Returns what the browser saw: the final URL, the consent page's texts.
   */
  async function signIn(authorizationUrl, { arrived, decision = 'approve', screenshot, account = ACCOUNT,
    beforeStart, beforeConsent } = {}) {
    const ctx = await context();
    const page = await ctx.newPage();
    const seen = { consent: null, loginPages: 0, finalUrl: null, arrived: false, status: null };
    // Where the main frame was last sent, kept because a page that fails to load (a
    // callback nobody listens on) shows as chrome-error:// in page.url().
    let sentTo = authorizationUrl;
    page.on('request', (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) sentTo = request.url();
    });
    const where = () => new URL(page.url().startsWith('chrome-error:') ? sentTo : page.url());
    const navigated = () => page.waitForNavigation().catch(() => null); // null: it did not load
    try {
      if (beforeStart) await beforeStart(page);
      let response = await page.goto(authorizationUrl).catch(() => null);
      for (let step = 0; step < 6; step++) {
        if (arrived(where())) break;
        const login = await page.locator('#login').count();
        const consent = await page.locator('#consent').count();
        if (login) {
          seen.loginPages++;
          if (seen.loginPages > 1) break; // refused: the page is shown again with an error
          await page.fill('#username', account.login);
          await page.fill('#password', account.password);
          [response] = await Promise.all([navigated(), page.click('#sign-in')]);
        } else if (consent) {
          seen.consent = {
            clientName: await page.locator('#client-name').innerText(),
            resource: await page.locator('#resource').innerText(),
            scopes: await page.locator('#scopes li.scope').allInnerTexts(),
            text: await page.locator('body').innerText(),
          };
          if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
          if (beforeConsent) await beforeConsent(page);
          [response] = await Promise.all([navigated(), page.click(`#${decision}`)]);
        } else {
          break; // neither a form nor the callback: an error page, the test judges it
        }
      }
      seen.finalUrl = where();
      seen.arrived = arrived(seen.finalUrl);
      seen.status = response?.status() ?? null;
      seen.text = await page.locator('body').innerText().catch(() => '');
      return seen;
    } finally {
      await ctx.close();
    }
  }

  return { signIn, context, offLoopback, close: () => browser.close() };
}
