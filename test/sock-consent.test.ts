/**
 * The consent handshake of the Tox draft (Offer -> Accept -> Ack-Acc) between real agents and
 * hand-written mux peers through a real server: a grant holds only once the requester's ACK
 * arrives, a grant that reaches a requester who gave up opens nothing, older peers without `ack`
 * work as before; random mapping ids per connection; rules at run time and `'always'`.
 */
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import type { Channel } from '../client/mux/channel.ts'
import type { Muxer } from '../client/mux/muxer.ts'
import type { OfferDecision } from '../client/sock/agent.ts'
import { StarsockError } from '../shared/errors.ts'
import { decodeJson, decodeOpen, encodeOpenFrame, FRAME, type Frame } from '../shared/mux-frame.ts'
import { useAgents, rejection } from './helpers/agents.ts'
import { dialRaw, rawMux, type RawMux } from './helpers/raw-mux.ts'
import { waitFor, within } from './helpers/server.ts'
import { tcpEcho } from './helpers/sockets.ts'

/** Whether 127.0.0.1:`port` takes TCP connections now. */
async function listening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

describe('the consent handshake: Offer -> Accept -> Ack-Acc', () => {
  const { agent, cleanup, server } = useAgents()

  it('a grant that reaches a requester who gave up opens nothing: the person grants after the requester\'s timeout', async () => {
    let release!: (answer: boolean) => void
    let asked = 0
    const target = await agent({ askTimeoutMs: 30_000, ask: async () => await new Promise<boolean>((resolve) => { asked++; release = resolve }) })
    const decisions: OfferDecision[] = []
    const mappings: unknown[] = []
    target.on('mapping', (m) => mappings.push(m))
    const client = await agent()
    // Hold what the requester sends once the person is asked (its KILL on giving up) until the
    // grant has left the target: the grant and the KILL cross, always, and the grant meets a
    // requester that gave up (the ACK path), never a KILL that came first.
    let open!: () => void
    const gate = new Promise<void>((resolve) => { open = resolve })
    target.on('offer', (d) => { decisions.push(d); if (d.allowed) open() })
    const dial = client.peer.dial.bind(client.peer)
    client.peer.dial = async (to, options = {}) => {
      const conn = await dial(to, options)
      // The multiplexer writes its batches as parts (`writeParts`); either way they wait at the gate.
      const writeOwned = conn.writeOwned.bind(conn)
      const writeParts = conn.writeParts.bind(conn)
      conn.writeOwned = async (data, o) => {
        if (asked > 0) await gate
        await writeOwned(data, o)
      }
      conn.writeParts = async (parts, o) => {
        if (asked > 0) await gate
        await writeParts(parts, o)
      }
      return conn
    }
    const err = await rejection(client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, timeoutMs: 400 }))
    expect(err.code).toBe('E_TIMEOUT')
    expect(asked).toBe(1)
    release(true)
    await waitFor('the grant to be told as withdrawn', () => decisions.some((d) => d.withdrawn === true))
    await new Promise((resolve) => setTimeout(resolve, 300)) // an ACK and a bind would have happened by now
    expect(mappings).toEqual([])
    expect(target.mappings()).toEqual([])
    expect(target.stats()).toMatchObject({ mappingsGranted: 0, boundPorts: 0 })
    expect(client.mappings()).toEqual([])
    // The grant is told, then told as withdrawn: the requester's KILL came after the grant.
    expect(decisions.map((d) => [d.allowed, d.by, d.code, d.withdrawn ?? false])).toEqual([[true, 'person', undefined, false], [false, 'person', 'E_KILLED', true]])
  })

  it('a requester with ack that never acknowledges the grant: the mapping never exists, no channel opens on it, and after the open timeout it is killed and told as withdrawn', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`, 'bind/tcp:127.0.0.1:0'], mux: { openTimeoutMs: 1500 } })
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    const raw = await dialRaw(server().url(), target, { features: ['ack'] }, cleanup)
    await raw.send(FRAME.OFFER, 3, { kind: 'bind', proto: 'tcp', host: '127.0.0.1', port: 0, name: 'no ack' })
    expect(decodeJson(await raw.next('the grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === 3))).toEqual({})
    // Granted, not acknowledged: nothing counts, and a bind channel under it is refused.
    expect(target.mappings()).toEqual([])
    expect(target.stats()).toMatchObject({ mappingsGranted: 0, boundPorts: 0, mappings: 0 })
    await raw.conn.write(encodeOpenFrame(1, { type: 'sock', sock: 'bind', reliable: true, mapping: 3, dst: { ip: '127.0.0.1', port: 0 } }))
    const reply = await raw.next('the reply to the bind channel', (f) => f.type === FRAME.REPLY && f.id === 1)
    expect(decodeJson(reply)).toMatchObject({ error: { code: 'E_NO_MAPPING' } })
    const kill = await raw.next('the KILL after the open timeout', (f) => f.type === FRAME.KILL && f.id === 3, 5000)
    expect(decodeJson(kill)).toMatchObject({ code: 'E_TIMEOUT' })
    expect(decisions.map((d) => [d.allowed, d.by, d.withdrawn ?? false])).toEqual([[true, 'rule', false], [false, 'rule', true]])
    // An ACK after that is too late: still nothing.
    await raw.send(FRAME.ACK, 3, {})
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(target.stats().mappingsGranted).toBe(0)

    // The same peer acknowledges the next grant: now the mapping exists and carries channels.
    await raw.send(FRAME.OFFER, 5, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: 'with ack' })
    await raw.next('the second grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === 5)
    expect(target.mappings()).toEqual([])
    await raw.send(FRAME.ACK, 5, {})
    await waitFor('the mapping to exist once acknowledged', () => target.mappings().length === 1)
    expect(target.mappings()[0]?.id).toBe(5)
    await raw.conn.write(encodeOpenFrame(3, { type: 'sock', sock: 'connect', reliable: true, mapping: 5, dst: { ip: '127.0.0.1', port: echo.port } }))
    expect(decodeJson(await raw.next('the connect reply', (f) => f.type === FRAME.REPLY && f.id === 3))).toEqual({})
    raw.conn.abort()
  })

  it('a KILL that crosses the grant: the granting side never tracks, binds or counts the mapping', async () => {
    const target = await agent({ allow: ['bind/tcp:127.0.0.1:*'] })
    const mappings: unknown[] = []
    target.on('mapping', (m) => mappings.push(m))
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    const raw = await dialRaw(server().url(), target, { features: ['ack'] }, cleanup)
    // A free port to ask for; the grant is answered with a KILL (what a requester that gave up does).
    const probe = net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as net.AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    await raw.send(FRAME.OFFER, 7, { kind: 'bind', proto: 'tcp', host: '127.0.0.1', port, name: '' })
    await raw.next('the grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === 7)
    await raw.send(FRAME.KILL, 7, { code: 'E_KILLED', message: 'The requester gave up on the offer' })
    await waitFor('the grant to be told as withdrawn', () => decisions.some((d) => d.withdrawn === true))
    expect(decisions.at(-1)).toMatchObject({ allowed: false, by: 'rule', code: 'E_KILLED', withdrawn: true })
    // An OPEN under it after the KILL names no mapping.
    await raw.conn.write(encodeOpenFrame(1, { type: 'sock', sock: 'bind', reliable: true, mapping: 7, dst: { ip: '127.0.0.1', port } }))
    expect(decodeJson(await raw.next('the bind reply', (f) => f.type === FRAME.REPLY && f.id === 1))).toMatchObject({ error: { code: 'E_NO_MAPPING' } })
    expect(mappings).toEqual([])
    expect(target.stats()).toMatchObject({ mappingsGranted: 0, boundPorts: 0 })
    expect(await listening(port)).toBe(false)
    raw.conn.abort()
  })

  it('the requester answers a grant that comes after it gave up with a KILL, and never with an ACK', async () => {
    const client = await agent()
    const granter = await createPeer({ server: server().url() })
    cleanup.push({ close: async () => await granter.close() })
    let raw: RawMux | undefined
    granter.handle((conn) => { raw = rawMux(conn, { features: ['ack'] }) })
    await waitFor('the client to know the granter', () => client.peer.peers().some((p) => p.peerId === granter.peerId))
    const err = await rejection(client.connect(granter.peerId, { host: '127.0.0.1', port: 9, timeoutMs: 500 }))
    expect(err.code).toBe('E_TIMEOUT')
    const r = raw as RawMux
    const offer = await r.next('the offer', (f) => f.type === FRAME.OFFER)
    // The KILL sent on giving up comes first; the grant after it must get one of its own.
    await r.next('the KILL sent on giving up', (f) => f.type === FRAME.KILL && f.id === offer.id)
    const before = r.frames.length
    await r.send(FRAME.OFFER_REPLY, offer.id, {}) // the late grant
    await r.next('a KILL after the late grant', (f) => f.type === FRAME.KILL && f.id === offer.id && r.frames.indexOf(f) >= before)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(r.frames.filter((f) => f.type === FRAME.ACK)).toEqual([])
    expect(client.mappings()).toEqual([])
    r.conn.abort()
  })

  it('the requester sends the ACK before anything else of the mapping; a granter without ack (an older peer) gets none and works as before', async () => {
    const client = await agent()
    for (const features of [['ack'], undefined]) {
      const granter = await createPeer({ server: server().url() })
      cleanup.push({ close: async () => await granter.close() })
      let raw: RawMux | undefined
      granter.handle((conn) => { raw = rawMux(conn, features === undefined ? {} : { features }) })
      await waitFor('the client to know the granter', () => client.peer.peers().some((p) => p.peerId === granter.peerId))
      const asking = client.connect(granter.peerId, { host: '127.0.0.1', port: 9 })
      await waitFor('the raw granter to be dialed', () => raw !== undefined)
      const r = raw as RawMux
      const offer = await r.next('the offer', (f) => f.type === FRAME.OFFER)
      await r.send(FRAME.OFFER_REPLY, offer.id, {})
      const mapping = await within('the grant', asking)
      void mapping.connect().catch(() => {})
      const open = await r.next('the connect channel', (f) => f.type === FRAME.OPEN)
      const types = r.frames.slice(r.frames.indexOf(offer) + 1, r.frames.indexOf(open)).map((f) => f.type)
      expect(types).toEqual(features === undefined ? [] : [FRAME.ACK])
      expect(decodeOpen(open).header).toMatchObject({ mapping: offer.id })
      r.conn.abort()
    }
  })

  it('an agent whose HELLO has no features (an older peer) still runs mappings both ways with a new one', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const older = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`], mux: { features: [], offerKinds: ['connect', 'bind', 'accept', 'file'] } })
    const newer = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    for (const [from, to] of [[newer, older], [older, newer]] as const) {
      const mapping = await within('the grant', from.connect(to.peer.peerId, { host: '127.0.0.1', port: echo.port }))
      const channel = await within('the connect channel', mapping.connect())
      await channel.write(new TextEncoder().encode('hi'))
      expect(new TextDecoder().decode(await within('the echo', channel.read()) ?? new Uint8Array())).toBe('hi')
      await waitFor('the granting side to track the mapping', () => to.mappings().some((m) => m.id === mapping.id))
      mapping.kill()
    }
    // What the older peer would not enforce or understand is refused here, before anything is sent.
    expect((await rejection(newer.connectService(older.peer.peerId, { service: 'web' }))).message).toBe(`${older.peer.peerId} does not take service offers (an older starsock?)`)
    const err = await rejection(newer.bind(older.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] }))
    expect(err.code).toBe('E_UNSUPPORTED')
    expect((await rejection(newer.offerAccept(older.peer.peerId, { host: '127.0.0.1', port: 22, service: 'ssh' }))).code).toBe('E_UNSUPPORTED')
    expect(older.stats().mappingsGranted).toBe(0)
  })

  it('grants never acknowledged count against the pending offers: a flood of them is refused, and none becomes a mapping', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`], mux: { maxPendingOffers: 4 } })
    const raw = await dialRaw(server().url(), target, { features: ['ack'] }, cleanup)
    const ids = Array.from({ length: 6 }, (_, i) => 2 * i + 1)
    for (const id of ids) await raw.send(FRAME.OFFER, id, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: '' })
    await waitFor('an answer to every offer', () => ids.every((id) => raw.frames.some((f) => f.type === FRAME.OFFER_REPLY && f.id === id)))
    const answers = ids.map((id) => decodeJson(raw.frames.find((f) => f.type === FRAME.OFFER_REPLY && f.id === id) as Frame) as { error?: { code: string } })
    expect(answers.filter((a) => a.error === undefined)).toHaveLength(4)
    expect(answers.filter((a) => a.error?.code === 'E_LIMIT_MAPPINGS')).toHaveLength(2)
    expect(target.mappings()).toEqual([])
    expect(target.stats().mappingsGranted).toBe(0)
    raw.conn.abort()
  })
})

describe('mapping ids', () => {
  const { agent, cleanup, server } = useAgents()

  it('are random per connection, keep the parity of the side, and never repeat one in use', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const client = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const dialed = await Promise.all(Array.from({ length: 8 }, async () => await client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })))
    const back = await Promise.all(Array.from({ length: 8 }, async () => await target.connect(client.peer.peerId, { host: '127.0.0.1', port: echo.port })))
    const ids = dialed.map((m) => m.id)
    expect(new Set([...ids, ...back.map((m) => m.id)]).size).toBe(16)
    expect(ids.every((id) => id % 2 === 1 && id > 0 && id <= 0xffffffff)).toBe(true) // the dialing side: odd
    expect(back.every((m) => m.id % 2 === 0 && m.id > 0)).toBe(true) // the other side: even
    const sorted = [...ids].sort((a, b) => a - b)
    // Sequential ids would be 2 apart; random ones spread over 2^31.
    expect(sorted.some((id, i) => i > 0 && id - (sorted[i - 1] as number) !== 2)).toBe(true)
    expect((sorted.at(-1) as number) - (sorted[0] as number)).toBeGreaterThan(1_000_000)
  })

  it.each([
    ['0', 0],
    ['of the wrong parity', 1],
    ['of a live mapping', -1]
  ])('an offer with a mapping id %s is a protocol error: the connection ends', async (_what, given) => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    // The raw peer dials: its ids are odd, the target's even.
    const raw = await dialRaw(server().url(), target, { features: ['ack'] }, cleanup)
    let id = given
    if (given === -1) {
      await raw.send(FRAME.OFFER, 7, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: '' })
      await raw.next('the grant', (f) => f.type === FRAME.OFFER_REPLY && f.id === 7)
      await raw.send(FRAME.ACK, 7, {})
      await waitFor('the mapping', () => target.mappings().length === 1)
      id = 7
    } else if (given === 1) {
      id = 8
    }
    await raw.send(FRAME.OFFER, id, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: 'again' })
    await within('the target to end the connection', raw.ended)
    expect(raw.frames.filter((f) => f.type === FRAME.OFFER_REPLY && f.id === id && given !== -1)).toEqual([])
    await waitFor('the target to drop the session', () => target.sessions().length === 0)
  })
})

describe('rules at run time', () => {
  const { agent, cleanup } = useAgents()

  it('setRules replaces the rules (a bad one changes nothing); live mappings stay', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const rule = `connect/tcp:127.0.0.1:${echo.port}`
    const target = await agent({ allow: [rule] })
    const client = await agent()
    const live = await client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    expect(target.rules().map((r) => r.text)).toEqual([rule])
    expect(() => target.setRules(['connect/tcp:*:*', 'nonsense'])).toThrow(TypeError)
    expect(target.rules().map((r) => r.text)).toEqual([rule])
    target.setRules([])
    expect(target.rules()).toEqual([])
    expect((await rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))).code).toBe('E_DENIED')
    expect(live.closed).toBe(false)
    const channel = await live.connect()
    await channel.write(new TextEncoder().encode('still'))
    expect(new TextDecoder().decode(await within('the echo on the live mapping', channel.read()) ?? new Uint8Array())).toBe('still')
    target.setRules([rule])
    await within('a grant by the rule set again', client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
  })

  it('a person answering always: granted, and a rule for this offer from this peer is added (rule event), so the next one is not asked', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    let asked = 0
    const target = await agent({ ask: () => { asked++; return 'always' } })
    const added: Array<{ rule: string, peerId: string }> = []
    target.on('rule', ({ rule, peerId }) => added.push({ rule: rule.text, peerId }))
    const client = await agent()
    await within('the first grant', client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    const expected = `connect/tcp:127.0.0.1:${echo.port}@${client.peer.peerId}`
    expect(added).toEqual([{ rule: expected, peerId: client.peer.peerId }])
    expect(target.rules().map((r) => r.text)).toEqual([expected])
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    await within('the second grant', client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(asked).toBe(1)
    expect(decisions.map((d) => [d.by, d.rule])).toEqual([['rule', expected]])
    // Another peer is asked: the rule names the first one only.
    const other = await agent()
    await within('a grant to another peer', other.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(asked).toBe(2)
  })

  it('always on a plain accept adds an accept rule for that peer; forgetAnswers and setRules without it make the next one asked', async () => {
    let asked = 0
    const target = await agent({ ask: () => { asked++; return 'always' }, onAccept: () => {} })
    const added: string[] = []
    target.on('rule', ({ rule }) => added.push(rule.text))
    const client = await agent()
    await within('the first accept', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))
    const expected = `accept/tcp:127.0.0.1:8080@${client.peer.peerId}`
    expect(added).toEqual([expected])
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    await within('the same accept again', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))
    expect(asked).toBe(1)
    expect(decisions.map((d) => [d.by, d.rule])).toEqual([['rule', expected]])
    // Without the rule, the yes is still remembered for the agent's life; forgetAnswers forgets it.
    target.setRules([])
    await within('the accept remembered', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))
    expect(asked).toBe(1)
    target.forgetAnswers(client.peer.peerId)
    await within('the accept asked again', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))
    expect(asked).toBe(2)
  })

  it('an accept rule grants only a plain accept of that address from its peer, and nothing to an agent without onAccept (a CLI agent)', async () => {
    const one = await agent()
    const two = await agent()
    let asked = 0
    const rule = `accept/tcp:127.0.0.1:8080@${one.peer.peerId}`
    const target = await agent({ allow: [rule], ask: () => { asked++; return false }, onAccept: () => {} })
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    await within('the accept the rule names', one.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))
    expect(decisions.map((d) => [d.by, d.rule])).toEqual([['rule', rule]])
    expect((await rejection(one.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8081 }))).code).toBe('E_DENIED')
    expect((await rejection(two.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))).code).toBe('E_DENIED')
    expect((await rejection(one.connect(target.peer.peerId, { host: '127.0.0.1', port: 8080 }))).code).toBe('E_DENIED')
    expect(asked).toBe(3)
    // `starsock listen --allow accept:*:*`: a Node agent has no onAccept, so the rule grants nothing.
    const cli = await agent({ allow: ['accept:*:*'] })
    expect((await rejection(one.offerAccept(cli.peer.peerId, { host: '127.0.0.1', port: 8080 }))).code).toBe('E_UNSUPPORTED')
  })

  it('always on a plaintext connection grants like yes and adds no rule (the id is only the server\'s word)', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    let asked = 0
    const target = await agent({ insecure: true, ask: () => { asked++; return 'always' } })
    const added: unknown[] = []
    target.on('rule', (r) => added.push(r))
    const client = await agent({ insecure: true })
    const dial = client.peer.dial.bind(client.peer)
    client.peer.dial = async (to, options = {}) => await dial(to, { ...options, secure: false })
    await within('the grant', client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(asked).toBe(1)
    expect(added).toEqual([])
    expect(target.rules()).toEqual([])
  })
  it('always on a bind with allowFrom is a remembered yes: no rule, which would grant the same bind without the list', async () => {
    let asked = 0
    const target = await agent({ ask: () => { asked++; return 'always' } })
    const added: unknown[] = []
    target.on('rule', (r) => added.push(r))
    const client = await agent()
    await within('the first bind', client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] }))
    expect(asked).toBe(1)
    expect(added).toEqual([])
    expect(target.rules()).toEqual([])
    // The same bind with the same list: remembered, not asked again.
    await within('the same bind again', client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] }))
    expect(asked).toBe(1)
    // The same bind without the list (anyone may connect): asked.
    await within('the bind without allowFrom', client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 }))
    expect(asked).toBe(2)
  })

  it('always on a file grants that file only: no file rule, the next file is asked', async () => {
    let asked = 0
    const onFile = (channel: Channel): void => { void (async () => { for await (const _ of channel) { /* drain */ } await channel.closeWrite() })().catch(() => {}) }
    const target = await agent({ ask: () => { asked++; return 'always' }, files: { onFile } })
    const added: unknown[] = []
    target.on('rule', (r) => added.push(r))
    const client = await agent()
    const first = await within('the first file', client.offerFile(target.peer.peerId, { name: 'a.txt', size: 0 }))
    await first.closeWrite()
    expect(asked).toBe(1)
    expect(added).toEqual([])
    expect(target.rules()).toEqual([])
    const second = await within('the second file', client.offerFile(target.peer.peerId, { name: 'a.txt', size: 0 }))
    await second.closeWrite()
    expect(asked).toBe(2)
  })

  it('always on a service adds service:NAME@PEERID, which follows the name: pointed elsewhere by setServices, it still grants without asking', async () => {
    const one = await tcpEcho()
    const two = await tcpEcho()
    cleanup.push(one, two)
    let asked = 0
    const target = await agent({ ask: () => { asked++; return 'always' }, services: { web: { to: { ip: '127.0.0.1', port: one.port }, proto: 'tcp' } } })
    const client = await agent()
    await within('the first grant', client.connectService(target.peer.peerId, { service: 'web' }))
    expect(target.rules().map((r) => r.text)).toEqual([`service:web@${client.peer.peerId}`])
    target.setServices({ web: { to: { ip: '127.0.0.1', port: two.port }, proto: 'tcp' } })
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    await within('the grant for the new target', client.connectService(target.peer.peerId, { service: 'web' }))
    expect(asked).toBe(1)
    expect(decisions.map((d) => [d.by, d.rule, d.service?.to.port])).toEqual([['rule', `service:web@${client.peer.peerId}`, two.port]])
  })

  it('a KILL that comes right after the person answered always: nothing is granted, remembered or added as a rule', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const muxes: Muxer[] = []
    let asked = 0
    // The ask's signal aborts when its answer is taken; the connection ends right then, as a KILL
    // arriving in that gap would abort the offer.
    const target = await agent({
      ask: (_request, signal) => {
        asked++
        signal.addEventListener('abort', () => { void muxes.at(-1)?.close(new StarsockError('E_KILLED', 'The requester gave up on the offer')) })
        return 'always'
      }
    })
    target.on('session', (mux) => muxes.push(mux))
    const decisions: OfferDecision[] = []
    target.on('offer', (d) => decisions.push(d))
    const added: unknown[] = []
    target.on('rule', (r) => added.push(r))
    const client = await agent()
    await rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(asked).toBe(1)
    expect(added).toEqual([])
    expect(target.rules()).toEqual([])
    expect(decisions.filter((d) => d.allowed)).toEqual([])
    // Not remembered either: the next offer is asked again.
    target.setRules([])
    const asking = rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    await waitFor('the person to be asked again', () => asked === 2)
    await asking
  })
})
