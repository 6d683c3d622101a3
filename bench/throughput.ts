/**
 * The `throughput` scenario: streams between two peers through a server, `streams` at once, with
 * the published legacy client through the original server and through ours, and with our client
 * through ours both encrypted (the default: Noise, issue 14) and in plaintext (`secure: false`,
 * what issue 13's goals measure), beside the raw `ws` and TCP relays; all in the same run, every
 * client in one warm worker, each path warmed up and then measured in interleaved repeats
 * (`bench/repeat.ts`) with every process's CPU and GCs per 64 MiB, and the encryption's cost
 * (encrypted over plaintext, round by round).
 */
import { servingWorker, startOriginal, startOurs, startRawRelays } from './procs.ts'
import { measurePaths, recordCost, recordPath, warmupFailures, WARMUP_BYTES, WARMUP_RUNS, type Path } from './repeat.ts'
import type { Row } from './rows.ts'

const MiB = 1024 * 1024
/** How long one run may take. */
const RUN_LIMIT_MS = 300_000
const GROUP = 'throughput'
/** Issue 14's goal: encrypted streams lose at most this share of the plaintext speed. */
const ENCRYPTION_GOAL_LOSS = 0.15

/** What the scenario needs from the harness. */
export interface ThroughputBenchContext {
  /** Bytes of each measurement with one stream, and in all with eight. */
  streamBytes: number
  parallelBytes: number
  repeats: number
  record: (row: Row) => void
}

/** Run the scenario; every process it starts is stopped by its pid before it settles. */
export async function throughputBench ({ streamBytes, parallelBytes, repeats, record }: ThroughputBenchContext): Promise<void> {
  const stops: Array<() => Promise<void>> = []
  try {
    const relays = await startRawRelays()
    stops.push(relays.proc.stop)
    const [original, ours] = await Promise.all([startOriginal(), startOurs()])
    stops.push(original.proc.stop, ours.proc.stop)
    const clients = await servingWorker()
    stops.push(clients.stop)
    const worker = { role: 'clients (worker)', pid: () => clients.pid }
    const run = (task: string, args: Record<string, unknown>) => async (bytes: number, streams: number) => await clients.run<{ mibPerSecond: number }>(task, { ...args, bytes, streams }, RUN_LIMIT_MS)
    const paths: Path[] = [
      { name: 'ws', run: run('throughputWs', { port: relays.ws }), hops: [{ role: 'relay', pid: () => relays.proc.pid, gc: true }, worker] },
      { name: 'tcp', run: run('throughputTcp', { port: relays.tcp }), hops: [{ role: 'relay', pid: () => relays.proc.pid }, worker] },
      { name: 'legacyOriginal', run: run('throughputLegacy', { port: original.port }), hops: [{ role: 'server', pid: () => original.proc.pid, gc: true }, worker] },
      { name: 'legacyOurs', run: run('throughputLegacy', { port: ours.port }), hops: [{ role: 'server', pid: () => ours.proc.pid, gc: true }, worker] },
      // Our client twice, next to each other in every round: encrypted (the default) and plaintext.
      { name: 'oursEncrypted', run: run('throughputOurs', { url: ours.url, secure: true }), hops: [{ role: 'server', pid: () => ours.proc.pid, gc: true }, { ...worker, role: 'both peers (worker)', gc: true }] },
      { name: 'oursPlaintext', run: run('throughputOurs', { url: ours.url, secure: false }), hops: [{ role: 'server', pid: () => ours.proc.pid, gc: true }, { ...worker, role: 'both peers (worker)', gc: true }] }
    ]
    // Every run starts from a collected heap in the worker that runs every path's clients.
    for (const p of paths) p.prepare = clients.gc
    // The warm-up once: the 8-stream runs reuse the same warm processes (a path whose warm-up failed is not measured unwarmed).
    let unwarmed: Map<string, string> | undefined
    for (const [streams, bytes] of [[1, streamBytes], [8, parallelBytes]] as const) {
      const label = streams === 1 ? `1 stream, ${bytes / MiB} MiB` : `8 streams, ${bytes / MiB} MiB in all`
      const m = await measurePaths(paths, { bytes, streams, repeats, warmupBytes: unwarmed !== undefined ? 0 : WARMUP_BYTES, warmupRuns: WARMUP_RUNS, failed: unwarmed })
      unwarmed ??= warmupFailures(m)
      const figure = (name: string, what: string): { what: string, value: number } => ({ what, value: m.get(name)?.value ?? NaN })
      const hopCpu = (name: string, role: string, what: string): { what: string, value: number } => ({ what, value: m.get(name)?.cpu[role] ?? NaN })
      const path = (name: string): Path => paths.find((p) => p.name === name) as Path
      const vs = (name: string, ref: string, what: string): string | undefined => {
        const x = (m.get(name)?.value ?? NaN) / (m.get(ref)?.value ?? NaN)
        return Number.isFinite(x) ? `${x.toFixed(2)}x ${what}` : undefined
      }
      const note = (...parts: Array<string | undefined>): string | undefined => parts.filter((p) => p !== undefined).join(', ') || undefined
      recordPath(m.get('ws'), path('ws'), { group: GROUP, what: 'raw ws relay', label }, record)
      recordPath(m.get('tcp'), path('tcp'), { group: GROUP, what: 'raw TCP relay', label }, record)
      recordPath(m.get('legacyOriginal'), path('legacyOriginal'), { group: GROUP, what: 'legacy client, original server', label, reference: figure('ws', 'raw ws'), cpuReference: { server: hopCpu('ws', 'relay', 'raw ws relay') } }, record)
      recordPath(m.get('legacyOurs'), path('legacyOurs'), { group: GROUP, what: 'legacy client, our server', label, reference: figure('legacyOriginal', 'original'), cpuReference: { server: hopCpu('legacyOriginal', 'server', 'original') } }, record)
      recordPath(m.get('oursEncrypted'), path('oursEncrypted'), {
        group: GROUP,
        what: 'our client, our server, encrypted (default)',
        label,
        reference: figure('ws', 'raw ws'),
        note: note(vs('oursEncrypted', 'oursPlaintext', 'plaintext'), vs('oursEncrypted', 'legacyOriginal', 'original')),
        // Beside the same process in plaintext: what the encryption costs each of them.
        cpuReference: { server: hopCpu('oursPlaintext', 'server', 'plaintext'), 'both peers (worker)': hopCpu('oursPlaintext', 'both peers (worker)', 'plaintext') }
      }, record)
      recordPath(m.get('oursPlaintext'), path('oursPlaintext'), {
        group: GROUP,
        what: 'our client, our server, plaintext (secure: false)',
        label,
        reference: figure('ws', 'raw ws'),
        note: note('issue 13\'s row: its goals are this ratio', vs('oursPlaintext', 'legacyOriginal', 'original')),
        cpuReference: { server: hopCpu('ws', 'relay', 'raw ws relay') }
      }, record)
      recordCost(m.get('oursEncrypted'), m.get('oursPlaintext'), { group: GROUP, what: 'our client', label, goalLoss: ENCRYPTION_GOAL_LOSS, ourRoles: ['server', 'both peers (worker)'] }, record)
    }
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}
