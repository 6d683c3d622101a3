/** The browser entry of the peer library: everything in `index.ts`, plus identity in IndexedDB. */
export * from './index.ts'
export { loadOrCreateBrowserIdentity, replaceBrowserIdentity } from './identity.browser.ts'
