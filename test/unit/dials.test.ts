import { describe, expect, it } from 'vitest'
import { StarsockError, wireError } from '../../shared/errors.ts'
import { EVENTS, streamEvent } from '../../shared/events.ts'
import type { Connection } from '../../client/connection.ts'
import { Dials } from '../../client/dials.ts'
import type { Requester } from '../../client/server-link.ts'
import { StreamTable } from '../../client/stream-table.ts'

const SELF = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
const TO = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'

/** Dials over a fake link whose `ss-dial` answers with `answer`, and a stream table over a recording transport. */
function setup (answer: (args: unknown[], options: { timeoutMs?: number }) => Promise<unknown[]>, dialTimeoutMs?: number): { dials: Dials, emits: unknown[][], table: StreamTable, dialArgs: unknown[][] } {
  const emits: unknown[][] = []
  const dialArgs: unknown[][] = []
  const link: Requester = {
    connected: true,
    request: async (event, args, options = {}) => {
      expect(event).toBe(EVENTS.DIAL)
      dialArgs.push(args)
      return await answer(args, options)
    }
  }
  const table = new StreamTable({ emit: (event, ...args) => { emits.push([event, ...args]) }, room: async () => {}, sent: () => {} }, { windowBytes: 1 << 20, chunkBytes: 1 << 16, receiveLimitBytes: 1 << 24 }, () => undefined)
  return { dials: new Dials(link, table, SELF, 10_000, () => dialTimeoutMs), emits, table, dialArgs }
}

describe('Dials.dial', () => {
  it('asks the server, then accepts its listener stream: a connection to the dialed peer', async () => {
    const { dials, emits, dialArgs } = setup(async () => [])
    const conn = await dials.dial(TO)
    const dialId = dialArgs[0]?.[2] as string
    expect(dialArgs).toEqual([[SELF, TO, dialId]])
    expect(dialId).toMatch(/^[0-9a-f]{32}$/)
    expect(emits).toEqual([[streamEvent('accept', `${dialId}.listener`), 1 << 20]]) // only after the reply
    expect(conn.remoteAddr).toBe(TO)
    expect(conn.initiator).toBe(true)
  })

  it.each<[number | undefined, number]>([[undefined, 12_000], [30_000, 32_000], [1, 10_000]])('waits longer than the server\'s dial timeout (%s ms): %d ms', async (serverMs, expected) => {
    let timeoutMs: number | undefined
    const { dials } = setup(async (_args, options) => { timeoutMs = options.timeoutMs; return [] }, serverMs)
    await dials.dial(TO)
    expect(timeoutMs).toBe(expected)
  })

  it('a refusal fails both streams with the server\'s code and leaves nothing open', async () => {
    const { dials, table } = setup(async () => [wireError('E_PEER_NOT_FOUND', 'Peer not found')])
    await expect(dials.dial(TO)).rejects.toMatchObject({ code: 'E_PEER_NOT_FOUND' })
    expect(table.counts).toEqual({ sendingStreams: 0, receivingStreams: 0 })
  })

  it('a dial given up here tells the server on both streams', async () => {
    const { dials, emits, dialArgs, table } = setup(async () => { throw new StarsockError('E_TIMEOUT', 'ss-dial: no answer') })
    await expect(dials.dial(TO)).rejects.toMatchObject({ code: 'E_TIMEOUT' })
    const dialId = dialArgs[0]?.[2] as string
    const abandoned = wireError('E_STREAM_ABORTED', 'Dial abandoned')
    expect(emits).toEqual([[streamEvent('error', `${dialId}.dialer`), abandoned], [streamEvent('abort', `${dialId}.listener`), abandoned]])
    expect(table.counts).toEqual({ sendingStreams: 0, receivingStreams: 0 })
  })
})

describe('Dials.incoming', () => {
  it.each([['without a hint', false], ['after a hint (a starsock server)', true]])('accepts %s: opens the dialer stream, acks, hands the connection to the handler and then to accepted', async (_name, hinted) => {
    const { dials, emits } = setup(async () => [])
    const order: string[] = []
    const acks: unknown[][] = []
    const ack = (...a: unknown[]): void => { acks.push(a); order.push('ack') }
    const conn = await dials.incoming('d1', TO, hinted ? { starsock: true, secure: false } : ack, hinted ? ack : undefined, () => (c: Connection) => { order.push(`handler ${c.remoteAddr}`) }, () => order.push('accepted'))
    expect(conn?.initiator).toBe(false)
    expect(conn?.secure).toBe(false) // Dials without keys: plaintext
    expect(acks).toEqual([[]])
    expect(order).toEqual(['ack', `handler ${TO}`, 'accepted'])
    expect(emits).toEqual([[streamEvent('accept', 'd1.dialer'), 1 << 20]])
  })

  it.each<[string, unknown, unknown, boolean, string]>([
    ['refuses without a handler', 'd1', TO, false, wireError('E_DIAL_REFUSED', 'This peer takes no connections')],
    ['refuses a bad dial id', 7, TO, true, wireError('E_BAD_REQUEST', 'Bad incoming dial')],
    ['refuses a bad address', 'd1', null, true, wireError('E_BAD_REQUEST', 'Bad incoming dial')]
  ])('%s', async (_, dialId, from, handled, error) => {
    const { dials, table } = setup(async () => [])
    const acks: unknown[][] = []
    const conn = await dials.incoming(dialId, from, (...a: unknown[]) => acks.push(a), undefined, () => handled ? () => {} : undefined, () => { throw new Error('not accepted') })
    expect(conn).toBeUndefined()
    expect(acks).toEqual([[error]])
    expect(table.counts).toEqual({ sendingStreams: 0, receivingStreams: 0 })
  })

  it('ignores a dial without an ack', async () => {
    const { dials } = setup(async () => [])
    expect(await dials.incoming('d1', TO, undefined, undefined, () => () => {}, () => {})).toBeUndefined()
    expect(await dials.incoming('d1', TO, { starsock: true, secure: true }, undefined, () => () => {}, () => {})).toBeUndefined()
  })
})
