/**
 * The node flags of `bin/node-flags.js` are in force in every `starsock` program, checked in V8
 * itself: the factor it grows the old generation's limit by after a full collection, as
 * `--trace-gc-verbose` prints it (`[HeapController] Limit: old size: ..., new limit: ... (4.0)`), the
 * young generation's growth and the optimising compiler (`--trace-opt`) while and after it loads.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { NODE_FLAGS } from '../bin/node-flags.js'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))
const PROBE = fileURLToPath(new URL('./fixtures/gc-factor-probe.js', import.meta.url))
const YOUNG_PROBE = fileURLToPath(new URL('./fixtures/young-probe.js', import.meta.url))
const OPT_PROBE = fileURLToPath(new URL('./fixtures/opt-probe.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'starsock-flags-'))
afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

/** The heap growing factor V8 used at the program's exit, with `nodeArgs` before the bin. */
function factor (nodeArgs: string[], args: string[], env: Record<string, string> = {}): { factor: number, status: number | null } {
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', PROBE, BIN, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } })
  const m = /\[HeapController\] Limit: old size: \d+ KB, new limit: \d+ KB \((\d+\.\d)\)/.exec(r.stdout)
  if (m?.[1] === undefined) throw new Error(`no factor line from starsock ${args.join(' ')} (status ${String(r.status)}): ${r.stdout.slice(-500)} ${r.stderr.slice(-500)}`)
  return { factor: Number(m[1]), status: r.status }
}

const percent = Number(/^--heap-growing-percent=(\d+)$/.exec(NODE_FLAGS.find((f) => f.startsWith('--heap-growing-percent=')) ?? '')?.[1])

describe('node flags of the starsock program', () => {
  it('names the growing factor this test checks', () => {
    expect(percent).toBeGreaterThan(0)
  })

  it.each([
    ['--help', ['--help']],
    ['id', ['id', '--key', join(dir, 'key')]]
  ])('are in force in `starsock %s`, over what node started with', (_, args) => {
    // The probe sets 50% first, as node's own setting would be: the program must replace it.
    const r = factor([], args, { PROBE_GROWING_PERCENT: '50' })
    expect(r.status).toBe(0)
    expect(r.factor).toBe(1 + percent / 100)
  })

  it('leave a flag given on node\'s command line as it is', () => {
    expect(factor(['--heap-growing-percent=50'], ['--help']).factor).toBe(1.5)
  })

  it('leave a flag given in NODE_OPTIONS as it is', () => {
    // NODE_OPTIONS takes only some V8 flags; a run with one it refuses says so and stops. This one
    // it takes: --max-old-space-size. The growing factor is then ours.
    const r = factor([], ['--help'], { NODE_OPTIONS: '--max-old-space-size=512', PROBE_GROWING_PERCENT: '50' })
    expect(r.factor).toBe(1 + percent / 100)
  })
})

/** The young generation's size at the exit of `starsock id` (it loads the client and libp2p's crypto), with `nodeArgs` before the bin. */
function youngBytes (nodeArgs: string[]): number {
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', YOUNG_PROBE, BIN, 'id', '--key', join(dir, 'young-key')], { encoding: 'utf8', timeout: 20_000 })
  const m = /NEW_SPACE_BYTES (\d+)/.exec(r.stderr)
  if (r.status !== 0 || m?.[1] === undefined) throw new Error(`no young generation size from starsock id (status ${String(r.status)}): ${r.stderr.slice(-500)}`)
  return Number(m[1])
}

describe('the young generation of the starsock program', () => {
  it('does not grow while the command\'s modules load; a growth factor given to node wins', () => {
    // V8's own factor lets the loading (all survivors) grow it to 8 MiB and more; ours keeps the
    // initial 1 MiB semi-spaces (2 MiB in all) until the modules are loaded.
    const ours = youngBytes([])
    expect(ours).toBeLessThanOrEqual(2 * 1024 * 1024)
    expect(youngBytes(['--semi-space-growth-factor=2'])).toBeGreaterThan(ours)
  })

  it('grows again once the program is loaded: a busy `starsock serve` is not held to 1 MiB semi-spaces', () => {
    const r = spawnSync(process.execPath, ['--import', YOUNG_PROBE, BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PROBE_GROW_AFTER_MS: '4000' } })
    const m = /NEW_SPACE_BYTES (\d+)/.exec(r.stderr)
    expect(m?.[1], `starsock serve under the probe (status ${String(r.status)}): ${r.stderr.slice(-500)}`).toBeDefined()
    expect(Number(m?.[1])).toBeGreaterThan(2 * 1024 * 1024)
  })
})

/** TurboFan compiles `--trace-opt` printed before and after the line with `marker`, naming each function once. */
function compiles (nodeArgs: string[], args: string[], marker: string): { before: string[], after: string[] } {
  const r = spawnSync(process.execPath, ['--trace-opt', ...nodeArgs, '--import', OPT_PROBE, BIN, ...args],
    { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '', PROBE_HOT_ON: marker } })
  const at = r.stdout.indexOf(marker)
  if (r.status !== 0 || at < 0 || !r.stdout.includes('PROBE_DONE hot')) throw new Error(`starsock ${args.join(' ')} under the probe (status ${String(r.status)}): ${r.stdout.slice(-500)} ${r.stderr.slice(-500)}`)
  const names = (text: string): string[] => [...new Set([...text.matchAll(/\[completed compiling \S+ <JSFunction (\S+)[^\]]*\(target TURBOFAN\)/g)].map((m) => m[1] ?? ''))]
  return { before: names(r.stdout.slice(0, at)), after: names(r.stdout.slice(at)) }
}

describe('the optimising compiler of the starsock program', () => {
  it('compiles nothing while `serve` loads and starts, and optimises hot code once it is loaded', () => {
    // Without the flag, loading the server made a dozen functions (node's module resolution) hot
    // enough for TurboFan: about 7 MiB of an idle server's RSS (node-flags.js has the figures).
    const r = compiles([], ['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'], 'starsock http')
    expect(r.before).toEqual([])
    expect(r.after).toContain('probeHotLoop')
  })

  it('leaves the optimiser as node was told (`--no-opt`, V8\'s alias of `--no-turbofan`)', () => {
    expect(compiles(['--no-opt'], ['--help'], 'Usage:').after).toEqual([])
    expect(compiles([], ['--help'], 'Usage:').after).toContain('probeHotLoop')
  })
})
