import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { connectSocket, dialAndEcho, echoIncoming, joinWithChallenge, makeIdentity, receiveStream, request, startRawPeer, StreamSink, type KeyKind, type RawPeer } from './helpers/raw-peer.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'

for (const transports of [['websocket'], ['polling']]) {
  describe(`socket.io-client 4 speaking the events over ${transports[0]}`, () => {
    let server: StarsockServer & { port: number }
    const peers: RawPeer[] = []
    const peer = async (kind?: KeyKind): Promise<RawPeer> => {
      const p = await startRawPeer(server.url(), server.port, { kind, transports })
      peers.push(p)
      return p
    }

    beforeEach(async () => { server = await startServer() })
    afterEach(async () => {
      for (const p of peers.splice(0)) p.close()
      await server.close()
    })

    it('joins with Ed25519, RSA and secp256k1 keys, discovers, and echoes 1 MiB byte-exact', async () => {
      const a = await peer('Ed25519')
      const b = await peer('RSA')
      const c = await peer('secp256k1')
      echoIncoming(b)
      echoIncoming(c)
      await waitFor('ws-peer for B and C at A', () => a.announced.includes(b.addr) && a.announced.includes(c.addr))
      const data = testBytes(1024 * 1024)
      expectBytes(await within('echo through B', dialAndEcho(a, b.addr, data), 15_000), data, 'echo through B')
      expectBytes(await within('echo through C', dialAndEcho(a, c.addr, data), 15_000), data, 'echo through C')
      expect(server.stats().bufferedBytes).toBe(0)
    })

    it('runs 20 concurrent dials', async () => {
      const a = await peer()
      const b = await peer()
      echoIncoming(b)
      const sizes = Array.from({ length: 20 }, (_, i) => 1000 + i * 997)
      const back = await within('20 dials', Promise.all(sizes.map(async (n, i) => dialAndEcho(a, b.addr, testBytes(n, i + 1), 4096))), 20_000)
      expect(back).toHaveLength(20)
      back.forEach((got, i) => expectBytes(got, testBytes(sizes[i] ?? 0, i + 1), `the echo of dial ${i}`))
      await waitFor('all streams closed', () => server.stats().streams === 0)
    })

    // A legacy listener's accept answers the dial; a starsock listener's dial waits for its ack.
    it.each([['a legacy listener', false], ['a starsock listener', true]])('completes a dial whose dialer ended its stream before the listener acked (%s)', async (_name, starsock) => {
      const a = await peer()
      const b = await peer()
      if (starsock) expect((await request(b.socket, 'starsock:hello', [{}]))[0]).toBeNull()
      let got: Promise<Buffer> | undefined
      b.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
        got = receiveStream(b.socket, `${dialId}.dialer`)
        setTimeout(() => ack(), 100) // A sends and ends meanwhile
      })
      const sink = new StreamSink(a.socket, 'early.dialer')
      const sending = sink.send([Buffer.from('hi')])
      expect(await request(a.socket, 'ss-dial', [a.addr, b.addr, 'early'])).toEqual([])
      await sending
      expect((await within('the early bytes at B', got ?? Promise.reject(new Error('no stream')))).toString()).toBe('hi')
    })

    it('fails a dial to an offline peer, and a dial from an address the socket does not own', async () => {
      const a = await peer()
      const ghost = await makeIdentity(server.port)
      expect(await request(a.socket, 'ss-dial', [a.addr, ghost.addr, 'd1'])).toEqual(['Peer not found'])
      const b = await peer()
      expect(await request(a.socket, 'ss-dial', [b.addr, a.addr, 'd2'])).toEqual(['Not authorized for this address'])
    })

    it('refuses a key that does not match the id in the address', async () => {
      const socket = await connectSocket(server.url(), { transports })
      try {
        const mine = await makeIdentity(server.port)
        const other = await makeIdentity(server.port)
        await expect(joinWithChallenge(socket, mine.key, other.addr)).rejects.toThrow('Id is not matching')
        expect(server.stats().peers).toBe(0)
      } finally {
        socket.close()
      }
    })

    it('stops announcing a closed peer, and dials to it fail', async () => {
      const a = await peer()
      const b = await peer()
      await waitFor('A to hear of B', () => a.announced.includes(b.addr))
      b.close()
      await waitFor('B to leave', () => server.stats().peers === 1)
      expect(await request(a.socket, 'ss-dial', [a.addr, b.addr, 'd3'])).toEqual(['Peer not found'])
      const c = await peer()
      const [, page] = await request(c.socket, 'starsock:peers', [0])
      expect((page as { addrs: string[] }).addrs).toEqual([a.addr])
    })

    it('sends join and leave events instead of the periodic flood to clients that ask', async () => {
      const watcher = await connectSocket(server.url(), { transports })
      try {
        const [err, hello] = await request(watcher, 'starsock:hello', [{ peerEvents: true }])
        expect(err).toBeNull()
        expect(hello).toMatchObject({ protocol: 1, cryptoChallenge: true })
        const events: string[] = []
        const legacy: string[] = []
        watcher.on('starsock:peer-join', (addr: string) => events.push(`join ${addr}`))
        watcher.on('starsock:peer-leave', (addr: string) => events.push(`leave ${addr}`))
        watcher.on('ws-peer', (addr: string) => legacy.push(addr))
        const me = await makeIdentity(server.port)
        await joinWithChallenge(watcher, me.key, me.addr)
        const b = await peer()
        await waitFor('peer-join for B', () => events.includes(`join ${b.addr}`))
        b.close()
        await waitFor('peer-leave for B', () => events.includes(`leave ${b.addr}`))
        expect(legacy).toEqual([])
      } finally {
        watcher.close()
      }
    })
  })
}
