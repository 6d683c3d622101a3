/**
 * The order test files start in: the longest first, so that with two workers none of them starts
 * late and ends the run alone while the other worker idles (the CI budget, 15 minutes).
 */
import { relative } from 'node:path'
import { BaseSequencer, type TestSpecification } from 'vitest/node'

/**
 * The longest test files, longest first, with their wall time (ms) in the fresh-clone CI run of
 * 2026-12-02 (one worker). A fresh clone has no vitest cache of durations, and vitest's own order
 * is then by file size. Files not listed run after these, in vitest's order.
 */
export const LONGEST_FILES_MS: ReadonlyArray<readonly [string, number]> = [
  ['test/page-files.test.ts', 118_009],
  ['test/up.test.ts', 32_928],
  ['test/cli-fast.test.ts', 31_111],
  ['test/page-consent.test.ts', 29_785],
  ['test/sock-cli.test.ts', 26_086],
  ['test/tunnel-integrity.test.ts', 25_747],
  ['test/page.test.ts', 25_155],
  ['test/package.test.ts', 25_094],
  ['test/page-invite.test.ts', 21_988],
  ['test/tunnel-recovery.test.ts', 21_051],
  ['test/cluster-haproxy.test.ts', 20_986],
  ['test/deploy.test.ts', 19_838],
  ['test/page-live.test.ts', 17_404],
  ['test/cluster-trunk.test.ts', 16_451],
  ['test/udp-forward-loss.test.ts', 16_151],
  ['test/page-peers.test.ts', 15_635],
  ['test/page-privacy.test.ts', 15_068],
  ['test/cluster-failures.test.ts', 12_790],
  ['test/sock.test.ts', 11_437],
  ['test/control-api.test.ts', 11_387],
  ['test/attach.test.ts', 11_291]
]

const RANK = new Map(LONGEST_FILES_MS.map(([file], i) => [file, i]))

/** Vitest's order (failed first, then longest first by its cache), with the files above first. */
export class LongestFirstSequencer extends BaseSequencer {
  /** Sorts `files`: the listed ones first in the list's order, the rest after in vitest's order. */
  override async sort (files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files)
    const rank = (spec: TestSpecification): number =>
      RANK.get(relative(this.ctx.config.root, spec.moduleId).split('\\').join('/')) ?? LONGEST_FILES_MS.length
    // Array#sort is stable: files of the same rank keep vitest's order.
    return base.sort((a, b) => rank(a) - rank(b))
  }
}
