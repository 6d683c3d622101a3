import { availableParallelism } from 'node:os'
import { defaultServerConditions } from 'vite'
import { configDefaults, defineConfig } from 'vitest/config'
import { LongestFirstSequencer } from './test/sequencer.ts'

/**
 * Files whose assertions hold only with the CPU to themselves (a loss rate under stalls measured
 * against the clock): they run alone, after the files that run two at a time.
 */
const SOLO_FILES = ['test/udp-forward-loss.test.ts'] as const

/** Tests import the TypeScript sources, `#noise-aead` included (package.json `imports`). */
const conditions = ['starsock-source', ...defaultServerConditions]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['starsock-source'] } },
  test: {
    // Builds dist/ when a source is newer: programs run `bin/starsock.js` (the compiled build).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // The longest files first, so that no long file starts late and ends the run alone.
    sequence: { sequencer: LongestFirstSequencer },
    projects: [
      {
        extends: true,
        test: {
          name: 'parallel',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...SOLO_FILES],
          // Two files at once even on 2 cores (vitest's default, cores - 1, runs them one by one
          // there): most of a file's time is waiting on browsers, child processes and sockets, not
          // on the CPU. Tests wait for conditions with generous timeouts (house style), and ports
          // come from port 0 or ranges keyed by pid, so two files do not collide.
          maxWorkers: Math.max(2, availableParallelism() - 1)
        }
      },
      // After all the others, one at a time: nothing else may take the CPU from them.
      { extends: true, test: { name: 'solo', include: [...SOLO_FILES], maxWorkers: 1, sequence: { groupOrder: 1 } } }
    ]
  }
})
