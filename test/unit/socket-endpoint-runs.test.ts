/**
 * `SocketEndpoint.sendEncodedRun` on a fake socket.io socket: over a WebSocket that takes
 * ready-made frames, a run is one engine.io packet whose frame is the events' frames back to back
 * (the bytes of each message exactly as it would go alone), and the backlog counts those bytes;
 * elsewhere each event is a packet of its own.
 */
import type { Socket } from 'socket.io'
import { Encoder } from 'socket.io-parser'
import { describe, expect, it } from 'vitest'
import { createEventEncoder, SocketIoEncodedEvent } from '../../server/encoded-event.ts'
import { createSocketEndpoint } from '../../server/socket-endpoint.ts'
import type { EncodedEvent } from '../../server/session.ts'

interface Packet { data: unknown, options?: { wsPreEncodedFrame?: Buffer[] } }

/** A socket on `transport` whose engine.io socket queues what it is sent (its transport busy). */
function fakeSocket (transport: 'websocket' | 'polling'): { socket: Socket, queued: Packet[] } {
  const queued: Packet[] = []
  const ws = { pause: () => {}, resume: () => {}, bufferedAmount: 0, _sender: { sendFrame: () => {} } }
  const conn = {
    transport: { name: transport, on: () => {}, off: () => {}, socket: transport === 'websocket' ? ws : undefined },
    writeBuffer: queued,
    on: () => {},
    send: (data: unknown, options?: Packet['options']) => { queued.push({ data, options }) },
    readyState: 'open'
  }
  return { socket: { conn, nsp: { name: '/' } } as unknown as Socket, queued }
}

const encode = createEventEncoder(new Encoder())
const events: EncodedEvent[] = Array.from({ length: 6 }, (_, i) => encode('ws-peer', [`/ip4/10.0.0.${i}/tcp/9090/ws/p2p-websocket-star/ipfs/Qm${'x'.repeat(i * 40)}`]) as EncodedEvent)
const frameOf = (event: EncodedEvent): Buffer => Buffer.concat((event as SocketIoEncodedEvent).frame ?? [])

describe('sending a run of encoded events', () => {
  it('over a WebSocket: one packet holding each event\'s frame back to back, counted whole in the backlog', () => {
    const { socket, queued } = fakeSocket('websocket')
    const endpoint = createSocketEndpoint(socket, () => {}, 100)
    endpoint.sendEncodedRun?.(events, 1, 5)
    expect(queued).toHaveLength(1)
    const frame = queued[0]?.options?.wsPreEncodedFrame
    expect(frame).toHaveLength(1)
    expect(Buffer.compare(frame?.[0] as Buffer, Buffer.concat(events.slice(1, 5).map(frameOf)))).toBe(0)
    expect(endpoint.backlogBytes?.()).toBe(events.slice(1, 5).reduce((sum, e) => sum + e.bytes, 0))
    // Another part of the same run: made from the frames kept with it.
    endpoint.sendEncodedRun?.(events, 0, 2)
    expect(Buffer.compare(queued[1]?.options?.wsPreEncodedFrame?.[0] as Buffer, Buffer.concat(events.slice(0, 2).map(frameOf)))).toBe(0)
  })

  it('a run of one is the event as sendEncoded sends it', () => {
    const { socket, queued } = fakeSocket('websocket')
    createSocketEndpoint(socket, () => {}, 100).sendEncodedRun?.(events, 3, 4)
    expect(queued).toEqual([{ data: (events[3] as SocketIoEncodedEvent).data, options: { wsPreEncodedFrame: (events[3] as SocketIoEncodedEvent).frame } }])
  })

  it('over long-polling: a packet per event, in order', () => {
    const { socket, queued } = fakeSocket('polling')
    createSocketEndpoint(socket, () => {}, 100).sendEncodedRun?.(events, 0, 6)
    expect(queued.map((p) => p.data)).toEqual(events.map((e) => (e as SocketIoEncodedEvent).data))
  })
})
