/**
 * The `tunnel` scenario: TCP through a `forward` (sources, our server, the two peers each in its
 * own process, sink), encrypted (the default: Noise, issue 14) and in plaintext (both peers
 * `--insecure`: what issue 13's goals measure), beside the same bytes through Debian's websockify
 * (one hop, WebSocket to TCP) and through the raw `ws` and TCP relays, in the same run. Every
 * path's two ends (sources and sink) run in one warm worker, as in the raw relays' own rows. Each
 * path is warmed up, then measured in interleaved repeats (`bench/repeat.ts`), with every
 * process's CPU and GCs per 64 MiB and the encryption's cost (encrypted over plaintext, round by
 * round); the copies per byte on each side (`bench/copies.ts`), encrypted and plaintext, end the
 * scenario's rows.
 */
import { copiesBench } from './copies.ts'
import { childPids, freePort, ready, servingWorker, startOurs, startRawRelays, startWebsockify, type Proc } from './procs.ts'
import { measurePaths, recordCost, recordPath, warmupFailures, WARMUP_BYTES, WARMUP_RUNS, type Path, type PathFigures } from './repeat.ts'
import type { Row } from './rows.ts'

const MiB = 1024 * 1024
/** How long one run may take (64 MiB at under 0.4 MiB/s is not worth waiting for). */
const RUN_LIMIT_MS = 180_000
const GROUP = 'tunnel'
/** Issue 14's goal: an encrypted `forward` loses at most this share of the plaintext speed. */
const ENCRYPTION_GOAL_LOSS = 0.15

/** What the scenario needs from the harness. */
export interface TunnelBenchContext {
  /** Bytes of each measurement, in all (8 connections carry an eighth each). */
  bytes: number
  /** Measured runs of each path. */
  repeats: number
  record: (row: Row) => void
}

/** Wait (up to 2 s) until a forking server's per-connection children are gone, so their CPU time is in its own. */
async function settled (pid: number): Promise<void> {
  for (let i = 0; i < 200 && childPids(pid).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

/**
 * Run the scenario, the transfers and then the copies (those even when the transfers failed; a
 * failure of either is a row that says why). Every process it starts is stopped by its pid before
 * it settles.
 */
export async function tunnelBench (context: TunnelBenchContext): Promise<void> {
  const { bytes, record } = context
  const why = (err: unknown): string => `could not measure: ${String((err as Error)?.message ?? err).split('\n')[0]?.slice(0, 160) ?? ''}`
  try {
    await transfers(context)
  } catch (err) {
    record({ group: GROUP, what: 'transfers', value: NaN, unit: '', note: why(err) })
  }
  // Encrypted, then plaintext (`bench/copies.ts`).
  try {
    await copiesBench({ bytes, group: `${GROUP} copies`, record })
  } catch (err) {
    record({ scenario: 'copies', group: `${GROUP} copies`, what: 'copies', value: NaN, unit: '', note: why(err) })
  }
}

/**
 * The first warm-up run of the plaintext `forward` (the first of our paths: its server and peers
 * fresh processes, only the worker of the sources and sink warm) against websockify's first
 * (websockify forks a fresh process for every connection, so its every run is cold): what a short
 * transfer through a just-started plaintext `forward` gets. No row without both figures.
 */
function recordColdForward (forward: PathFigures | undefined, websockify: PathFigures | undefined, record: (row: Row) => void): void {
  const cold = forward?.warmup[0]
  const reference = websockify?.warmup[0]
  if (forward === undefined || cold === undefined || forward.failed !== undefined || reference === undefined || websockify?.failed !== undefined) return
  record({
    group: GROUP,
    what: `forward, plaintext (--insecure), cold: the first ${WARMUP_BYTES / MiB} MiB through a fresh server and peers, 1 connection`,
    value: cold,
    unit: 'MiB/s',
    reference: { what: 'websockify\'s first', value: reference },
    steal: forward.firstWarmupSteal,
    note: 'one run, before any figure above: the warm-up\'s first'
  })
}

async function transfers ({ bytes, repeats, record }: TunnelBenchContext): Promise<void> {
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
      record({ group: GROUP, what: 'websockify', value: NaN, unit: '', note: `could not start: ${String((err as Error).message).split('\n')[0] ?? ''}` })
    }
    // Two forwards into the same sink, each with its own two peers: encrypted (the default) and
    // plaintext (both peers `--insecure`); one path at a time, so they never share the sink.
    const pairs = []
    for (const insecure of [false, true]) {
      const target = await ready<{ peerId: string }>('tunnelTarget', { url: server.url, sinkPort, insecure })
      stops.push(target.proc.stop)
      const client = await ready<{ port: number, secure: boolean }>('tunnelClient', { url: server.url, target: target.info.peerId, sinkPort, insecure })
      stops.push(client.proc.stop)
      pairs.push({ target, client })
    }
    const [encrypted, plaintext] = pairs as [typeof pairs[0], typeof pairs[0]]
    const ends = await servingWorker()
    stops.push(ends.stop)

    const relay = { role: 'relay', pid: () => relays.proc.pid }
    const endsHop = { role: 'sources and sink (worker)', pid: () => ends.pid }
    const proxy = websockify
    const paths: Path[] = [
      { name: 'ws', run: async (n, streams) => await ends.run('throughputWs', { port: relays.ws, bytes: n, streams }, RUN_LIMIT_MS), hops: [{ ...relay, gc: true }, endsHop] },
      { name: 'tcp', run: async (n, streams) => await ends.run('throughputTcp', { port: relays.tcp, bytes: n, streams }, RUN_LIMIT_MS), hops: [relay, endsHop] },
      ...(proxy === undefined
        ? []
        : [{ name: 'websockify', run: async (n: number, streams: number) => await ends.run<{ mibPerSecond: number }>('tunnelBytes', { port: proxy.port, sinkPort, bytes: n, streams, websockify: true }, RUN_LIMIT_MS), hops: [{ role: 'websockify', pid: () => proxy.proc.pid }, endsHop], settle: async () => { await settled(proxy.proc.pid) } }]),
      // Plaintext first: its first warm-up run is the cold one (server and peers fresh; `recordColdForward`).
      ...([['forwardPlaintext', plaintext], ['forwardEncrypted', encrypted]] as const).map(([name, { client, target }]): Path => ({
        name,
        run: async (n, streams) => await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes: n, streams }, RUN_LIMIT_MS),
        hops: [{ role: 'server', pid: () => server.proc.pid, gc: true }, { role: 'forwarding peer', pid: () => client.proc.pid, gc: true }, { role: 'target peer', pid: () => target.proc.pid, gc: true }, endsHop]
      }))
    ]
    // Every run starts from a collected heap in the worker that runs every path's sources and sink.
    for (const p of paths) p.prepare = ends.gc

    let unwarmed: Map<string, string> | undefined
    for (const streams of [1, 8]) {
      const label = streams === 1 ? `1 connection, ${bytes / MiB} MiB` : `8 connections, ${bytes / MiB} MiB in all`
      // The warm-up once: the 8-connection runs reuse the same warm processes (a path whose warm-up failed is not measured unwarmed).
      const m = await measurePaths(paths, { bytes, streams, repeats, warmupBytes: unwarmed !== undefined ? 0 : WARMUP_BYTES, warmupRuns: WARMUP_RUNS, failed: unwarmed })
      unwarmed ??= warmupFailures(m)
      const ws = m.get('ws')
      const reference = { what: 'raw ws', value: ws?.value ?? NaN }
      const relayCpu = { what: 'raw ws relay', value: ws?.cpu.relay ?? NaN }
      const tcp = m.get('tcp')?.value ?? NaN
      const viaProxy = m.get('websockify')?.value
      const plain = m.get('forwardPlaintext')
      const path = (name: string): Path => paths.find((p) => p.name === name) as Path
      recordPath(m.get('ws'), path('ws'), { group: GROUP, what: 'raw ws relay', label }, record)
      recordPath(m.get('tcp'), path('tcp'), { group: GROUP, what: 'raw TCP relay', label }, record)
      if (proxy !== undefined) recordPath(m.get('websockify'), path('websockify'), { group: GROUP, what: 'websockify', label, reference, note: 'one hop: ws client, websockify, TCP', cpuReference: { websockify: relayCpu } }, record)
      const ratios = (name: string, lead?: string): string => {
        const forward = m.get(name)?.value ?? NaN
        const ratio = (ref: number | undefined, what: string): string => Number.isFinite(forward) && ref !== undefined && Number.isFinite(ref) && ref > 0 ? `${(forward / ref).toFixed(2)}x ${what}` : ''
        return [lead ?? '', ratio(viaProxy, 'websockify'), ratio(tcp, 'raw TCP')].filter((t) => t !== '').join(', ')
      }
      const samePlain = (role: string): { what: string, value: number } => ({ what: 'plaintext', value: plain?.cpu[role] ?? NaN })
      recordPath(m.get('forwardEncrypted'), path('forwardEncrypted'), {
        group: GROUP,
        what: 'forward, encrypted (default)',
        label,
        reference,
        note: ratios('forwardEncrypted', Number.isFinite((m.get('forwardEncrypted')?.value ?? NaN) / (plain?.value ?? NaN)) ? `${((m.get('forwardEncrypted')?.value ?? NaN) / (plain?.value ?? NaN)).toFixed(2)}x plaintext` : undefined),
        // Beside the same process in plaintext: what the encryption costs each of them.
        cpuReference: { server: samePlain('server'), 'forwarding peer': samePlain('forwarding peer'), 'target peer': samePlain('target peer') }
      }, record)
      recordPath(plain, path('forwardPlaintext'), { group: GROUP, what: 'forward, plaintext (--insecure)', label, reference, note: ratios('forwardPlaintext', 'issue 13\'s row: its goal is the ratio to websockify'), cpuReference: { server: relayCpu } }, record)
      recordCost(m.get('forwardEncrypted'), plain, { group: GROUP, what: 'forward', label, goalLoss: ENCRYPTION_GOAL_LOSS, ourRoles: ['server', 'forwarding peer', 'target peer'] }, record)
      if (streams === 1) recordColdForward(plain, m.get('websockify'), record)
    }
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}
