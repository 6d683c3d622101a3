/**
 * What discovery costs a node at cluster scale (issue 18): a burst of joins from another node
 * (`rendezvous.remoteJoined`, as the cluster plane hands them over) reaching `n` joined clients,
 * half legacy (`ws-peer`) and half starsock clients that asked for peer events. Two servers in
 * the same run: the reference announces every join to every client at once and the starsock
 * clients get one event per change (as before issue 18, `--announce-joins-per-second` past the
 * burst's rate); the other runs the defaults (a budget of 4 immediate `ws-peer` a second,
 * bursts of 8) and its starsock clients ask for batches (`peerBatch`).
 * Rows per size and server: messages per join (legacy and starsock, counted by the clients) and
 * server CPU per join (from /proc, less the same time idle). `docs/benchmarks.md` turns them
 * into a cost model for 10 nodes x 10,000 peers.
 */
import { cpuSeconds, rssMiB, start, type Proc } from './procs.ts'
import { formatFigure as fmt, type Row } from './rows.ts'

/** Joins in a burst, and their pace (a restart wave on another node). */
const BURST_JOINS = 200
const BURST_PER_SECOND = 1000
/** Time after a burst for the last batch and the sockets' writes, at least. */
const SETTLE_MS = 1500
/** Time the idle server's CPU is measured for. */
const IDLE_MS = 2000
const READY_MS = 600_000

/** A worker's `READY {...}` line, parsed. */
async function ready<T> (proc: Proc): Promise<T> {
  return JSON.parse((await proc.next(/^READY /, READY_MS)).slice(6)) as T
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Messages and peer changes the clients of `proc` received since the last reset. */
async function counted (proc: Proc): Promise<{ messages: number, entries: number }> {
  proc.send('count')
  return JSON.parse(await proc.next(/^\{/, 60_000)) as { messages: number, entries: number }
}

interface Measured { legacy: number, starsock: number, starsockEntries: number, cpuMsPerJoin: number, joined: number, rss: number, burstMs: number, busyMs: number }

/** One server (`options`) with `n` clients; the burst's cost. */
async function measure (n: number, joinsPerSecond: number, starsockKind: 'events' | 'batch'): Promise<Measured> {
  // The crowd joins with no immediate announcement (else 4 a second to every client of a
  // growing crowd: client workers busy enough to miss engine.io's pings); `arm` sets the budget.
  const node = start(['bench/announce-node.ts', JSON.stringify({ announceJoinsPerSecond: 0 })])
  const workers: Proc[] = []
  try {
    const { port } = await ready<{ port: number }>(node)
    const url = `http://127.0.0.1:${port}`
    let joined = 0
    for (const kind of ['legacy', starsockKind] as const) {
      const w = start(['bench/announce-clients.ts', JSON.stringify({ url, count: Math.floor(n / 2), kind, tag: kind })])
      workers.push(w)
      joined += (await ready<{ joined: number }>(w)).joined
    }
    node.send(`arm ${joinsPerSecond}`)
    await node.next(/^ARMED/, 60_000)
    for (const w of workers) w.send('arm')
    const armed: Array<{ armed: number, connected: number }> = []
    for (const w of workers) armed.push(JSON.parse((await w.next(/^ARMED/, READY_MS)).slice(6)) as { armed: number, connected: number })
    const connected = armed.reduce((sum, a) => sum + a.connected, 0)
    if (connected < joined) process.stdout.write(`  ${joined - connected} of ${joined} clients dropped before the burst\n`)
    const rss = rssMiB(node.pid)
    await sleep(1000)
    // Idle CPU a second (engine.io pings), taken off the measurement's time.
    const idle0 = cpuSeconds(node.pid)
    await sleep(IDLE_MS)
    const idlePerMs = (cpuSeconds(node.pid) - idle0) / IDLE_MS
    for (const w of workers) w.send('reset')
    await sleep(200)
    const t0 = performance.now()
    const c0 = cpuSeconds(node.pid)
    node.send(`burst ${BURST_JOINS} ${BURST_PER_SECOND}`)
    const { ms: burstMs } = JSON.parse((await node.next(/^BURST /, 600_000)).slice(6)) as { ms: number }
    // Until the clients have everything: at least SETTLE_MS, then until two counts in a row agree.
    await sleep(SETTLE_MS)
    let last = ''
    for (;;) {
      const now = JSON.stringify(await Promise.all(workers.map(counted)))
      if (now === last) break
      last = now
      await sleep(500)
    }
    const busyMs = performance.now() - t0
    const cpu = cpuSeconds(node.pid) - c0 - idlePerMs * busyMs
    const [legacy, starsock] = JSON.parse(last) as [{ messages: number }, { messages: number, entries: number }]
    return { legacy: legacy.messages / BURST_JOINS, starsock: starsock.messages / BURST_JOINS, starsockEntries: starsock.entries / BURST_JOINS, cpuMsPerJoin: Math.max(0, cpu) * 1000 / BURST_JOINS, joined, rss, burstMs, busyMs }
  } finally {
    for (const w of workers) { w.send('stop'); await w.stop() }
    node.send('stop')
    await node.stop()
  }
}

/** The announcement scenario: for each size, the reference and the bounded server, side by side. */
export async function announceBench (o: { sizes: number[], record: (row: Row) => void }): Promise<void> {
  for (const n of o.sizes) {
    const ref = await measure(n, 1_000_000, 'events')
    const ours = await measure(n, 4, 'batch')
    const half = Math.floor(n / 2)
    const what = (s: string): string => `${s}, ${n} peers (${half} legacy + ${half} starsock), ${BURST_JOINS} joins at ${BURST_PER_SECOND}/s`
    o.record({ group: 'announce', what: what('ws-peer per join, every join at once (reference)'), value: ref.legacy, unit: 'msgs', note: `${ref.joined} joined, server RSS ${fmt(ref.rss)} MiB` })
    o.record({ group: 'announce', what: what('ws-peer per join, budget 4/s'), value: ours.legacy, unit: 'msgs', reference: { what: 'every join at once', value: ref.legacy }, note: `${ours.joined} joined; the rest reach legacy clients through the rotation` })
    o.record({ group: 'announce', what: what('starsock events per join, one per change (reference)'), value: ref.starsock, unit: 'msgs', note: `${fmt(ref.starsockEntries)} changes per join delivered` })
    o.record({ group: 'announce', what: what('starsock events per join, peer-batch'), value: ours.starsock, unit: 'msgs', reference: { what: 'one per change', value: ref.starsock }, note: `${fmt(ours.starsockEntries)} changes per join delivered${ours.starsockEntries >= half ? ': every client got every join' : `, ${half} expected`}` })
    // A saturated node takes the burst slower (the joins come through its own event loop, as the plane's do).
    const timing = (m: Measured): string => `burst took ${fmt(m.burstMs / 1000)} s, all delivered after ${fmt(m.busyMs / 1000)} s`
    o.record({ group: 'announce', what: what('server CPU per join, reference'), value: ref.cpuMsPerJoin, unit: 'ms', serverCpu: ref.cpuMsPerJoin * BURST_JOINS / 1000, note: timing(ref) })
    o.record({ group: 'announce', what: what('server CPU per join, budget + batches'), value: ours.cpuMsPerJoin, unit: 'ms', reference: { what: 'reference', value: ref.cpuMsPerJoin }, serverCpu: ours.cpuMsPerJoin * BURST_JOINS / 1000, note: timing(ours) })
  }
}
