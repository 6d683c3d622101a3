import { describe, expect, it } from 'vitest'
import { measurePaths, recordCost, recordPath, warmupFailures, type Path, type PathFigures } from '../../bench/repeat.ts'
import type { Row } from '../../bench/rows.ts'

// The harness's own bookkeeping, with paths that are plain functions (no transfer): the order of
// the runs, what a failing path leaves, and the rows either gives.
describe('bench repeats', () => {
  it('warms every path up, then interleaves the runs, every other round in reverse; a path that fails drops out and says why', async () => {
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
    // Round 2 runs b first (and it fails there), round 3 has a alone.
    expect(calls).toEqual(['a 4096 8', 'b 4096 8', 'a 1024 8', 'b 1024 8', 'b 1024 8', 'a 1024 8', 'a 1024 8'])
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

  it('warms a path up with as many runs as asked, each after its prepare, and keeps their speeds for the row\'s note', async () => {
    const calls: string[] = []
    const speeds = [100, 150, 180, 200, 190, 210, 205]
    const path: Path = {
      name: 'f',
      hops: [],
      prepare: async () => { calls.push('prepare') },
      run: async (bytes) => {
        calls.push(String(bytes))
        if (calls.length === 2) await new Promise((resolve) => setTimeout(resolve, 60)) // the first: long enough for /proc/stat to count it
        return { mibPerSecond: speeds[calls.filter((c) => c !== 'prepare').length - 1] ?? NaN }
      }
    }
    const m = await measurePaths([path], { bytes: 10, streams: 1, repeats: 3, warmupBytes: 64, warmupRuns: 4 })
    expect(calls).toEqual(['prepare', '64', 'prepare', '64', 'prepare', '64', 'prepare', '64', 'prepare', '10', 'prepare', '10', 'prepare', '10'])
    const f = m.get('f')
    expect(f?.warmup).toEqual([100, 150, 180, 200])
    expect(f?.runs).toEqual([190, 210, 205])
    expect(f?.firstWarmupSteal).toBeGreaterThanOrEqual(0) // a share over the first warm-up run, not NaN
    const rows: Row[] = []
    recordPath(f, path, { group: 'tunnel', what: 'forward', label: '1 connection', note: 'issue 13\'s row' }, (r) => rows.push(r))
    expect(rows[0]?.note).toBe('issue 13\'s row; warm-up: first run 100 MiB/s, last of 4 200')
    // An empty note of the caller's leaves no separator behind.
    rows.length = 0
    recordPath(f, path, { group: 'tunnel', what: 'forward', label: '1 connection', note: '' }, (r) => rows.push(r))
    expect(rows[0]?.note).toBe('warm-up: first run 100 MiB/s, last of 4 200')
    // One warm-up run (the default) adds no note; no warm-up leaves no speeds.
    const one = await measurePaths([{ ...path, run: async () => ({ mibPerSecond: 5 }) }], { bytes: 1, streams: 1, repeats: 1, warmupBytes: 1 })
    expect(one.get('f')?.warmup).toEqual([5])
    rows.length = 0
    recordPath(one.get('f'), path, { group: 'tunnel', what: 'forward', label: '1' }, (r) => rows.push(r))
    expect(rows[0]?.note).toBeUndefined()
    const none = await measurePaths([{ ...path, run: async () => ({ mibPerSecond: 5 }) }], { bytes: 1, streams: 1, repeats: 1, warmupBytes: 0, warmupRuns: 4 })
    expect(none.get('f')?.warmup).toEqual([])
    expect(none.get('f')?.firstWarmupSteal).toBeNaN()
  })

  it('a warm-up that fails part way marks the path, and a later call on the same processes does not measure it unwarmed', async () => {
    let runs = 0
    const flaky: Path = { name: 'x', hops: [], run: async () => { if (++runs === 3) throw new Error('reset'); return { mibPerSecond: 1 } } }
    const fine: Path = { name: 'y', hops: [], run: async () => ({ mibPerSecond: 2 }) }
    const first = await measurePaths([flaky, fine], { bytes: 1, streams: 1, repeats: 2, warmupBytes: 1, warmupRuns: 4 })
    expect(runs).toBe(3)
    expect(first.get('x')?.failed).toBe('warm-up: reset')
    expect(first.get('x')?.value).toBeNaN()
    const failures = warmupFailures(first)
    expect([...failures]).toEqual([['x', 'warm-up: reset']])
    const second = await measurePaths([flaky, fine], { bytes: 1, streams: 8, repeats: 2, warmupBytes: 0, failed: failures })
    expect(runs).toBe(3) // never run again
    expect(second.get('x')?.failed).toBe('warm-up: reset')
    expect(second.get('y')?.runs).toEqual([2, 2])
  })

  it('marks a path whose warm-up failed, and never runs it again', async () => {
    let runs = 0
    const m = await measurePaths([{ name: 'x', hops: [], run: async () => { runs++; throw new Error('refused') } }], { bytes: 1, streams: 1, repeats: 3, warmupBytes: 1 })
    expect(runs).toBe(1)
    expect(m.get('x')?.failed).toBe('warm-up: refused')
  })

  it('gives the encryption cost as the median of the rounds\' ratios, with the loss against the goal', () => {
    const figures = (runs: number[], cpu: number): PathFigures => ({ value: [...runs].sort((x, y) => x - y)[1] as number, runs, cpu: { server: 0.2, peers: cpu }, gc: {}, steal: 0.01, warmup: [], firstWarmupSteal: NaN })
    // Rounds: 80/100, 45/50 (a busy round: both slow), 90/100.
    const rows: Row[] = []
    recordCost(figures([80, 45, 90], 0.6), figures([100, 50, 100], 0.4), { group: 'tunnel', what: 'forward', label: '1 connection, 16 MiB', goalLoss: 0.15, ourRoles: ['server', 'peers'] }, (r) => rows.push(r))
    expect(rows).toHaveLength(1)
    const row = rows[0] as Row
    expect(row.what).toBe('encryption cost (encrypted / plaintext), forward, 1 connection, 16 MiB')
    expect(row.value).toBeCloseTo(0.9) // paired by round; the ratio of the medians would say 0.8
    expect(row.unit).toBe('x')
    expect(row.range).toEqual({ min: 0.8, max: 0.9, runs: 3 })
    expect(row.note).toMatch(/^loss 10.0% \(goal: at most 15%: goal met\); ratio of the medians 0.80 \(80 \/ 100 MiB\/s\); CPU s per 64 MiB encrypted \/ plaintext: server 0.20 \/ 0.20, peers 0.60 \/ 0.40, starsock's processes in all 0.80 \/ 0.60 \(1.33x\)$/)

    rows.length = 0
    recordCost(figures([70, 40, 60], 0.6), figures([100, 50, 100], 0.4), { group: 'tunnel', what: 'forward', label: '1', goalLoss: 0.15, ourRoles: ['server', 'peers'] }, (r) => rows.push(r))
    expect(rows[0]?.value).toBeCloseTo(0.7)
    expect(rows[0]?.note).toMatch(/goal NOT met/)

    rows.length = 0
    recordCost(figures([70, 40, 60], 0.6), { ...figures([100, 50, 100], 0.4), value: NaN, failed: 'refused' }, { group: 'tunnel', what: 'forward', label: '1', goalLoss: 0.15, ourRoles: ['server', 'peers'] }, (r) => rows.push(r))
    recordCost(figures([70, 40, 60], 0.6), undefined, { group: 'tunnel', what: 'forward', label: '1', goalLoss: 0.15, ourRoles: ['server', 'peers'] }, (r) => rows.push(r))
    expect(rows.map((r) => [Number.isNaN(r.value), r.note])).toEqual([[true, 'no figure: a path could not be measured (refused)'], [true, 'no figure: a path was not measured']])
  })
})
