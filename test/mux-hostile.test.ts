/**
 * A hostile peer's channel frames against a real agent through a real server (hand-written frames,
 * `test/helpers/raw-mux.ts`): a datagram whose source address is not a host fails that connection
 * with a protocol error and never the process, and one-byte DATA payloads padded with large frames
 * nobody counts do not make a slow channel keep far more memory than its window counts.
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

  it('one-byte DATA payloads padded with 240 KiB frames for no channel: a slow channel keeps its bytes, not the chunks they came in', async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    /** ArrayBuffer bytes held once collected (their memory is freed off the main thread: collect twice, a moment apart). */
    const collected = async (): Promise<number> => {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 100))
      gc()
      return process.memoryUsage().arrayBuffers
    }
    // A service that takes connections and never reads: the channel's reader stops and its queue holds what comes.
    const accepted: net.Socket[] = []
    const stuck = net.createServer({ pauseOnConnect: true }, (s) => { s.on('error', () => {}); accepted.push(s) })
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve))
    const port = (stuck.address() as net.AddressInfo).port
    cleanup.push({ close: () => { for (const s of accepted) s.destroy(); stuck.close() } })
    const victim = await agent({ allow: [`connect/tcp:127.0.0.1:${port}`] })
    const raw = await dialRaw(server().url(), victim, {}, cleanup)
    await raw.send(FRAME.OFFER, 1, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port, name: 'stuck' })
    await raw.next('the grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === 1)
    await raw.conn.write(encodeOpenFrame(1, { type: 'sock', sock: 'connect', reliable: true, mapping: 1, dst: { ip: '127.0.0.1', port } }))
    await raw.next('the channel open', (f) => f.type === FRAME.REPLY && f.id === 1)

    // Fill within credit until the service's buffers are full and no more credit comes, keeping room for the attack.
    const attacks = 200
    const fill = new Uint8Array(64 * KiB)
    let sent = 0
    for (let i = 0; i < 2000; i++) {
      if (raw.credit(1) - sent >= fill.byteLength + attacks) {
        await raw.conn.write(encodeFrame(FRAME.DATA, 1, fill))
        sent += fill.byteLength
        continue
      }
      const credit = raw.credit(1)
      await new Promise((resolve) => setTimeout(resolve, 500))
      if (raw.credit(1) === credit) break
    }
    expect(raw.credit(1) - sent).toBeGreaterThanOrEqual(attacks)
    const session = (): number => victim.sessions().find((s) => s.peerId === raw.peer.peerId)?.bytesIn ?? 0
    await waitFor('the fill to arrive', () => session() >= sent)

    const before = await collected()
    const pad = encodeFrame(FRAME.DATA, 0x7ffffff1, new Uint8Array(240 * KiB)) // no such channel: ignored, counted nowhere
    for (let i = 0; i < attacks; i++) {
      const one = encodeFrame(FRAME.DATA, 1, Uint8Array.of(i & 0xff))
      const write = new Uint8Array(one.byteLength + pad.byteLength)
      write.set(one)
      write.set(pad, one.byteLength)
      await raw.conn.write(write) // one chunk on the victim's side
    }
    await waitFor('every one-byte payload to arrive', () => session() >= sent + attacks, 30_000)
    expect(raw.frames.filter((f) => f.type === FRAME.RESET)).toEqual([]) // within the window: nothing to reset
    const kept = (await collected()) - before
    // 200 payloads of one byte: kept as views, they held 200 chunks of 240 KiB (47 MiB).
    expect(kept).toBeLessThan(8 * MiB)
  }, 60_000)
})
