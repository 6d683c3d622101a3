/**
 * The copies figures of the tunnel path: bytes copied per byte of tunnel payload on the
 * forwarding peer and on the target peer of an encrypted (the default) or a plaintext `forward`,
 * each counted in its own process by `bench/copy-meter.ts` (and the cipher's output by
 * `bench/seal-meter.ts`) while `bytes` go through one `forward` connection (after a warm-up).
 * Only one direction carries payload (the sink's answer is 8 bytes). The meter slows the peers
 * down, so these peers are their own processes, apart from the ones the throughput rows time.
 */
import { freePort, ready, servingWorker, startOurs, type Proc } from './procs.ts'
import { formatFigure as fmt, type Row } from './rows.ts'
import { sampleCpu, stealShare } from './steal.ts'

const MiB = 1024 * 1024
/** Bytes through the forward before the copies are counted (warm code paths, settled batching). */
const COPIES_WARMUP_BYTES = 8 * MiB
/** How long one run may take. */
const RUN_LIMIT_MS = 180_000
/** How long a peer may take to answer `copies`. */
const ANSWER_TIMEOUT_MS = 30_000
/** The rows' scenario, also when the tunnel scenario measures them: `--only=copies` then replaces them alone. */
const SCENARIO = 'copies'

/**
 * Bytes copied on one side of the tunnel, by where, as copies per payload byte: ours (`client/`,
 * `shared/`), the dependencies', and on an encrypted connection the cipher's output (sealing or
 * opening writes every byte once more, by nature; `bench/seal-meter.ts`) as a row of its own.
 */
function copyRows (group: string, side: string, copies: Record<string, number>, payload: number, steal: number, encrypted: boolean, record: (row: Row) => void): void {
  const entries = Object.entries(copies)
  const isCipher = (where: string): boolean => where.startsWith('cipher output')
  const isOurs = (where: string): boolean => /^(client|shared)\//.test(where)
  const sum = (list: Array<[string, number]>): number => list.reduce((s, [, n]) => s + n, 0)
  const cipher = entries.filter(([w]) => isCipher(w))
  const ours = entries.filter(([w]) => !isCipher(w) && isOurs(w))
  const theirs = entries.filter(([w]) => !isCipher(w) && !isOurs(w))
  const detail = (list: Array<[string, number]>): string => list.filter(([, n]) => n / payload >= 0.005).map(([w, n]) => `${w} ${fmt(n / payload)}`).join(', ')
  record({ scenario: SCENARIO, group, what: `${side}, starsock code`, value: sum(ours) / payload, unit: 'per byte', steal, note: detail(ours) || 'none' })
  record({ scenario: SCENARIO, group, what: `${side}, dependencies`, value: sum(theirs) / payload, unit: 'per byte', steal, note: detail(theirs) || 'none' })
  if (encrypted || cipher.length > 0) record({ scenario: SCENARIO, group, what: `${side}, cipher output`, value: sum(cipher) / payload, unit: 'per byte', steal, note: `${detail(cipher) || 'none seen (a cipher outside node:crypto?)'}: encryption writes every byte once more, by nature` })
}

/**
 * Measure and record the copies rows (in `group`) of an encrypted `forward` (the default) and then
 * of a plaintext one (both peers `--insecure`), or of only one with `insecure` given; every row says
 * which. A variant that fails is a row that says why (the other is still measured). Every process
 * started is stopped by its pid before it settles.
 */
export async function copiesBench ({ bytes, group, record, insecure }: { bytes: number, group: string, record: (row: Row) => void, insecure?: boolean }): Promise<void> {
  for (const variant of insecure === undefined ? [false, true] : [insecure]) {
    try {
      await copiesOf({ bytes, group, record, insecure: variant })
    } catch (err) {
      record({ scenario: SCENARIO, group, what: `copies, ${variant ? 'plaintext' : 'encrypted'}`, value: NaN, unit: '', note: `could not measure: ${String((err as Error)?.message ?? err).split('\n')[0]?.slice(0, 160) ?? ''}` })
    }
  }
}

/** The copies rows of one variant. */
async function copiesOf ({ bytes, group, record, insecure }: { bytes: number, group: string, record: (row: Row) => void, insecure: boolean }): Promise<void> {
  const stops: Array<() => Promise<void>> = []
  try {
    const server = await startOurs()
    stops.push(server.proc.stop)
    const sinkPort = await freePort()
    const target = await ready<{ peerId: string }>('tunnelTarget', { url: server.url, sinkPort, meter: true, insecure })
    stops.push(target.proc.stop)
    const client = await ready<{ port: number }>('tunnelClient', { url: server.url, target: target.info.peerId, sinkPort, meter: true, insecure })
    stops.push(client.proc.stop)
    const ends = await servingWorker()
    stops.push(ends.stop)
    const copies = async (proc: Proc): Promise<{ copies: Record<string, number>, messages: { messages: number, bytes: number } }> => {
      proc.send('copies')
      return JSON.parse((await proc.next(/^COPIES /, ANSWER_TIMEOUT_MS)).slice(7)) as { copies: Record<string, number>, messages: { messages: number, bytes: number } }
    }
    await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes: COPIES_WARMUP_BYTES, streams: 1 }, RUN_LIMIT_MS)
    await copies(client.proc)
    await copies(target.proc)
    const s0 = sampleCpu()
    await ends.run('tunnelBytes', { port: client.info.port, sinkPort, bytes, streams: 1 }, RUN_LIMIT_MS)
    const steal = stealShare(s0, sampleCpu())
    const label = `1 connection, ${bytes / MiB} MiB`
    const encrypted = !insecure
    const near = await copies(client.proc)
    // The variant is part of each side's name: `forwarding peer (encrypted: sealing)`.
    copyRows(group, `copies, forwarding peer (${encrypted ? 'encrypted: sealing' : 'plaintext: --insecure'}), ${label}`, near.copies, bytes, steal, encrypted, record)
    copyRows(group, `copies, target peer (${encrypted ? 'encrypted: opening' : 'plaintext: --insecure'}), ${label}`, (await copies(target.proc)).copies, bytes, steal, encrypted, record)
    const m = near.messages
    record({ scenario: SCENARIO, group, what: `stream messages sent by the forwarding peer, ${encrypted ? 'encrypted' : 'plaintext'}, ${label}`, value: m.messages, unit: 'msgs', steal, note: `${fmt(m.bytes / Math.max(1, m.messages) / 1024)} KiB on average` })
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}
