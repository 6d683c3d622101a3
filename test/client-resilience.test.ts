import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createServer } from '../server/server.ts'
import { legacyDial, legacyExchange, pull, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { echo, readAll } from './helpers/connections.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'

const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

async function peerOn (url: string, options: Parameters<typeof createPeer>[0] extends infer O ? Partial<O> : never = {}): Promise<StarsockPeer> {
  const p = await createPeer({ server: url, ...options })
  stops.push(async () => await p.close())
  return p
}

describe('the client with the published legacy client', () => {
  it('a legacy peer dials a starsock peer, and a starsock peer dials a legacy peer', async () => {
    const server = await startServer()
    stops.push(async () => await server.close())
    const ours = await peerOn(server.url())
    ours.handle(echo)
    const legacy: LegacyPeer = await startLegacyPeer(server.port, (conn: unknown) => { pull(conn, conn) })
    stops.push(() => legacy.stop())

    await waitFor('the legacy peer to hear of ours', () => legacy.discovered.has(ours.addr))
    const data = testBytes(1024 * 1024)
    const conn = await within('legacy dial', legacyDial(legacy, ours.addr))
    expectBytes(await within('legacy -> ours -> legacy', legacyExchange(conn, data), 15_000), data, 'legacy -> ours -> legacy')

    await waitFor('ours to know the legacy peer', () => ours.peers().some((p) => p.addr === legacy.addr))
    const out = await ours.dial(legacy.id, { secure: false }) // a legacy peer speaks no Noise
    expect(out.secure).toBe(false)
    expect(out.stats().creditBytes).toBeUndefined() // no credit from a legacy receiver
    const back = readAll(out)
    await out.write(data)
    await out.closeWrite()
    expectBytes(await within('ours -> legacy -> ours', back, 15_000), data, 'ours -> legacy -> ours')
  })
})

describe('the client when things break', () => {
  it('rejoins after a server restart: cut streams fail on both ends, dials fail fast meanwhile, new dials work', async () => {
    const first = await startServer()
    const port = first.port
    const url = first.url()
    const a = await peerOn(url, { reconnectDelayMs: 100, reconnectDelayMaxMs: 300 })
    const b = await peerOn(url, { reconnectDelayMs: 100, reconnectDelayMaxMs: 300 })
    let incoming: Connection | undefined
    b.handle((conn) => { incoming = conn })
    const conn = await a.dial(b.peerId)
    await conn.write(testBytes(1000))
    await waitFor('the incoming connection', () => incoming !== undefined)

    const states: string[] = []
    a.on('state', (s) => states.push(s))
    await first.close()
    await expect(within('A read to fail', conn.read())).rejects.toMatchObject({ code: expect.stringMatching(/E_SHUTDOWN|E_DISCONNECTED/) })
    const reading = (async () => { for (;;) if (await (incoming as Connection).read() === null) return 'clean end' })()
    await expect(within('B read to fail', reading)).rejects.toMatchObject({ code: expect.stringMatching(/E_SHUTDOWN|E_DISCONNECTED/) })
    await waitFor('A to be reconnecting', () => a.state === 'reconnecting')
    await expect(a.dial(b.peerId)).rejects.toMatchObject({ code: 'E_DISCONNECTED' })

    const second = createServer({ shutdownGraceMs: 0 })
    await second.listen(port, '127.0.0.1')
    stops.push(async () => await second.close())
    await waitFor('A and B to rejoin', () => a.state === 'joined' && b.state === 'joined', 10_000)
    expect(states).toEqual(['reconnecting', 'joined'])
    b.handle(echo)
    await waitFor('A to know B again', () => a.peers().some((p) => p.peerId === b.peerId))
    const again = await a.dial(b.peerId)
    const back = readAll(again)
    await again.write(testBytes(50_000))
    await again.closeWrite()
    expectBytes(await within('the echo after the rejoin', back), testBytes(50_000), 'the echo after the rejoin')
  })

  it('notices a server that stops answering within seconds (heartbeats)', async () => {
    const bin = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))
    const child: ChildProcess = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'silent'])
    stops.push(() => { child.kill('SIGKILL') })
    const url = await within('the server URL', new Promise<string>((resolve) => {
      let out = ''
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /^starsock (http:\/\/\S+) /m.exec(out)
        if (m?.[1] !== undefined) resolve(m[1])
      })
    }), 15_000)
    const a = await peerOn(url, { heartbeatIntervalMs: 300, heartbeatTimeoutMs: 300 })
    child.kill('SIGSTOP') // the process is there, its sockets open, and it answers nothing
    const started = Date.now()
    await waitFor('A to notice the silent server', () => a.state === 'reconnecting', 5000)
    expect(Date.now() - started).toBeLessThan(3000)
  })

  it('fails the read of the other side when a peer process is killed mid-transfer', async () => {
    const server = await startServer()
    stops.push(async () => await server.close())
    const b = await peerOn(server.url())
    let incoming: Connection | undefined
    b.handle((conn) => { incoming = conn })
    const fixture = fileURLToPath(new URL('./fixtures/sending-peer.ts', import.meta.url))
    const child = spawn(process.execPath, ['--conditions=starsock-source', '--import', 'tsx', fixture, server.url(), b.peerId], { stdio: ['ignore', 'pipe', 'inherit'] })
    stops.push(() => { child.kill('SIGKILL') })
    await within('the sender to start', new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('sending')) resolve() })), 15_000)
    await waitFor('the incoming connection', () => incoming !== undefined)
    const conn = incoming as Connection
    let received = 0
    const reading = (async () => {
      for (;;) {
        const chunk = await conn.read()
        if (chunk === null) return 'clean end'
        received += chunk.byteLength
      }
    })()
    await waitFor('bytes to flow', () => received > 0)
    child.kill('SIGKILL')
    await expect(within('the read to fail', reading, 10_000)).rejects.toMatchObject({ code: 'E_PEER_GONE' })
  })
})
