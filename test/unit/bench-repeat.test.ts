import { describe, expect, it } from 'vitest'
import { measurePaths, recordPath, type Path } from '../../bench/repeat.ts'
import type { Row } from '../../bench/rows.ts'

// The harness's own bookkeeping, with paths that are plain functions (no transfer): the order of
// the runs, what a failing path leaves, and the rows either gives.
describe('bench repeats', () => {
  it('warms every path up, then interleaves the runs; a path that fails drops out and says why', async () => {
    const calls: string[] = []
    const speeds = { a: [0, 30, 10, 20], b: [0, 5] }
    const path = (name: 'a' | 'b', failAt?: number): Path => ({
      name,
      hops: [{ role: 'this process', pid: () => process.pid, gc: name === 'a' }],
      run: async (bytes, streams) => {
        calls.push(`${name} ${bytes} ${streams}`)
        const i = calls.filter((c) => c.startsWith(name)).length - 1
        if (i === failAt) throw new Error('the sink got 3 of 8 bytes\nstack')
        return { mibPerSecond: speeds[name][i] ?? NaN }
      }
    })
    const paths = [path('a'), path('b', 2)]
    const m = await measurePaths(paths, { bytes: 1024, streams: 8, repeats: 3, warmupBytes: 4096 })
    expect(calls).toEqual(['a 4096 8', 'b 4096 8', 'a 1024 8', 'b 1024 8', 'a 1024 8', 'b 1024 8', 'a 1024 8'])
    const a = m.get('a')
    expect(a?.runs).toEqual([30, 10, 20])
    expect(a?.value).toBe(20)
    expect(a?.failed).toBeUndefined()
    expect(Number.isFinite(a?.cpu['this process'])).toBe(true)
    expect(a?.gc['this process']).toBeUndefined() // this process has no GC meter
    const b = m.get('b')
    expect(b?.failed).toBe('the sink got 3 of 8 bytes')
    expect(b?.value).toBeNaN()

    const rows: Row[] = []
    recordPath(a, paths[0] as Path, { group: 'tunnel', what: 'forward', label: '8 connections', reference: { what: 'raw ws', value: 40 } }, (r) => rows.push(r))
    recordPath(b, paths[1] as Path, { group: 'tunnel', what: 'websockify', label: '8 connections' }, (r) => rows.push(r))
    expect(rows.map((r) => [r.group, r.what, Number.isNaN(r.value) ? 'NaN' : r.value])).toEqual([
      ['tunnel', 'forward, 8 connections', 20],
      ['tunnel cpu', 'forward, 8 connections: this process', rows[1]?.value],
      ['tunnel gc', 'forward, 8 connections: this process', 'NaN'],
      ['tunnel', 'websockify, 8 connections', 'NaN']
    ])
    expect(rows[0]?.range).toEqual({ min: 10, max: 30, runs: 3 })
    expect(rows[2]?.note).toMatch(/^no GC figures/)
    expect(rows[3]?.note).toBe('could not measure: the sink got 3 of 8 bytes')
  })

  it('marks a path whose warm-up failed, and never runs it again', async () => {
    let runs = 0
    const m = await measurePaths([{ name: 'x', hops: [], run: async () => { runs++; throw new Error('refused') } }], { bytes: 1, streams: 1, repeats: 3, warmupBytes: 1 })
    expect(runs).toBe(1)
    expect(m.get('x')?.failed).toBe('warm-up: refused')
  })
})
