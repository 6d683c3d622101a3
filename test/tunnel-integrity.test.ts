/**
 * A broken tunnel must look broken (issue 11, section 1): raw TCP streams of known length (no
 * framing above TCP, so only the transport tells a cut from a complete transfer) through real
 * `starsock serve`, `listen` and `forward` processes killed by real signals.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { peerIdOf, Programs, type Program } from './helpers/programs.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { wasReset, watch, type Outcome } from './helpers/tcp-watch.ts'

/** Bytes each transfer sends: far more than every buffer and window on the way holds. */
const TOTAL_BYTES = 64 * 1024 * 1024
/** A transfer is paused (and the process killed) once this much arrived. */
const PAUSE_AT_BYTES = 1024 * 1024
/** Bytes a resetting application writes before its reset: more than the tunnel takes at once. */
const RESET_BYTES = 8 * 1024 * 1024
const BLOCK = Buffer.from(testBytes(64 * 1024, 7))

/** Write `total` bytes of the test pattern with backpressure, then FIN; settles with the hash of what was written, or the write error code. */
async function sendPattern (socket: net.Socket, total: number): Promise<{ sha256: string, error?: string }> {
  const hash = createHash('sha256')
  return await new Promise((resolve) => {
    let sent = 0
    let failed: string | undefined
    socket.on('error', (err: NodeJS.ErrnoException) => { failed ??= err.code ?? err.message; resolve({ sha256: '', error: failed }) })
    const pump = (): void => {
      while (sent < total && failed === undefined) {
        const chunk = BLOCK.subarray(0, Math.min(BLOCK.byteLength, total - sent))
        sent += chunk.byteLength
        hash.update(chunk)
        if (!socket.write(chunk)) return void socket.once('drain', pump)
      }
      if (failed === undefined) socket.end(() => resolve({ sha256: hash.digest('hex') }))
    }
    pump()
  })
}

/** A raw TCP service on 127.0.0.1; `onSocket` runs for each connection. Tracks its sockets to close them. */
async function tcpService (onSocket: (socket: net.Socket) => void): Promise<{ port: number, close: () => void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    onSocket(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, close: () => { server.close(); for (const s of sockets) s.destroy() } }
}

/** Connect to 127.0.0.1:`port`. */
function connect (port: number): net.Socket {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  socket.on('error', () => {}) // watched by `watch`/`sendPattern`
  return socket
}

describe('a broken tunnel looks broken: resets, never a clean end (real processes, real signals)', () => {
  const programs = new Programs()
  const cleanup: Array<() => void> = []
  let dir: string

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-integrity-')) })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) c()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A server, a `listen` allowing connect to `targetPort`, and a `forward` to it; settles with the forward's local port. */
  async function tunnel (targetPort: number, serveArgs: string[] = []): Promise<{ serve: Program, listen: Program, forward: Program, port: number }> {
    const { program: serve, url } = await programs.serve(0, serveArgs)
    const listenerId = peerIdOf(join(dir, 'listener'))
    const listen = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--allow', `connect/tcp:127.0.0.1:${targetPort}`, '--no-prompt', '--json'])
    await listen.event('ready')
    const forward = programs.start(['forward', '--server', url, '--key', join(dir, 'client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${targetPort}`, '--json'])
    const ready = await forward.event('ready')
    return { serve, listen, forward, port: (ready.address as { port: number }).port }
  }

  /** A service that sends `sizes[i]` bytes (TOTAL_BYTES past the list) to its i-th connection, then a FIN; `sent` settles with how each send ended. */
  async function source (sizes: number[] = []): Promise<{ port: number, sent: Array<Promise<{ sha256: string, error?: string }>> }> {
    const sent: Array<Promise<{ sha256: string, error?: string }>> = []
    const service = await tcpService((socket) => { socket.resume(); sent.push(sendPattern(socket, sizes[sent.length] ?? TOTAL_BYTES)) })
    cleanup.push(service.close)
    return { port: service.port, sent }
  }

  /**
   * Download through the forward until PAUSE_AT_BYTES arrived, then `kill` and wait for `gone`
   * with the reader still paused (so the transfer is in flight when the tunnel breaks), then read
   * on; settles with how the connection ended.
   */
  async function downloadAndKill (port: number, kill: () => void, gone: Promise<unknown>): Promise<Outcome> {
    const w = watch(connect(port), PAUSE_AT_BYTES)
    await within(`${PAUSE_AT_BYTES} bytes through the forward`, w.paused, 20_000)
    kill()
    await within('the signalled process to exit', gone, 15_000)
    w.resume()
    return await within('the downloading connection to close after the kill', w.outcome, 20_000)
  }

  /** The tunnel broke: the application saw a reset, not a clean end, and not every byte. */
  function expectReset (outcome: Outcome): void {
    expect(wasReset(outcome), `a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    expect(outcome.bytes).toBeLessThan(TOTAL_BYTES)
  }

  it('control: a clean transfer ends with a FIN and every byte; then (c) the server killed with -9 mid-download: reset on the client and on the target side', async () => {
    const control = 4 * 1024 * 1024
    const src = await source([control])
    const { serve, port } = await tunnel(src.port)
    const clean = await within('the clean download to close', watch(connect(port)).outcome, 20_000)
    const written = await within('the service to finish sending', src.sent[0] as Promise<{ sha256: string }>, 5000)
    expect(clean).toEqual({ bytes: control, ended: true, error: undefined, afterEnd: undefined, sha256: written.sha256 })

    expectReset(await downloadAndKill(port, () => serve.proc.kill('SIGKILL'), serve.exited))
    const sent = await within('the source to see its connection fail', src.sent[1] as Promise<{ error?: string }>, 20_000)
    expect(['ECONNRESET', 'EPIPE']).toContain(sent.error)
  }, 60_000)

  it('(a) the target-side peer killed with -9 mid-download: the client sees a reset, not an end; (d) a new connection while it is offline is reset at once', async () => {
    const src = await source()
    const { listen, forward, port } = await tunnel(src.port)
    expectReset(await downloadAndKill(port, () => listen.proc.kill('SIGKILL'), listen.exited))
    await forward.event('away')
    const outcome = await within('a new connection to the forward to close', watch(connect(port)).outcome, 10_000)
    expect(wasReset(outcome), `a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    expect(outcome.bytes).toBe(0)
    expect(forward.proc.exitCode).toBe(null) // still running, waiting for the peer
  }, 60_000)

  it('(b) the forwarding peer killed with -9 mid-upload: the target service sees a reset, not an end, and fewer bytes', async () => {
    const received: Array<ReturnType<typeof watch>> = []
    const service = await tcpService((socket) => { received.push(watch(socket, PAUSE_AT_BYTES)) })
    cleanup.push(service.close)
    const { forward, port } = await tunnel(service.port)
    const uploader = connect(port)
    cleanup.push(() => uploader.destroy())
    void sendPattern(uploader, TOTAL_BYTES)
    await waitFor('the upload to reach the target service', () => received.length === 1, 20_000)
    const target = received[0] as ReturnType<typeof watch>
    await within(`${PAUSE_AT_BYTES} bytes at the target service`, target.paused, 20_000)
    forward.proc.kill('SIGKILL')
    await within('the forward to exit', forward.exited, 10_000)
    target.resume()
    expectReset(await within('the target-side connection to close after the kill', target.outcome, 20_000))
  }, 60_000)

  it('expose: the exposing peer killed with -9 mid-download: the client at the bound port (on the listening peer) gets a reset', async () => {
    const src = await source()
    const { url } = await programs.serve()
    const listenerId = peerIdOf(join(dir, 'listener'))
    const listen = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--allow', 'bind/tcp:127.0.0.1:*', '--no-prompt', '--json'])
    await listen.event('ready')
    const exp = programs.start(['expose', '--server', url, '--key', join(dir, 'client'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${src.port}`, '--json'])
    const port = ((await exp.event('ready')).address as { port: number }).port
    expectReset(await downloadAndKill(port, () => exp.proc.kill('SIGKILL'), exp.exited))
    expect(listen.proc.exitCode).toBe(null)
  }, 60_000)

  it('(c) the server stopped with SIGTERM mid-download: reset on the client and on the target side; the server exits 0', async () => {
    const src = await source()
    const { serve, port } = await tunnel(src.port, ['--shutdown-grace-ms', '300'])
    expectReset(await downloadAndKill(port, () => serve.proc.kill('SIGTERM'), serve.exited))
    const sent = await within('the source to see its connection fail', src.sent[0] as Promise<{ error?: string }>, 20_000)
    expect(['ECONNRESET', 'EPIPE']).toContain(sent.error)
    expect(await serve.exited).toBe(0)
  }, 60_000)

  /** A service that writes RESET_BYTES to each connection, then resets it (RST) 5 ms later, with most of them still unread by the tunnel. */
  async function resettingSource (): Promise<number> {
    const service = await tcpService((socket) => {
      socket.on('error', () => {})
      socket.write(Buffer.alloc(RESET_BYTES, 7))
      setTimeout(() => socket.resetAndDestroy(), 5)
    })
    cleanup.push(service.close)
    return service.port
  }

  it('the target service resets mid-download: the forward\'s client sees a reset, not a short clean end', async () => {
    const { port } = await tunnel(await resettingSource())
    for (let i = 0; i < 3; i++) {
      const outcome = await within(`download ${i} to close`, watch(connect(port)).outcome, 20_000)
      expect(wasReset(outcome), `download ${i}: a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    }
  }, 60_000)

  it('the client resets mid-upload: the target service sees a reset, not a short clean end', async () => {
    const received: Array<ReturnType<typeof watch>> = []
    const service = await tcpService((socket) => { received.push(watch(socket)) })
    cleanup.push(service.close)
    const { port } = await tunnel(service.port)
    for (let i = 0; i < 3; i++) {
      const uploader = connect(port)
      uploader.on('connect', () => { uploader.write(Buffer.alloc(RESET_BYTES, 3)); setTimeout(() => uploader.resetAndDestroy(), 5) })
      await waitFor(`upload ${i} to reach the target service`, () => received.length === i + 1, 20_000)
      const outcome = await within(`upload ${i} to close at the target`, (received[i] as ReturnType<typeof watch>).outcome, 20_000)
      expect(wasReset(outcome), `upload ${i}: a reset, got ${JSON.stringify(outcome)}`).toBe(true)
      expect(outcome.bytes).toBeLessThan(RESET_BYTES)
    }
  }, 60_000)

  it('expose: the target service resets mid-download: the client at the bound port sees a reset', async () => {
    const target = await resettingSource()
    const { url } = await programs.serve()
    const listenerId = peerIdOf(join(dir, 'listener'))
    const listen = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--allow', 'bind/tcp:127.0.0.1:*', '--no-prompt', '--json'])
    await listen.event('ready')
    const exp = programs.start(['expose', '--server', url, '--key', join(dir, 'client'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${target}`, '--json'])
    const port = ((await exp.event('ready')).address as { port: number }).port
    for (let i = 0; i < 3; i++) {
      const outcome = await within(`download ${i} to close`, watch(connect(port)).outcome, 20_000)
      expect(wasReset(outcome), `download ${i}: a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    }
  }, 60_000)
})
