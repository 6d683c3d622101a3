/**
 * The `tunnel` scenario: TCP through a `forward` (sources, our server, the two peers each in its
 * own process, sink) beside the same bytes through Debian's websockify (one hop, WebSocket to
 * TCP) and through the raw `ws` and TCP relays, in the same run. Every path's two ends (sources
 * and sink) run in one warm worker, as in the raw relays' own rows; each figure is the median of
 * runs interleaved across the paths, so a busy moment on the machine touches every path alike.
 */
import { childPids, freePort, start, startOurs, startRawRelays, startWebsockify, treeCpuSeconds, type Proc } from './procs.ts'
import type { Row } from './rows.ts'

const MiB = 1024 * 1024
/** Runs of each measurement. */
const TUNNEL_RUNS = 3
/** How long one run may take (64 MiB at under 0.4 MiB/s is not worth waiting for). */
const RUN_LIMIT_MS = 180_000
/** Bytes through each path before any figure, in quick runs too. */
const WARMUP_BYTES = 64 * MiB
/** How long a worker may take to print `READY`. */
const READY_TIMEOUT_MS = 30_000

/** What the scenario needs from the harness. */
export interface TunnelBenchContext {
  /** Bytes of each measurement, in all (8 connections carry an eighth each). */
  bytes: number
  record: (row: Row) => void
  fmt: (n: number) => string
}

/** A worker that prints `READY {...}` and then serves until `stop`; settles once ready. */
async function ready<T> (task: string, args: Record<string, unknown>): Promise<{ proc: Proc, info: T }> {
  const proc = start(['bench/worker.ts', task, JSON.stringify(args)])
  try {
    return { proc, info: JSON.parse((await proc.next(/^READY /, READY_TIMEOUT_MS)).slice(6)) as T }
  } catch (err) {
    await proc.stop()
    throw err
  }
}

interface ServingWorker {
  /** Run a worker task; settles with its result, rejects with its error or after `ms`. */
  run: <T>(task: string, args: Record<string, unknown>, ms: number) => Promise<T>
  stop: () => Promise<void>
}

/** A worker that runs task after task (`serve`), warm; restarted after a failure, so a run that hung cannot answer for the next. */
async function servingWorker (): Promise<ServingWorker> {
  let current = await ready<Record<string, never>>('serve', {})
  return {
    run: async <T>(task: string, args: Record<string, unknown>, ms: number): Promise<T> => {
      try {
        current.proc.send(JSON.stringify({ task, args }))
        const answer = JSON.parse(await current.proc.next(/^\{/, ms)) as T & { error?: string }
        if (typeof answer.error === 'string') throw new Error(answer.error)
        return answer
      } catch (err) {
        await current.proc.stop()
        current = await ready<Record<string, never>>('serve', {})
        throw err
      }
    },
    stop: async () => { await current.proc.stop() }
  }
}

/** Wait (up to 2 s) until a forking server's per-connection children are gone, so their CPU time is in its own. */
async function settled (pid: number): Promise<void> {
  for (let i = 0; i < 200 && childPids(pid).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** One way through: the run, and the processes whose CPU time counts (the relay or proxy first: the row's server CPU). */
interface Path {
  name: string
  run: (bytes: number, streams: number) => Promise<{ mibPerSecond: number }>
  pids: number[]
  /** Wait until the CPU time of the run is all counted. */
  settle?: () => Promise<void>
}

/** A path's figures over its runs: the median throughput and the median CPU of each process, or why it failed. */
interface Measured { value: number, cpu: number[], runs: number[], failed?: string }

/** Measure every path `TUNNEL_RUNS` times, interleaved. */
async function measure (paths: Path[], bytes: number, streams: number): Promise<Map<string, Measured>> {
  const runs = new Map<string, { mibPerSecond: number[], cpu: number[][], failed?: string }>(paths.map((p) => [p.name, { mibPerSecond: [], cpu: [] }]))
  for (let i = 0; i < TUNNEL_RUNS; i++) {
    for (const path of paths) {
      const r = runs.get(path.name)
      if (r === undefined || r.failed !== undefined) continue
      try {
        const c0 = path.pids.map(treeCpuSeconds)
        const result = await path.run(bytes, streams)
        await path.settle?.()
        r.mibPerSecond.push(result.mibPerSecond)
        r.cpu.push(path.pids.map((pid, j) => treeCpuSeconds(pid) - (c0[j] ?? 0)))
      } catch (err) {
        r.failed = String((err as Error).message).split('\n')[0]?.slice(0, 160) ?? ''
      }
    }
  }
  const out = new Map<string, Measured>()
  for (const [name, r] of runs) {
    const cpu = (r.cpu[0] ?? []).map((_, j) => median(r.cpu.map((c) => c[j] ?? NaN)))
    out.set(name, { value: r.failed !== undefined ? NaN : median(r.mibPerSecond), cpu, runs: r.mibPerSecond, failed: r.failed })
  }
  return out
}

/** Run the scenario; every process it starts is stopped by its pid before it settles. */
export async function tunnelBench ({ bytes, record, fmt }: TunnelBenchContext): Promise<void> {
  const stops: Array<() => Promise<void>> = []
  try {
    const relays = await startRawRelays()
    stops.push(relays.proc.stop)
    const server = await startOurs()
    stops.push(server.proc.stop)
    const sinkPort = await freePort()
    let websockify: { port: number, proc: Proc } | undefined
    try {
      websockify = await startWebsockify(sinkPort)
      stops.push(websockify.proc.stop)
    } catch (err) {
      record({ group: 'tunnel', what: 'websockify', value: NaN, unit: '', note: `could not start: ${String((err as Error).message).split('\n')[0] ?? ''}` })
    }
    const target = await ready<{ peerId: string }>('tunnelTarget', { url: server.url, sinkPort })
    stops.push(target.proc.stop)
    const client = await ready<{ port: number }>('tunnelClient', { url: server.url, target: target.info.peerId, sinkPort })
    stops.push(client.proc.stop)
    const ends = await servingWorker()
    stops.push(ends.stop)

    const proxy = websockify
    const paths: Path[] = [
      { name: 'ws', run: async (n, streams) => await ends.run('throughputWs', { port: relays.ws, bytes: n, streams }, RUN_LIMIT_MS), pids: [relays.proc.pid] },
      { name: 'tcp', run: async (n, streams) => await ends.run('throughputTcp', { port: relays.tcp, bytes: n, streams }, RUN_LIMIT_MS), pids: [relays.proc.pid] },
      ...(proxy === undefined
        ? []
        : [{ name: 'websockify', run: async (n: number, streams: number) => await ends.run<{ mibPerSecond: number }>('tunnelBytes', { port: proxy.port, sinkPort, bytes: n, streams, websockify: true }, RUN_LIMIT_MS), pids: [proxy.proc.pid], settle: async () => { await settled(proxy.proc.pid) } }]),
      { name: 'forward', run: async (n, streams) => await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes: n, streams }, RUN_LIMIT_MS), pids: [server.proc.pid, client.proc.pid, target.proc.pid] }
    ]
    // A run through each path first: the peers' and the server's code paths take tens of MiB to
    // warm up (a first 64 MiB through a fresh forward runs at about half the speed of the fourth).
    for (const path of paths) await path.run(WARMUP_BYTES, 1)

    for (const streams of [1, 8]) {
      const label = streams === 1 ? `1 connection, ${bytes / MiB} MiB` : `8 connections, ${bytes / MiB} MiB in all`
      const m = await measure(paths, bytes, streams)
      const spread = (r: Measured): string => r.runs.length > 1 ? `median of ${r.runs.length} (${fmt(Math.min(...r.runs))}–${fmt(Math.max(...r.runs))})` : ''
      const row = (name: string, what: string, extra: (r: Measured) => Partial<Row>): void => {
        const r = m.get(name)
        if (r === undefined) return
        if (r.failed !== undefined) record({ group: 'tunnel', what: `${what}, ${label}`, value: NaN, unit: '', note: `could not measure: ${r.failed}` })
        else record({ group: 'tunnel', what: `${what}, ${label}`, value: r.value, unit: 'MiB/s', serverCpu: r.cpu[0], note: spread(r), ...extra(r) })
      }
      const ws = m.get('ws')?.value ?? NaN
      const tcp = m.get('tcp')?.value ?? NaN
      const viaProxy = m.get('websockify')?.value
      const reference = { what: 'raw ws', value: ws }
      row('ws', 'raw ws relay', () => ({}))
      row('tcp', 'raw TCP relay', () => ({}))
      row('websockify', 'websockify', (r) => ({ reference, note: `${spread(r)}; one hop: ws client, websockify, TCP` }))
      row('forward', 'forward', (r) => ({
        reference,
        note: [
          spread(r),
          `${(r.value / tcp).toFixed(2)}x raw TCP${viaProxy !== undefined ? `, ${(r.value / viaProxy).toFixed(2)}x websockify` : ''}`,
          `peers' cpu ${fmt(r.cpu[1] ?? NaN)} s (forward) + ${fmt(r.cpu[2] ?? NaN)} s (target)`
        ].join('; ')
      }))
    }
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}

/** Bytes through the forward before the copies are counted (warm code paths, settled batching). */
const COPIES_WARMUP_BYTES = 8 * MiB

/** Bytes copied on one side of the tunnel, by where, as copies per payload byte: ours (`client/`, `shared/`) and the dependencies'. */
function copyRows (side: string, copies: Record<string, number>, payload: number, record: (row: Row) => void, fmt: (n: number) => string): void {
  const entries = Object.entries(copies)
  const isOurs = (where: string): boolean => /^(client|shared)\//.test(where)
  const sum = (list: Array<[string, number]>): number => list.reduce((s, [, n]) => s + n, 0)
  const ours = entries.filter(([w]) => isOurs(w))
  const theirs = entries.filter(([w]) => !isOurs(w))
  const detail = (list: Array<[string, number]>): string => list.filter(([, n]) => n / payload >= 0.005).map(([w, n]) => `${w} ${fmt(n / payload)}`).join(', ')
  record({ group: 'copies', what: `${side}, starsock code`, value: sum(ours) / payload, unit: 'per byte', note: detail(ours) || 'none' })
  record({ group: 'copies', what: `${side}, dependencies`, value: sum(theirs) / payload, unit: 'per byte', note: detail(theirs) || 'none' })
}

/**
 * The `copies` scenario: bytes copied per byte of tunnel payload on the forwarding peer and on the
 * target peer, each counted in its own process by `bench/copy-meter.ts` while `bytes` go through
 * one `forward` connection (after a warm-up). Only one direction carries payload (the sink's
 * answer is 8 bytes).
 */
export async function copiesBench ({ bytes, record, fmt }: TunnelBenchContext): Promise<void> {
  const stops: Array<() => Promise<void>> = []
  try {
    const server = await startOurs()
    stops.push(server.proc.stop)
    const sinkPort = await freePort()
    const target = await ready<{ peerId: string }>('tunnelTarget', { url: server.url, sinkPort, meter: true })
    stops.push(target.proc.stop)
    const client = await ready<{ port: number }>('tunnelClient', { url: server.url, target: target.info.peerId, sinkPort, meter: true })
    stops.push(client.proc.stop)
    const ends = await servingWorker()
    stops.push(ends.stop)
    const copies = async (proc: Proc): Promise<{ copies: Record<string, number>, messages: { messages: number, bytes: number } }> => {
      proc.send('copies')
      return JSON.parse((await proc.next(/^COPIES /, READY_TIMEOUT_MS)).slice(7)) as { copies: Record<string, number>, messages: { messages: number, bytes: number } }
    }
    await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes: COPIES_WARMUP_BYTES, streams: 1 }, RUN_LIMIT_MS)
    await copies(client.proc)
    await copies(target.proc)
    await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes, streams: 1 }, RUN_LIMIT_MS)
    const label = `1 connection, ${bytes / MiB} MiB`
    const near = await copies(client.proc)
    copyRows(`forwarding peer, ${label}`, near.copies, bytes, record, fmt)
    copyRows(`target peer, ${label}`, (await copies(target.proc)).copies, bytes, record, fmt)
    const m = near.messages
    record({ group: 'copies', what: `stream messages sent by the forwarding peer, ${label}`, value: m.messages, unit: 'msgs', note: `${fmt(m.bytes / Math.max(1, m.messages) / 1024)} KiB on average` })
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}
