import { describe, expect, it } from 'vitest'
import { StarsockError } from '../../shared/errors.ts'
import { streamEvent } from '../../shared/events.ts'
import { checkHelloReply } from '../../shared/validate.ts'
import { receiveWindowBytes, sendChunkBytes, StreamTable, type StreamSizes } from '../../client/stream-table.ts'
import type { StreamTransport } from '../../client/stream.ts'

const KiB = 1024
const MiB = 1024 * KiB
const SIZES: StreamSizes = { windowBytes: 2 * MiB, chunkBytes: 128 * KiB, receiveLimitBytes: 16 * MiB }

/** A transport that records what the streams emit and always has room. */
function fakeTransport (): { transport: StreamTransport, emits: Array<[string, ...unknown[]]>, sent: number[] } {
  const emits: Array<[string, ...unknown[]]> = []
  const sent: number[] = []
  return { emits, sent, transport: { emit: (event, ...args) => { emits.push([event, ...args]) }, room: async () => {}, sent: (n) => { sent.push(n) } } }
}

/** The limits a server announcing `limits` ends up with on the client, after the hello check. */
const announced = (limits: Record<string, number>): Record<string, number> => checkHelloReply({ limits })?.limits ?? {}

describe('stream sizing', () => {
  it.each<[string, Record<string, number> | undefined, number]>([
    ['no hello (the original server)', undefined, 128 * KiB],
    ['a default server', { maxMessageBytes: 1_000_000 }, 128 * KiB],
    ['small messages: three quarters of the room, as base64 over long-polling', { maxMessageBytes: 20_000 }, Math.floor((20_000 - 4096) * 3 / 4)],
    ['a tiny maxMessageBytes, clamped', announced({ maxMessageBytes: 1 }), Math.floor((8 * KiB - 4096) * 3 / 4)],
    ['a tiny maxMessageBytes that got past the check', { maxMessageBytes: 1 }, 1]
  ])('chunk for %s', (_, limits, chunk) => {
    expect(sendChunkBytes(SIZES.chunkBytes, limits)).toBe(chunk)
  })

  it('caps a chunk near the message limit so that its base64 fits a long-polling message', () => {
    expect(sendChunkBytes(900 * KiB, { maxMessageBytes: 1_000_000 })).toBe(Math.floor((1_000_000 - 4096) * 3 / 4))
    expect(sendChunkBytes(512 * KiB, { maxMessageBytes: 1_000_000 })).toBe(512 * KiB)
  })

  it.each<[string, Record<string, number> | undefined, number]>([
    ['no hello', undefined, 2 * MiB],
    ['a default server (4 MiB per stream)', { streamBufferBytes: 4 * MiB }, 2 * MiB - 128 * KiB],
    ['a small server buffer: at least 64 KiB', { streamBufferBytes: 100 * KiB }, 64 * KiB],
    ['a huge server buffer: the option', announced({ streamBufferBytes: 2 ** 52 }), 2 * MiB],
    ['a zero server buffer', announced({ streamBufferBytes: 0 }), 64 * KiB]
  ])('window for %s', (_, limits, window) => {
    expect(receiveWindowBytes(SIZES, limits)).toBe(window)
  })
})

describe('StreamTable', () => {
  function setup (limits?: Record<string, number>): ReturnType<typeof fakeTransport> & { table: StreamTable } {
    const fake = fakeTransport()
    return { ...fake, table: new StreamTable(fake.transport, SIZES, () => limits) }
  }

  it('opens a receiving end with its window, or registers it unopened', () => {
    const { table, emits } = setup({ streamBufferBytes: 4 * MiB })
    table.openReceive('d1.dialer')
    table.openReceive('d2.listener', false)
    expect(emits).toEqual([[streamEvent('accept', 'd1.dialer'), 2 * MiB - 128 * KiB]])
    expect(table.counts).toEqual({ sendingStreams: 0, receivingStreams: 2 })
  })

  it('dispatches queue and error to the receiving end', async () => {
    const { table } = setup()
    const rx = table.openReceive('d.dialer')
    expect(table.dispatch(streamEvent('queue', 'd.dialer'), new Uint8Array([1, 2, 3]))).toBe(true)
    expect(table.dispatch(streamEvent('error', 'd.dialer'), true)).toBe(true)
    expect(Array.from(await rx.read() ?? [])).toEqual([1, 2, 3])
    expect(await rx.read()).toBeNull()
    expect(table.counts.receivingStreams).toBe(0)
  })

  it('dispatches accept, credit and abort to the sending end', async () => {
    const { table, emits } = setup()
    const tx = table.openSend('d.listener')
    table.dispatch(streamEvent('accept', 'd.listener'), 10)
    expect(tx.creditBytes).toBe(10)
    table.dispatch(streamEvent('credit', 'd.listener'), 5)
    expect(tx.creditBytes).toBe(15)
    await tx.write(new Uint8Array(15))
    expect(emits.map(([event]) => event)).toEqual([streamEvent('queue', 'd.listener')])
    table.dispatch(streamEvent('abort', 'd.listener'), 'Gone [E_PEER_GONE]')
    await expect(tx.write(new Uint8Array(1))).rejects.toMatchObject({ code: 'E_PEER_GONE' })
    expect(table.counts.sendingStreams).toBe(0)
  })

  it('says which events are not stream events, and ignores unknown streams', () => {
    const { table } = setup()
    expect(table.dispatch('ws-peer', '/ip4/1.2.3.4')).toBe(false)
    expect(table.dispatch(streamEvent('queue', 'nobody'), new Uint8Array(1))).toBe(true)
    expect(table.dispatch(streamEvent('accept', 'nobody'), 1)).toBe(true)
  })

  it('fails every open stream at once', async () => {
    const { table } = setup()
    const rx = table.openReceive('a.dialer')
    const tx = table.openSend('b.listener')
    table.failAll(new StarsockError('E_DISCONNECTED', 'dropped'))
    await expect(rx.read()).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
    await expect(tx.write(new Uint8Array(1))).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
    expect(table.counts).toEqual({ sendingStreams: 0, receivingStreams: 0 })
  })

  it('a server announcing a tiny message size does not make a sender spin: chunks stay at least 3 KiB (4 KiB of room, as base64)', async () => {
    const { table, emits } = setup(announced({ maxMessageBytes: 1 }))
    const tx = table.openSend('t.dialer')
    table.dispatch(streamEvent('accept', 't.dialer'), undefined) // a legacy receiver: no window
    await tx.write(new Uint8Array(10_000))
    const sizes = emits.map(([, chunk]) => (chunk as Uint8Array).byteLength)
    expect(sizes).toEqual([3072, 3072, 3072, 784])
  })

  it('a newer stream under the same id keeps its place when the older one ends', () => {
    const { table } = setup()
    const old = table.openSend('same')
    table.openSend('same')
    old.fail(new StarsockError('E_DISCONNECTED', 'old'))
    expect(table.counts.sendingStreams).toBe(1)
  })
})
