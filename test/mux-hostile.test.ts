/**
 * A hostile peer's channel frames against a real agent through a real server (hand-written frames,
 * `test/helpers/raw-mux.ts`): a datagram whose source address is not a host fails that connection
 * with a protocol error and never the process, and one-byte DATA payloads padded with large frames
 * (for no channel, or for another channel that is read at once) do not make a slow channel keep far
 * more memory than its window counts.
 */
import net from 'node:net'
import v8 from 'node:v8'
import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { expose } from '../client/sock/tunnel.node.ts'
import type { StarsockError } from '../shared/errors.ts'
import { decodeDatagram, encodeDatagramFrame, encodeFrame, encodeOpenFrame, FRAME, FrameDecoder, type Frame } from '../shared/mux-frame.ts'
import { useAgents } from './helpers/agents.ts'
import { dialRaw, rawMux, type RawMux } from './helpers/raw-mux.ts'
import { waitFor, within } from './helpers/server.ts'
import { udpEcho } from './helpers/sockets.ts'

const KiB = 1024
const MiB = 1024 * KiB

/** A DATAGRAM frame's payload with `ip` as raw address bytes (what a well-behaved peer never sends). */
function datagramPayload (ip: Uint8Array, port: number, data: Uint8Array): Uint8Array {
  const payload = new Uint8Array(3 + ip.byteLength + data.byteLength)
  payload[0] = ip.byteLength
  payload.set(ip, 1)
  new DataView(payload.buffer).setUint16(1 + ip.byteLength, port)
  payload.set(data, 3 + ip.byteLength)
  return payload
}

/** The one frame `bytes` holds. */
function only (bytes: Uint8Array): Frame {
  return new FrameDecoder().push(bytes)[0] as Frame
}

describe('DATAGRAM addresses', () => {
  it('an address that is not a host (invalid UTF-8, spaces, control characters) is a protocol error; a host decodes as it was sent', () => {
    const hello = new TextEncoder().encode('hello')
    for (const ip of [new Uint8Array(255).fill(0xff), new TextEncoder().encode('a b'), new TextEncoder().encode('host\n'), new TextEncoder().encode('é.example')]) {
      expect(() => decodeDatagram(only(encodeFrame(FRAME.DATAGRAM, 1, datagramPayload(ip, 53, hello))))).toThrow(expect.objectContaining({ code: 'E_CHANNEL_PROTOCOL' }))
    }
    for (const ip of ['127.0.0.1', '::1', 'fe80::1%eth0', 'a'.repeat(255)]) {
      const { addr, data } = decodeDatagram(only(encodeDatagramFrame(1, hello, { ip, port: 53 })))
      expect(addr).toEqual({ ip, port: 53 })
      // What decodes can be sent back: the reply to a source always encodes.
      expect(() => encodeDatagramFrame(1, data, addr)).not.toThrow()
    }
  })
})

describe('a hostile peer against an agent', () => {
  const { agent, cleanup, server } = useAgents()

  it('a datagram from an address of 255 bytes of 0xff to a UDP expose ends that connection with a protocol error; the process goes on and the service never gets it', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const hostile = await createPeer({ server: server().url() })
    cleanup.push({ close: async () => await hostile.close() })
    let raw: RawMux | undefined
    hostile.handle((conn) => { raw = rawMux(conn, {}) })
    const victim = await agent()
    await waitFor('the victim to know the hostile peer', () => victim.peer.peers().some((p) => p.peerId === hostile.peerId))
    const uncaught: unknown[] = []
    const onUncaught = (err: unknown): void => { uncaught.push(err) }
    process.on('uncaughtException', onUncaught)
    cleanup.push({ close: () => { process.off('uncaughtException', onUncaught) } })
    const exposing = expose(victim, { peer: hostile.peerId, proto: 'udp', port: 0, host: '127.0.0.1', to: { ip: '127.0.0.1', port: echo.port } })
    await waitFor('the victim to dial the hostile peer', () => raw !== undefined)
    const r = raw as RawMux
    const offer = await r.next('the bind offer', (f) => f.type === FRAME.OFFER)
    await r.send(FRAME.OFFER_REPLY, offer.id, {})
    const open = await r.next('the bind channel', (f) => f.type === FRAME.OPEN)
    await r.send(FRAME.REPLY, open.id, { bound: { ip: '127.0.0.1', port: 5555 } })
    cleanup.push(await exposing)
    await r.conn.write(encodeFrame(FRAME.DATAGRAM, open.id, datagramPayload(new Uint8Array(255).fill(0xff), 4242, new TextEncoder().encode('hello'))))
    const err = await within('the victim to end the connection', r.ended) as StarsockError
    expect(err?.message).toMatch(/DATAGRAM address is not a host/)
    await new Promise((resolve) => setTimeout(resolve, 300)) // a reply from the service would come by now
    expect(echo.received()).toBe(0)
    expect(uncaught).toEqual([])
  })

  /** A TCP service on loopback: `reads` false, it takes connections and never reads (its channel's reader stops). */
  const service = async (reads: boolean): Promise<{ port: number, drained: () => number }> => {
    const accepted: net.Socket[] = []
    let drained = 0
    const server = net.createServer({ pauseOnConnect: !reads }, (s) => {
      s.on('error', () => {})
      if (reads) s.on('data', (d: Buffer) => { drained += d.byteLength })
      accepted.push(s)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanup.push({ close: () => { for (const s of accepted) s.destroy(); server.close() } })
    return { port: (server.address() as net.AddressInfo).port, drained: () => drained }
  }

  /** Offer connect `mapping` to 127.0.0.1:`port` (no ack feature: granted at once) and open channel `id` on it. */
  const openConnect = async (raw: RawMux, mapping: number, id: number, port: number): Promise<void> => {
    await raw.send(FRAME.OFFER, mapping, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port, name: `to ${port}` })
    await raw.next('the grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === mapping)
    await raw.conn.write(encodeOpenFrame(id, { type: 'sock', sock: 'connect', reliable: true, mapping, dst: { ip: '127.0.0.1', port } }))
    await raw.next('the channel open', (f) => f.type === FRAME.REPLY && f.id === id)
  }

  /** Send 64 KiB DATA frames on channel `id` within credit until no more credit comes (its service stopped reading), keeping `reserve` bytes of it; the bytes sent. */
  const fillUntilStalled = async (raw: RawMux, id: number, reserve: number): Promise<number> => {
    const fill = new Uint8Array(64 * KiB)
    let sent = 0
    for (let i = 0; i < 2000; i++) {
      if (raw.credit(id) - sent >= fill.byteLength + reserve) {
        await raw.conn.write(encodeFrame(FRAME.DATA, id, fill))
        sent += fill.byteLength
        continue
      }
      const credit = raw.credit(id)
      await new Promise((resolve) => setTimeout(resolve, 500))
      if (raw.credit(id) === credit) break
    }
    expect(raw.credit(id) - sent).toBeGreaterThanOrEqual(reserve)
    return sent
  }

  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  /** ArrayBuffer bytes held once collected (their memory is freed off the main thread: collect twice, a moment apart). */
  const collected = async (): Promise<number> => {
    gc()
    await new Promise((resolve) => setTimeout(resolve, 100))
    gc()
    return process.memoryUsage().arrayBuffers
  }

  /**
   * 200 writes of a one-byte DATA payload on a channel whose service does not read, each padded
   * in the same chunk by `pad` (240 KiB); settles with the ArrayBuffer memory kept after it all
   * arrived. Kept as views, the 200 bytes held 200 chunks of 240 KiB (47 MiB).
   */
  const pinned = async (pad: (i: number) => Uint8Array, padChannel?: { id: number, port: number, drained: () => number }): Promise<number> => {
    const stuck = await service(false)
    const victim = await agent({ allow: [`connect/tcp:127.0.0.1:${stuck.port}`, ...(padChannel === undefined ? [] : [`connect/tcp:127.0.0.1:${padChannel.port}`])] })
    const raw = await dialRaw(server().url(), victim, {}, cleanup)
    await openConnect(raw, 1, 1, stuck.port)
    if (padChannel !== undefined) await openConnect(raw, 3, padChannel.id, padChannel.port)
    const attacks = 200
    const sent = await fillUntilStalled(raw, 1, attacks)
    const session = (): number => victim.sessions().find((s) => s.peerId === raw.peer.peerId)?.bytesIn ?? 0
    await waitFor('the fill to arrive', () => session() >= sent)
    const before = await collected()
    let padded = 0
    for (let i = 0; i < attacks; i++) {
      const padding = pad(i)
      if (padChannel !== undefined) await waitFor('credit for the padding', () => raw.credit(padChannel.id) - padded >= padding.byteLength - 9, 10_000)
      const one = encodeFrame(FRAME.DATA, 1, Uint8Array.of(i & 0xff))
      const write = new Uint8Array(one.byteLength + padding.byteLength)
      write.set(one)
      write.set(padding, one.byteLength)
      await raw.conn.write(write) // one chunk on the victim's side
      padded += padding.byteLength - 9
    }
    await waitFor('every one-byte payload to arrive', () => session() >= sent + attacks + (padChannel === undefined ? 0 : padded), 30_000)
    if (padChannel !== undefined) await waitFor('the padding to be read', () => padChannel.drained() >= padded, 30_000)
    expect(raw.frames.filter((f) => f.type === FRAME.RESET)).toEqual([]) // within the windows: nothing to reset
    return (await collected()) - before
  }

  it('one-byte DATA payloads padded with 240 KiB frames for no channel: a slow channel keeps its bytes, not the chunks they came in', async () => {
    const pad = encodeFrame(FRAME.DATA, 0x7ffffff1, new Uint8Array(240 * KiB)) // no such channel: ignored, counted nowhere
    expect(await pinned(() => pad)).toBeLessThan(8 * MiB)
  }, 60_000)

  it('one-byte DATA payloads padded with 240 KiB for another channel, read at once: once that is read, the slow channel\'s bytes no longer keep the chunks', async () => {
    const reader = await service(true)
    expect(await pinned(() => encodeFrame(FRAME.DATA, 3, new Uint8Array(240 * KiB)), { id: 3, port: reader.port, drained: reader.drained })).toBeLessThan(8 * MiB)
  }, 90_000)
})
