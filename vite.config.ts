/**
 * Vite builds two things:
 * (`npm run build` runs both, see scripts/build.js.)
 * - `vite build`: the page in `web/` into `dist/web/`, which `starsock serve`
 *   serves at `/`. `npx vite` serves it for development, with socket.io and `/status.json`
 *   proxied to a running server (`STARSOCK_SERVER`, default `http://127.0.0.1:9090`).
 * - `vite build --mode client`: the browser peer library (`client/browser.ts`) as one ES module,
 *   `dist/browser/starsock-client.js` (the package's `starsock/browser`).
 * Both bundle with no Node built-ins: the Noise channel's ChaCha20-Poly1305 comes through the
 * package's `#noise-aead` import, whose `default` condition (`@noble/ciphers`) is what a browser
 * build resolves (`node:crypto` is its `node` condition, for Node only); the `starsock-source`
 * condition points it at the TypeScript sources rather than the compiled dist/node/.
 */
import { defaultClientConditions, defineConfig } from 'vite'

const server = process.env.STARSOCK_SERVER ?? 'http://127.0.0.1:9090'

/** Resolve the package's own `#noise-aead` to its sources (package.json `imports`). */
const resolve = { conditions: ['starsock-source', ...defaultClientConditions] }

export default defineConfig(({ mode }) => mode === 'client'
  ? {
      resolve,
      build: {
        lib: { entry: 'client/browser.ts', formats: ['es'], fileName: () => 'starsock-client.js' },
        outDir: 'dist/browser',
        emptyOutDir: true,
        target: 'es2022',
        sourcemap: true
      }
    }
  : {
      root: 'web',
      resolve,
      base: './',
      build: {
        outDir: '../dist/web',
        emptyOutDir: true,
        target: 'es2022',
        sourcemap: true,
        rollupOptions: { input: 'web/index.html' }
      },
      server: {
        proxy: {
          '/socket.io': { target: server, ws: true },
          '/status.json': { target: server }
        }
      }
    })
