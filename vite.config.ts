/**
 * Vite builds two things:
 * - `vite build` (`npm run build:web`): the page in `web/` into `dist/web/`, which `starsock serve`
 *   serves at `/`. `npx vite` serves it for development, with socket.io and `/status.json`
 *   proxied to a running server (`STARSOCK_SERVER`, default `http://127.0.0.1:9090`).
 * - `vite build --mode client` (`npm run build:client`): the browser peer library
 *   (`client/browser.ts`) as one ES module, `dist/client/starsock-client.js`.
 * Both bundle with no Node built-ins: the Noise channel's ChaCha20-Poly1305 comes through the
 * package's `#noise-aead` import, whose `default` condition (`@noble/ciphers`) is what a browser
 * build resolves (`node:crypto` is its `node` condition, for Node only).
 */
import { defineConfig } from 'vite'

const server = process.env.STARSOCK_SERVER ?? 'http://127.0.0.1:9090'

export default defineConfig(({ mode }) => mode === 'client'
  ? {
      build: {
        lib: { entry: 'client/browser.ts', formats: ['es'], fileName: () => 'starsock-client.js' },
        outDir: 'dist/client',
        emptyOutDir: true,
        target: 'es2022',
        sourcemap: true
      }
    }
  : {
      root: 'web',
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
