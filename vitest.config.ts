import { defaultServerConditions } from 'vite'
import { defineConfig } from 'vitest/config'

/** Tests import the TypeScript sources, `#noise-aead` included (package.json `imports`). */
const conditions = ['starsock-source', ...defaultServerConditions]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['starsock-source'] } },
  test: {
    // Builds dist/ when a source is newer: programs run `bin/starsock.js` (the compiled build).
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks'
  }
})
