/**
 * Transfers measured the way the issue 13 figures need: every path warmed up (`warmupRuns` runs)
 * in the processes that then carry the measured runs, then `repeats` rounds of one run of each path,
 * every other round in the reverse order (A, B, C, C, B, A: a busy moment on the machine touches
 * every path alike, and no path always runs right after the same other one), reported as the
 * median with the range. Per run, every process of the path gives its CPU seconds (`/proc`) and its
 * GCs (`bench/gc-meter.js`), scaled to 64 MiB; the steal is added up over the path's own runs.
 */
import { gcDiff, gcTotals, GC_SETTLE_MS, type GcTotals } from './gc.ts'
import { treeCpuSeconds } from './proc-stat.ts'
import { formatFigure as fmt, median, type Row } from './rows.ts'
import { sampleCpu, StealTally } from './steal.ts'

const MiB = 1024 * 1024
/** CPU and GC figures are per this many payload bytes. */
export const PER_BYTES = 64 * MiB
/**
 * Bytes of each warm-up run through a path before any figure, in quick runs too (code paths warm,
 * heaps grown).
 */
export const WARMUP_BYTES = 64 * MiB
/**
 * Warm-up runs of `WARMUP_BYTES` through each path of the Node data-path scenarios: 1 GiB. A Node
 * process on the path gets faster for its first 600 to 800 MiB, then only slowly (2026-12-04,
 * 128 MiB runs through fresh processes, steal 0%: one plaintext `forward` 262, 367, 393, 433, 448,
 * 469, 474, 478, 464, 498 MiB/s; the raw `ws` relay 614 to about 890 by the fifth run). What climbs
 * is each process's user CPU per byte (the forwarding peer's halves) as V8 optimises the
 * per-message code (`--trace-opt` still lists first optimisations in the sixth run; with `--no-opt`
 * on the peers there is no climb). websockify forks a process per connection and runs at the same
 * speed from its first run. A path's warm-up counts per path, not per process (a server two paths
 * share is warmed twice), so this leaves a margin past the climb for a process one path warms alone.
 */
export const WARMUP_RUNS = 16

/** A process of a path: what it does there, its pid, and whether its GC rows are printed. */
export interface Hop { role: string, pid: () => number, gc?: boolean }

/** One way through: the run, and the processes whose CPU time and GCs count. */
export interface Path {
  name: string
  run: (bytes: number, streams: number) => Promise<{ mibPerSecond: number }>
  hops: Hop[]
  /** Wait until the CPU time of the run is all counted (a forking server's children gone). */
  settle?: () => Promise<void>
  /** Before each measured run, outside its figures: a full GC in a shared worker. */
  prepare?: () => Promise<void>
}

/** A path's figures over its runs. */
export interface PathFigures {
  /** Median MiB/s (NaN when it failed). */
  value: number
  runs: number[]
  /** Per role: median CPU seconds per 64 MiB. */
  cpu: Record<string, number>
  /** Per role: median GC figures per 64 MiB (roles whose process reports them). */
  gc: Record<string, GcTotals>
  /** Steal over the path's runs (0 to 1). */
  steal: number
  /**
   * MiB/s of each warm-up run, in order. The first is cold only for processes no path before it
   * used (the order of `paths`): a server or worker another path warmed is warm by then.
   */
  warmup: number[]
  /** Steal over the first warm-up run (0 to 1; NaN when unknown or there was none). */
  firstWarmupSteal: number
  failed?: string
}

/** How to measure. */
export interface MeasureOptions {
  bytes: number
  streams: number
  repeats: number
  /** Bytes of each unmeasured run through each path first; 0 for none (processes already warm). */
  warmupBytes: number
  /** How many of those runs. @default 1 */
  warmupRuns?: number
  /**
   * Paths that are not to be measured, with why: those whose warm-up failed in an earlier call on
   * the same processes (`warmupFailures`), which would otherwise be measured unwarmed.
   */
  failed?: ReadonlyMap<string, string>
}

const reason = (err: unknown): string => String((err as Error)?.message ?? err).split('\n')[0]?.slice(0, 160) ?? ''
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

function medianGc (list: Array<GcTotals | undefined>): GcTotals | undefined {
  const known = list.filter((g): g is GcTotals => g !== undefined)
  if (known.length === 0) return undefined
  const m = (k: keyof GcTotals): number => median(known.map((g) => g[k]))
  return { markCompacts: m('markCompacts'), markCompactMs: m('markCompactMs'), scavenges: m('scavenges'), gcs: m('gcs'), gcMs: m('gcMs') }
}

function scaleGc (g: GcTotals | undefined, k: number): GcTotals | undefined {
  return g === undefined ? undefined : { markCompacts: g.markCompacts * k, markCompactMs: g.markCompactMs * k, scavenges: g.scavenges * k, gcs: g.gcs * k, gcMs: g.gcMs * k }
}

/**
 * Measure every path: a warm-up each, then `repeats` rounds of one run each (every other round
 * in the reverse order). A failing path is left out of later rounds; a path's `runs` are in round
 * order, so two paths' runs of the same round can be paired (`recordCost`).
 */
export async function measurePaths (paths: Path[], o: MeasureOptions): Promise<Map<string, PathFigures>> {
  const state = new Map(paths.map((p) => [p.name, { mibPerSecond: [] as number[], warmup: [] as number[], firstWarmupSteal: new StealTally(), cpu: [] as Array<Record<string, number>>, gc: [] as Array<Record<string, GcTotals | undefined>>, steal: new StealTally(), failed: o.failed?.get(p.name) }]))
  if (o.warmupBytes > 0) {
    for (const path of paths) {
      const s = state.get(path.name)
      if (s === undefined || s.failed !== undefined) continue
      try {
        for (let i = 0; i < (o.warmupRuns ?? 1); i++) {
          // As before a measured run: the first warm-up run (the cold one) pays for no other path's garbage.
          await path.prepare?.()
          const s0 = sampleCpu()
          s.warmup.push((await path.run(o.warmupBytes, o.streams)).mibPerSecond)
          if (i === 0) s.firstWarmupSteal.add(s0, sampleCpu())
        }
      } catch (err) { s.failed = `warm-up: ${reason(err)}` }
    }
  }
  const k = PER_BYTES / o.bytes
  for (let i = 0; i < o.repeats; i++) {
    for (const path of i % 2 === 0 ? paths : [...paths].reverse()) {
      const s = state.get(path.name)
      if (s === undefined || s.failed !== undefined) continue
      try {
        await path.prepare?.()
        await sleep(GC_SETTLE_MS) // the GC meters have written what came before
        const g0 = path.hops.map((h) => gcTotals(h.pid()))
        const c0 = path.hops.map((h) => treeCpuSeconds(h.pid()))
        const s0 = sampleCpu()
        const result = await path.run(o.bytes, o.streams)
        await path.settle?.()
        const s1 = sampleCpu()
        const c1 = path.hops.map((h) => treeCpuSeconds(h.pid()))
        await sleep(GC_SETTLE_MS)
        const g1 = path.hops.map((h) => gcTotals(h.pid()))
        s.steal.add(s0, s1)
        s.mibPerSecond.push(result.mibPerSecond)
        s.cpu.push(Object.fromEntries(path.hops.map((h, j) => [h.role, ((c1[j] ?? NaN) - (c0[j] ?? NaN)) * k])))
        s.gc.push(Object.fromEntries(path.hops.map((h, j) => [h.role, scaleGc(gcDiff(g0[j], g1[j]), k)])))
      } catch (err) {
        s.failed = reason(err)
      }
    }
  }
  const out = new Map<string, PathFigures>()
  for (const path of paths) {
    const s = state.get(path.name)
    if (s === undefined) continue
    const cpu = Object.fromEntries(path.hops.map((h) => [h.role, median(s.cpu.map((c) => c[h.role] ?? NaN))]))
    const gc: Record<string, GcTotals> = {}
    for (const h of path.hops) {
      const m = medianGc(s.gc.map((g) => g[h.role]))
      if (m !== undefined) gc[h.role] = m
    }
    out.set(path.name, { value: s.failed !== undefined ? NaN : median(s.mibPerSecond), runs: s.mibPerSecond, cpu, gc, steal: s.steal.share(), warmup: s.warmup, firstWarmupSteal: s.firstWarmupSteal.share(), failed: s.failed })
  }
  return out
}

/** What the rows of one measured path look like. */
export interface PathRows {
  group: string
  /** The path's name in the rows (`forward`, `raw ws relay`). */
  what: string
  /** Appended to every row's `what` (`1 connection, 64 MiB`). */
  label: string
  reference?: { what: string, value: number }
  note?: string
  /** Per role: the reference for its CPU row (the raw relay's relay CPU for our server). */
  cpuReference?: Record<string, { what: string, value: number }>
}

/** What a path's warm-up runs say: the speed of the first and of the last. */
function warmupNote (warmup: number[]): string | undefined {
  if (warmup.length < 2) return undefined
  return `warm-up: first run ${fmt(warmup[0])} MiB/s, last of ${warmup.length} ${fmt(warmup[warmup.length - 1])}`
}

/**
 * The paths whose warm-up failed in `m`, with why: pass them as `failed` to a later call on the
 * same processes (which does not warm up again), so they are not measured unwarmed.
 */
export function warmupFailures (m: Map<string, PathFigures>): Map<string, string> {
  return new Map([...m].flatMap(([name, f]) => f.failed?.startsWith('warm-up: ') === true ? [[name, f.failed] as const] : []))
}

/**
 * Record a path's rows: its throughput (median, range, steal), then in `<group> cpu` one row per
 * process with its CPU seconds per 64 MiB, and in `<group> gc` one per process whose hop asks
 * for it with its mark-compacts per 64 MiB (GC time and scavenges in the note).
 */
export function recordPath (m: PathFigures | undefined, path: Path, r: PathRows, record: (row: Row) => void): void {
  if (m === undefined) return
  const what = `${r.what}, ${r.label}`
  if (m.failed !== undefined) {
    record({ group: r.group, what, value: NaN, unit: 'MiB/s', steal: m.steal, note: `could not measure: ${m.failed}` })
    return
  }
  const range = { min: Math.min(...m.runs), max: Math.max(...m.runs), runs: m.runs.length }
  record({ group: r.group, what, value: m.value, unit: 'MiB/s', reference: r.reference, range, steal: m.steal, note: [r.note, warmupNote(m.warmup)].filter((t) => t !== undefined && t !== '').join('; ') || undefined })
  for (const hop of path.hops) {
    record({ group: `${r.group} cpu`, what: `${what}: ${hop.role}`, value: m.cpu[hop.role] ?? NaN, unit: 's/64 MiB', reference: r.cpuReference?.[hop.role], steal: m.steal })
  }
  for (const hop of path.hops) {
    if (hop.gc !== true) continue
    const g = m.gc[hop.role]
    if (g === undefined) {
      record({ group: `${r.group} gc`, what: `${what}: ${hop.role}`, value: NaN, unit: 'MC/64 MiB', steal: m.steal, note: 'no GC figures: the process did not report (bench/gc-meter.js)' })
      continue
    }
    record({ group: `${r.group} gc`, what: `${what}: ${hop.role}`, value: g.markCompacts, unit: 'MC/64 MiB', steal: m.steal, note: `mark-compacts per 64 MiB; GC pause ${fmt(g.gcMs)} ms (mark-compact ${fmt(g.markCompactMs)} ms), ${fmt(g.scavenges)} scavenges per 64 MiB` })
  }
}

/** The figures an `encryption cost` row compares: the same transfer encrypted (the default) and in plaintext. */
export interface CostRows {
  group: string
  /** What is compared (`our client`, `forward`). */
  what: string
  /** As in `PathRows` (`1 stream, 64 MiB`). */
  label: string
  /** Share of the plaintext speed that may be lost (0.15: the encrypted path at least 0.85x). */
  goalLoss: number
  /** The roles whose CPU is starsock's (server, peers; not the sources and sink), added up in the note. */
  ourRoles: string[]
}

/**
 * Record the `encryption cost` row of two paths measured in the same rounds: the median of the
 * rounds' ratios (encrypted MiB/s over plaintext MiB/s of the same round, the two runs next to each
 * other), with their range, the loss against the goal, and each process's CPU per 64 MiB encrypted
 * against plaintext in the note, with starsock's processes added up (steadier than MiB/s on a busy
 * machine: on a CPU-bound path it is what the speed will follow). No figure when either path failed or their rounds do not pair up.
 */
export function recordCost (encrypted: PathFigures | undefined, plaintext: PathFigures | undefined, r: CostRows, record: (row: Row) => void): void {
  const what = `encryption cost (encrypted / plaintext), ${r.what}, ${r.label}`
  const why = encrypted === undefined || plaintext === undefined
    ? 'a path was not measured'
    : encrypted.failed !== undefined || plaintext.failed !== undefined
      ? `a path could not be measured (${encrypted.failed ?? plaintext.failed ?? ''})`
      : encrypted.runs.length !== plaintext.runs.length ? 'the two paths ran a different number of rounds' : undefined
  if (why !== undefined || encrypted === undefined || plaintext === undefined) {
    record({ group: r.group, what, value: NaN, unit: 'x', note: `no figure: ${why ?? ''}` })
    return
  }
  const ratios = encrypted.runs.map((e, i) => e / (plaintext.runs[i] ?? NaN)).filter((x) => Number.isFinite(x))
  const value = median(ratios)
  const loss = 1 - value
  const verdict = !Number.isFinite(value) ? '' : loss <= r.goalLoss ? 'goal met' : 'goal NOT met'
  const sum = (f: PathFigures): number => r.ourRoles.reduce((total, role) => total + (f.cpu[role] ?? NaN), 0)
  const ours = `starsock's processes in all ${fmt(sum(encrypted))} / ${fmt(sum(plaintext))} (${fmt(sum(encrypted) / sum(plaintext))}x)`
  const cpu = [...Object.keys(encrypted.cpu).map((role) => `${role} ${fmt(encrypted.cpu[role])} / ${fmt(plaintext.cpu[role])}`), ours].join(', ')
  record({
    group: r.group,
    what,
    value,
    unit: 'x',
    range: { min: Math.min(...ratios), max: Math.max(...ratios), runs: ratios.length },
    steal: Number.isFinite(encrypted.steal) && Number.isFinite(plaintext.steal) ? Math.max(encrypted.steal, plaintext.steal) : NaN,
    note: `loss ${(loss * 100).toFixed(1)}% (goal: at most ${r.goalLoss * 100}%: ${verdict}); ratio of the medians ${fmt(encrypted.value / plaintext.value)} (${fmt(encrypted.value)} / ${fmt(plaintext.value)} MiB/s); CPU s per 64 MiB encrypted / plaintext: ${cpu}`
  })
}
