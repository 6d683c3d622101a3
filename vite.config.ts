/**
 * Vite builds the browser peer library (`client/browser.ts`) into one ES module,
 * `dist/client/starsock-client.js`: `npm run build:client`. It must bundle with no Node built-ins.
 */
import { defineConfig } from 'vite'

export default defineConfig({
  build: {
    lib: { entry: 'client/browser.ts', formats: ['es'], fileName: () => 'starsock-client.js' },
    outDir: 'dist/client',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true
  }
})
