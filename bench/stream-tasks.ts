/**
 * Worker tasks (run by `bench/worker.ts`) for one stream between two starsock peers, each in its
 * own process, so each side's CPU time and profile are its own (`bench/secure-profile.ts`); the
 * `throughput` scenario runs both peers in one worker instead.
 */
import { createInterface } from 'node:readline'
import { createPeer } from '../client/peer.ts'

/** Write chunks of the `throughput` scenario's size (`throughputOurs`). */
const CHUNK_BYTES = 256 * 1024

/** Lines from stdin, one at a time, until `stop` (or the end). */
async function * commands (): AsyncGenerator<string> {
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stop') return
    yield line
  }
}

/**
 * The receiving peer, encrypted unless `secure` is false: counts the bytes of every connection
 * (failing one that is not what was asked). Prints `READY {"peerId"}`; on a line `until N` prints
 * `GOT {"bytes"}` once N bytes in all came since it started (a count from the start, so bytes that
 * come before the line cannot move the mark); on `count`, `COUNT {"bytes"}`; exits on `stop`.
 */
export async function streamSink (a: { url: string, secure?: boolean }): Promise<void> {
  const secure = a.secure !== false
  const peer = await createPeer({ server: a.url, secure })
  let received = 0
  let waiter: { until: number, resolve: () => void } | undefined
  peer.handle((conn) => {
    if (conn.secure !== secure) {
      conn.abort(new Error(`asked for ${secure ? 'encrypted' : 'plaintext'} connections, got secure: ${String(conn.secure)}`))
      process.stderr.write(`streamSink: a connection with secure: ${String(conn.secure)}\n`)
      return
    }
    (async () => {
      for await (const chunk of conn) {
        received += chunk.byteLength
        if (waiter !== undefined && received >= waiter.until) waiter.resolve()
      }
    })().catch(() => {})
  })
  process.stdout.write(`READY ${JSON.stringify({ peerId: peer.peerId })}\n`)
  for await (const line of commands()) {
    if (line === 'count') process.stdout.write(`COUNT ${JSON.stringify({ bytes: received })}\n`)
    const n = /^until (\d+)$/.exec(line)?.[1]
    if (n === undefined) continue
    const until = Number(n)
    if (received < until) await new Promise<void>((resolve) => { waiter = { until, resolve } })
    waiter = undefined
    process.stdout.write(`GOT ${JSON.stringify({ bytes: received })}\n`)
  }
  await peer.close()
  process.exit(0)
}

/**
 * The sending peer: dials `target` once (encrypted unless `secure` is false; fails unless the
 * connection is what was asked). Prints `READY {"secure"}`; on a line `send N` writes N bytes on
 * that one stream and prints `SENT {}`; exits on `stop`.
 */
export async function streamSource (a: { url: string, target: string, secure?: boolean }): Promise<void> {
  const secure = a.secure !== false
  const peer = await createPeer({ server: a.url, secure })
  const conn = await peer.dial(a.target)
  if (conn.secure !== secure) throw new Error(`asked for ${secure ? 'an encrypted' : 'a plaintext'} connection, got secure: ${String(conn.secure)}`)
  const chunk = new Uint8Array(CHUNK_BYTES).fill(7)
  process.stdout.write(`READY ${JSON.stringify({ secure: conn.secure })}\n`)
  for await (const line of commands()) {
    const n = /^send (\d+)$/.exec(line)?.[1]
    if (n === undefined) continue
    for (let sent = 0; sent < Number(n); sent += chunk.byteLength) await conn.write(chunk)
    process.stdout.write('SENT {}\n')
  }
  await conn.closeWrite()
  await peer.close()
  process.exit(0)
}
