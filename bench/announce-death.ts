/**
 * A node of the cluster dies (issue 18): its peers' leaves reach each survivor at once, and each
 * survivor's next peer batch holds all of them, for every one of its batch clients. One node
 * (`bench/announce-node.ts`, its own process) with `n` raw batch clients
 * (`bench/announce-raw-clients.ts`, 1,000 per worker process) takes `LEAVES` leaves from another
 * node at once. Two servers in the same run: the **reference** flushes as before the shared
 * sender (each client's copy encoded by its own emit, all in one turn: `setEncodeEach`); **ours**
 * encodes once and sends in slices. Rows: the server's peak RSS over the death (VmHWM, reset just
 * before), its longest event-loop delay (`monitorEventLoopDelay`), and the time until every
 * client had every batch event.
 */
import { rssMiB, start, type Proc } from './procs.ts'
import { formatFigure as fmt, type Row } from './rows.ts'

/** Leaves of the dead node (its 10,000 peers). */
const LEAVES = 10_000
/** Batch events they make (1000 entries each). */
const EVENTS_PER_CLIENT = Math.ceil(LEAVES / 1000)
const CLIENTS_PER_WORKER = 1000
const READY_MS = 600_000
/** How long the clients may take to get everything before the run takes what they have. */
const DELIVERY_MS = 300_000

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const parsed = async <T>(proc: Proc, prefix: string, ms: number): Promise<T> =>
  JSON.parse((await proc.next(new RegExp(`^${prefix} `), ms)).slice(prefix.length + 1)) as T

interface Done { t: number, complete: number, clients: number, bytes: number }
interface Measured { handoverMs: number, hwmMiB: number, beforeMiB: number, maxBlockMs: number, deliveredMs: number, complete: number, clients: number, mibPerClient: number }

/** One server (the reference when `encodeEach`) with `n` batch clients; the death's cost. */
async function measure (n: number, encodeEach: boolean): Promise<Measured> {
  const node = start(['bench/announce-node.ts', JSON.stringify({ announceJoinsPerSecond: 0 })])
  const workers: Proc[] = []
  try {
    const { port } = await parsed<{ port: number }>(node, 'READY', READY_MS)
    node.send(`encode-each ${encodeEach ? 'on' : 'off'}`)
    await node.next(/^SET/, 60_000)
    for (let i = 0; i * CLIENTS_PER_WORKER < n; i++) {
      const w = start(['bench/announce-raw-clients.ts', JSON.stringify({ port, count: Math.min(CLIENTS_PER_WORKER, n - i * CLIENTS_PER_WORKER), tag: `w${i}` })])
      workers.push(w)
      await parsed(w, 'READY', READY_MS)
    }
    for (const w of workers) w.send('arm')
    for (const w of workers) await parsed(w, 'ARMED', READY_MS)
    await sleep(1000)
    const beforeMiB = rssMiB(node.pid)
    for (const w of workers) w.send(`expect ${EVENTS_PER_CLIENT}`)
    await sleep(200)
    node.send(`death ${LEAVES}`)
    const { t0, handoverMs } = await parsed<{ t0: number, handoverMs: number }>(node, 'DIED', 60_000)
    const done: Done[] = []
    for (const w of workers) {
      done.push(await parsed<Done>(w, 'DONE', DELIVERY_MS).catch(async () => { w.send('report'); return await parsed<Done>(w, 'DONE', 60_000) }))
    }
    await sleep(500)
    node.send('stats')
    const stats = await parsed<{ maxBlockMs: number, hwmMiB: number }>(node, 'STATS', 60_000)
    const complete = done.reduce((s, d) => s + d.complete, 0)
    const bytes = done.reduce((s, d) => s + d.bytes, 0)
    return { handoverMs, hwmMiB: stats.hwmMiB, beforeMiB, maxBlockMs: stats.maxBlockMs, deliveredMs: Math.max(...done.map((d) => d.t)) - t0, complete, clients: n, mibPerClient: bytes / Math.max(1, complete) / 1024 / 1024 }
  } finally {
    for (const w of workers) { w.send('stop'); await w.stop() }
    node.send('stop')
    await node.stop()
  }
}

/** The node-death scenario: for each number of batch clients, the reference and ours, side by side. */
export async function announceDeathBench (o: { clients: number[], record: (row: Row) => void }): Promise<void> {
  for (const n of o.clients) {
    const ref = await measure(n, true)
    const ours = await measure(n, false)
    const what = (s: string): string => `${s}, a node dies: ${LEAVES} leaves to ${n} batch clients`
    const note = (m: Measured): string => `${m.complete} of ${m.clients} clients got all ${EVENTS_PER_CLIENT} events (${fmt(m.mibPerClient)} MiB each); RSS before ${fmt(m.beforeMiB)} MiB`
    o.record({ group: 'announce', what: what('server peak RSS, each copy encoded (reference)'), value: ref.hwmMiB, unit: 'MiB', note: note(ref) })
    o.record({ group: 'announce', what: what('server peak RSS, encoded once, sliced'), value: ours.hwmMiB, unit: 'MiB', reference: { what: 'each copy encoded', value: ref.hwmMiB }, note: note(ours) })
    o.record({ group: 'announce', what: what('longest event-loop block, reference'), value: ref.maxBlockMs, unit: 'ms' })
    o.record({ group: 'announce', what: what('longest event-loop block, ours'), value: ours.maxBlockMs, unit: 'ms', reference: { what: 'reference', value: ref.maxBlockMs }, note: `of which the handover of the ${LEAVES} leaves itself (one turn, before any batch): ${fmt(ours.handoverMs)} ms (reference ${fmt(ref.handoverMs)} ms)` })
    o.record({ group: 'announce', what: what('every client had the batch after, reference'), value: ref.deliveredMs / 1000, unit: 's' })
    o.record({ group: 'announce', what: what('every client had the batch after, ours'), value: ours.deliveredMs / 1000, unit: 's', reference: { what: 'reference', value: ref.deliveredMs / 1000 } })
  }
}
