/**
 * The relay carries only ciphertext (issue 14): real `starsock listen` and `forward` processes
 * joined through a recording TCP proxy in front of a real server move random bytes through a
 * forward tunnel to a real TCP sink, and the test looks for samples of those bytes in what the
 * proxy saw, both ways. The same run with `--insecure` on both sides is the control: there the
 * samples must show (at least server → client: a WebSocket client masks what it sends, unless its
 * mask is zero), or the search proves nothing.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { forward } from '../client/sock/tunnel.node.ts'
import type { StarsockServer } from '../server/server.ts'
import { expectBytes } from './helpers/bytes.ts'
import { peerIdOf, Programs } from './helpers/programs.ts'
import { recordingProxy, samplesFound, type RecordingProxy } from './helpers/recording-proxy.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { udpClient, udpEcho, type Closable } from './helpers/sockets.ts'

/** Bytes sent through the tunnel: many windows and stream chunks. */
const DATA_BYTES = 4 * 1024 * 1024
const SAMPLES = 100
const SAMPLE_BYTES = 32
/** What the control must find at least, server → client (a sample may straddle a frame header). */
const CONTROL_MIN_FOUND = 90

/** `n` samples of `bytes` at random offsets. */
function samplesOf (bytes: Uint8Array, n = SAMPLES): Uint8Array[] {
  return Array.from({ length: n }, () => {
    const at = randomInt(0, bytes.byteLength - SAMPLE_BYTES)
    return bytes.subarray(at, at + SAMPLE_BYTES)
  })
}

/** A TCP sink on 127.0.0.1: `next()` settles with all a connection sent once it ended cleanly (rejects on a reset). */
async function tcpSink (): Promise<{ port: number, next: () => Promise<Buffer>, close: () => void }> {
  const waiting: Array<{ resolve: (b: Buffer) => void, reject: (e: Error) => void }> = []
  const done: Array<Promise<Buffer>> = []
  const server = net.createServer((socket) => {
    const chunks: Buffer[] = []
    done.push(new Promise((resolve, reject) => {
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.on('end', () => { resolve(Buffer.concat(chunks)); socket.end() })
      socket.on('error', reject)
    }))
    const w = waiting.shift()
    if (w !== undefined) (done.shift() as Promise<Buffer>).then(w.resolve, w.reject)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    next: async () => {
      const d = done.shift()
      if (d !== undefined) return await d
      return await new Promise((resolve, reject) => waiting.push({ resolve, reject }))
    },
    close: () => { server.close() }
  }
}

/** Write `data` to 127.0.0.1:`port`, then a FIN. */
async function sendAll (port: number, data: Uint8Array): Promise<void> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.end(data, () => resolve())
  })
}

describe('what the relay sees of a forward tunnel between two starsock CLI peers', () => {
  let server: StarsockServer & { port: number }
  let recording: RecordingProxy
  let proxyUrl: string
  let dir: string
  let programs: Programs
  const cleanup: Closable[] = []

  beforeEach(async () => {
    server = await startServer()
    recording = await recordingProxy(server.port)
    cleanup.push(recording)
    proxyUrl = recording.url
    dir = mkdtempSync(join(tmpdir(), 'starsock-privacy-'))
    programs = new Programs()
  })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** `listen` and `forward` through the proxy (both `--insecure` or neither); 4 MiB of random bytes through the forward to a sink. */
  async function transfer (insecure: boolean): Promise<{ data: Buffer, listenReady: Record<string, unknown>, forwardReady: Record<string, unknown>, session: Record<string, unknown>, err: () => string }> {
    const sink = await tcpSink()
    cleanup.push(sink)
    const flag = insecure ? ['--insecure'] : []
    const listenerId = peerIdOf(join(dir, 'listener'))
    const listen = programs.start(['listen', '--server', proxyUrl, '--key', join(dir, 'listener'), '--allow', `connect/tcp:127.0.0.1:${sink.port}`, '--no-prompt', '--json', ...flag])
    const listenReady = await listen.event('ready', 20_000)
    const fwd = programs.start(['forward', '--server', proxyUrl, '--key', join(dir, 'client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${sink.port}`, '--json', ...flag])
    const forwardReady = await fwd.event('ready', 20_000)
    const session = await listen.event('session')
    const data = randomBytes(DATA_BYTES)
    await within('the bytes to be written into the forward', sendAll((forwardReady.address as { port: number }).port, data), 60_000)
    expectBytes(await within('every byte at the sink, then its end', sink.next(), 60_000), data, 'the bytes at the sink')
    expect(await fwd.stop()).toBe(0)
    expect(await listen.stop()).toBe(0)
    return { data, listenReady, forwardReady, session, err: () => listen.err() + fwd.err() }
  }

  it('end-to-end encrypted by default: 4 MiB of random bytes arrive exact, none of 100 32-byte samples crosses the relay either way, and both sides say so', async () => {
    const { data, listenReady, forwardReady, session, err } = await transfer(false)
    expect(forwardReady.secure).toBe(true)
    expect(session).toMatchObject({ secure: true, initiator: false })
    expect(listenReady.insecure).toBe(false)
    expect(err()).not.toContain('--insecure')
    expect(recording.toClient().byteLength, 'bytes the relay sent to clients').toBeGreaterThan(DATA_BYTES)
    const samples = samplesOf(data)
    expect(samplesFound(recording.toClient(), samples), 'samples in what the relay sent (server → client)').toBe(0)
    expect(samplesFound(recording.toServer(), samples), 'samples in what the relay read (client → server, unmasked)').toBe(0)
  }, 120_000)

  it('control: the same with --insecure on both sides carries the samples in the clear, so the search above finds what is there; both warn', async () => {
    const { data, forwardReady, session, err } = await transfer(true)
    expect(forwardReady.secure).toBe(false)
    expect(session).toMatchObject({ secure: false })
    expect(err().match(/^starsock: warning: --insecure: .*peer ids are unverified/gm)).toHaveLength(2)
    const samples = samplesOf(data)
    expect(samplesFound(recording.toClient(), samples), 'samples in what the relay sent (server → client) in plaintext').toBeGreaterThanOrEqual(CONTROL_MIN_FOUND)
    expect(samplesFound(recording.toServer(), samples), 'samples in what the relay read (client → server, unmasked) in plaintext').toBeGreaterThanOrEqual(CONTROL_MIN_FOUND)
  }, 120_000)

  it('an --insecure forward against a listen without it: refused with E_SECURE_REQUIRED on both sides; the forward exits 1 with one line, the listen says so and goes on', async () => {
    const sink = await tcpSink()
    cleanup.push(sink)
    const listenerId = peerIdOf(join(dir, 'listener'))
    const listen = programs.start(['listen', '--server', proxyUrl, '--key', join(dir, 'listener'), '--allow', `connect/tcp:127.0.0.1:${sink.port}`, '--no-prompt', '--json'])
    await listen.event('ready', 20_000)
    const fwd = programs.start(['forward', '--server', proxyUrl, '--key', join(dir, 'client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${sink.port}`, '--insecure'])
    expect(await within('the plaintext forward to exit', fwd.exited, 30_000)).toBe(1)
    const lines = fwd.err().trim().split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^starsock: warning: --insecure: /)
    expect(lines[1]).toMatch(/^starsock: .*not end-to-end encrypted; both sides must use --insecure to allow plaintext.* \(E_SECURE_REQUIRED\)$/)
    const refused = await listen.event('refused')
    expect(refused).toMatchObject({ code: 'E_SECURE_REQUIRED', initiator: false })
    expect(String(refused.message)).toContain('both sides must use --insecure to allow plaintext')
    expect(listen.proc.exitCode).toBe(null)
    // Nothing was offered, nothing reached the sink; the listen still serves a secure forward.
    expect(listen.out()).not.toContain('"event":"offer"')
    const ok = programs.start(['forward', '--server', proxyUrl, '--key', join(dir, 'client2'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${sink.port}`, '--json'])
    const ready = await ok.event('ready', 20_000)
    expect(ready.secure).toBe(true)
    const data = randomBytes(64 * 1024)
    await sendAll((ready.address as { port: number }).port, data)
    expectBytes(await within('the bytes of the secure forward at the sink', sink.next(), 20_000), data, 'the bytes of the secure forward')
  }, 90_000)

  it('a UDP forward through the secure channel keeps datagram boundaries, drops and counts what does not fit the window, and its payload never crosses the relay in the clear', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const target = createSockAgent(await createPeer({ server: proxyUrl }), { host: createNodeHost(), allow: [`connect/udp:127.0.0.1:${echo.port}`], mux: { windowBytes: 32 * 1024 } })
    cleanup.push({ close: async () => { await target.close(); await target.peer.close() } })
    const client = createSockAgent(await createPeer({ server: proxyUrl }), { host: createNodeHost(), mux: { windowBytes: 32 * 1024 } })
    cleanup.push({ close: async () => { await client.close(); await client.peer.close() } })
    const fwd = await forward(client, { peer: target.peer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd)
    expect(fwd.stats().secure).toBe(true)
    expect(target.sessions()).toMatchObject([{ peerId: client.peer.peerId, secure: true, initiator: false }])
    const c = await udpClient()
    cleanup.push(c)
    const payload = randomBytes(8000)
    c.socket.send(payload, fwd.address.port, '127.0.0.1')
    await waitFor('the first echo', () => c.got.length === 1, 10_000)
    for (let i = 0; i < 2000; i++) c.socket.send(payload, fwd.address.port, '127.0.0.1')
    await waitFor('datagrams that did not fit to be dropped and counted', () => fwd.stats().droppedDatagrams > 0, 15_000)
    let [count, since] = [c.got.length, Date.now()]
    await waitFor('the echoes to stop coming for 300 ms', () => {
      if (c.got.length !== count) [count, since] = [c.got.length, Date.now()]
      return Date.now() - since > 300
    }, 20_000)
    const s = fwd.stats()
    expect(s.droppedDatagrams, `drops by cause: ${JSON.stringify(s.droppedBy)}`).toBe(Object.values(s.droppedBy).reduce((a, b) => a + b, 0))
    expect(c.got.length).toBeGreaterThan(1)
    for (const [i, d] of c.got.entries()) expectBytes(d, payload, `echo ${i}`)
    expect(samplesFound(recording.toClient(), samplesOf(payload)), 'samples of the datagrams in what the relay sent').toBe(0)
    expect(samplesFound(recording.toServer(), samplesOf(payload)), 'samples of the datagrams in what the relay read').toBe(0)
  }, 60_000)
})
