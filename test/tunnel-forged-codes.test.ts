/**
 * Codes a relay can forge never stop an encrypted tunnel for good: a stream's error frame and the
 * server's dial hints are not authenticated, so a tunnel whose connection ends with E_KILLED,
 * E_DENIED or E_ABORTED from the wire, or whose redial hears "legacy peer" from the server, asks
 * again and comes back up (a kill or a denial said by the peer inside the connection still stops
 * it: test/tunnel-recovery.test.ts).
 */
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createIdentity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { forward } from '../client/sock/tunnel.node.ts'
import { SendStream, type ReceiveStream } from '../client/stream.ts'
import type { StarsockError } from '../shared/errors.ts'
import { useAgents } from './helpers/agents.ts'
import { expectBytes } from './helpers/bytes.ts'
import { testBytes, waitFor } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip } from './helpers/sockets.ts'

interface Internals { streams: { receiving: Map<string, ReceiveStream> }, link: { request: (...a: unknown[]) => Promise<unknown[]> } }

describe('codes a relay can forge do not stop an encrypted tunnel', () => {
  const { agent, cleanup, server } = useAgents()

  async function setup (): Promise<{ client: SockAgent, fwd: Awaited<ReturnType<typeof forward>>, closed: () => StarsockError | undefined, echoes: () => Promise<void> }> {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const targetPeer = await createPeer({ server: server().url(), identity: await createIdentity() })
    const target = createSockAgent(targetPeer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    cleanup.push({ close: async () => { await target.close(); await targetPeer.close() } })
    const client = await agent()
    const fwd = await forward(client, { peer: targetPeer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd)
    let closedWith: StarsockError | undefined
    fwd.on('close', (e) => { closedWith = e })
    expect(fwd.stats().secure).toBe(true)
    const data = testBytes(64 * 1024, 9)
    return { client, fwd, closed: () => closedWith, echoes: async () => { expectBytes(await tcpRoundTrip(fwd.address.port, data), data, 'the echo through the tunnel') } }
  }
  /** The relay ends the dialer's incoming stream of the live connection with its own error string. */
  const forgeOnLive = (client: SockAgent, wire: string): void => {
    for (const [id, s] of (client.peer as unknown as Internals).streams.receiving) if (id.endsWith('.listener')) s.finish(wire)
  }
  /** The tunnel is up again (after at least one drop) and carries bytes. */
  async function recovered (t: Awaited<ReturnType<typeof setup>>): Promise<void> {
    await waitFor('the tunnel to be up again', () => t.fwd.state === 'up' && t.fwd.stats().secure === true, 15_000)
    await t.echoes()
    expect(t.closed()).toBeUndefined()
  }

  it('a forged E_KILLED in the error frame of the live connection', async () => {
    const t = await setup()
    forgeOnLive(t.client, 'Mapping killed by the relay [E_KILLED]')
    await waitFor('the tunnel to notice', () => t.fwd.state !== 'up' || t.closed() !== undefined, 5000).catch(() => {})
    await recovered(t)
  })

  it('a forged E_DENIED on the live connection, and a local client connecting while the tunnel is away', async () => {
    const t = await setup()
    forgeOnLive(t.client, 'Denied by the relay [E_DENIED]')
    await new Promise((resolve) => setTimeout(resolve, 30))
    const s = net.connect({ host: '127.0.0.1', port: t.fwd.address.port })
    s.on('error', () => {})
    cleanup.push({ close: () => { s.destroy() } })
    await recovered(t)
  })

  it('a forged abort [E_ABORTED] on the send stream of a redial', async () => {
    const t = await setup()
    let armed = true
    const counts = new WeakMap<SendStream, number>()
    // The third write on a dialer's stream (after the handshake's two): as a whole buffer, or as the parts of a sealed chunk.
    const third = (stream: SendStream): void => {
      if (!stream.id.endsWith('.dialer')) return
      const n = (counts.get(stream) ?? 0) + 1
      counts.set(stream, n)
      if (n === 3 && armed) { armed = false; stream.onAbort('Aborted [E_ABORTED]') }
    }
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
    const writeOwned = SendStream.prototype.writeOwned
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
    const writeParts = SendStream.prototype.writeParts
    SendStream.prototype.writeOwned = async function (this: SendStream, ...args: Parameters<SendStream['writeOwned']>) {
      third(this)
      return await writeOwned.call(this, ...args)
    }
    SendStream.prototype.writeParts = async function (this: SendStream, ...args: Parameters<SendStream['writeParts']>) {
      third(this)
      return await writeParts.call(this, ...args)
    }
    cleanup.push({ close: () => { SendStream.prototype.writeOwned = writeOwned; SendStream.prototype.writeParts = writeParts } })
    forgeOnLive(t.client, 'gone [E_STREAM_ABORTED]') // a drop: the tunnel redials
    await waitFor('the forged abort', () => !armed, 10_000)
    await recovered(t)
  })

  it('the server saying the target is a legacy peer on a redial (dial hint starsock: false)', async () => {
    const t = await setup()
    const link = (t.client.peer as unknown as Internals).link
    const request = link.request.bind(link)
    let lies = 0
    link.request = async (...args: unknown[]) => {
      const reply = await request(...args)
      if (args[0] === 'ss-dial' && lies === 0) { lies++; return [null, { starsock: false }] }
      return reply
    }
    forgeOnLive(t.client, 'gone [E_STREAM_ABORTED]')
    await waitFor('the lie', () => lies === 1, 10_000)
    await recovered(t)
  })
})
