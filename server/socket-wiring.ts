/**
 * Attaches the rendezvous to a socket.io server. Translation only: each request event is a row of
 * `requestHandlers` (its check from `shared/validate.ts`, its call on `Rendezvous`, the shape of
 * its ack), answered through `reply`. Every request that carries an ack gets exactly one reply; a
 * request with bad arguments gets an error string; an event without an ack that is bad is counted
 * and ignored. Gating (congestion, request rate) and every decision live in `Rendezvous`.
 */
import type { Server, Socket } from 'socket.io'
import { StarsockError, wireError } from '../shared/errors.ts'
import { EVENTS, parseStreamEvent } from '../shared/events.ts'
import { withFields, type Logger } from '../shared/logger.ts'
import { FRAME_EVENT } from '../shared/raw-frame.ts'
import { checkDial, checkHello, checkJoin, checkLeave, checkPeersCursor, splitAck } from '../shared/validate.ts'
import { checkProfile } from '../shared/profile.ts'
import { MAX_QUEUED_PACKETS, MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND, STRAY_HOLD_MS } from './constants.ts'
import { ipLimitKey, WindowCounter } from './rate-limit.ts'
import type { ServerMetrics } from './metrics.ts'
import type { ResolvedServerOptions } from './options.ts'
import type { JoinChallenge, JoinDone, Rendezvous } from './rendezvous.ts'
import { once, reply, replyError } from './reply.ts'
import { sameSecret } from './secret.ts'
import type { Session } from './session.ts'
import { createSocketEndpoint } from './socket-endpoint.ts'
import { createEventEncoder } from './encoded-event.ts'
import { clientIpOf, forwardedIp } from './client-ip.ts'

/** One request event: what it asks, checked; the call on `Rendezvous` that answers it; the shape of its ack. */
interface Handler<T, R> {
  /** Counted against the socket's request rate (the cheap requests; joins and dials have their own limits). */
  rated: boolean
  /** The checked request; a `StarsockError` is a bad request (counted, answered). */
  check: (args: unknown[]) => T | StarsockError
  /** The call; returns or settles with its result, or throws a `StarsockError`. */
  call: (session: Session, request: T) => R | Promise<R>
  /** The ack's arguments for the result (`[null, result]` unless the protocol says otherwise). */
  ack: (result: R) => readonly unknown[]
}

type AnyHandler = Handler<unknown, unknown>
const handler = <T, R>(h: Handler<T, R>): AnyHandler => h as unknown as AnyHandler
/** UDP requests are checked by `Rendezvous`, after it found who asks (as the relay always answered). */
const unchecked = (args: unknown[]): unknown[] => args
const value = (result: unknown): unknown[] => [null, result]
const done = (): unknown[] => [null]

/** The ack of a join: the nonce to sign, or the peers (and, last, what legacy clients ignore: the resume id). */
function joinAck (result: JoinChallenge | JoinDone): unknown[] {
  if ('nonce' in result) return [null, result.nonce]
  return result.resume !== undefined ? [null, null, result.peers, { resume: result.resume }] : [null, null, result.peers]
}

/**
 * The ack of a dial: `[]` on success (`[null, { starsock }]`, whether the listener is a starsock
 * client, for a dialer that asked for dial hints); a listener's own refusal string, as is.
 */
function dialAck (result: { refusal: string | undefined, hint: { starsock: boolean } | undefined }): unknown[] {
  if (result.refusal !== undefined) return [result.refusal]
  return result.hint !== undefined ? [null, result.hint] : []
}

/** `ss-dial`: the rendezvous's dial, with the dialer's hint when it asked for hints. */
async function dial (r: Rendezvous, s: Session, q: { from: string, to: string, dialId: string, secure: boolean }): Promise<{ refusal: string | undefined, hint: { starsock: boolean } | undefined }> {
  let hint: { starsock: boolean } | undefined
  const refusal = await r.dial(s, q.from, q.to, q.dialId, q.secure, (starsock) => { if (s.dialHints) hint = { starsock } })
  return { refusal, hint }
}

/** The request events and how each is answered. */
function requestHandlers (r: Rendezvous): Map<string, AnyHandler> {
  return new Map([
    [EVENTS.JOIN, handler({ rated: false, check: checkJoin, call: async (s, q) => await r.join(s, q.addr, q.proof), ack: joinAck })],
    [EVENTS.LEAVE, handler({ rated: true, check: checkLeave, call: (s, q) => r.leave(s, q.addr), ack: done })],
    [EVENTS.DIAL, handler({ rated: false, check: checkDial, call: async (s, q) => await dial(r, s, q), ack: dialAck })],
    [EVENTS.HELLO, handler({ rated: true, check: checkHello, call: (s, q) => r.hello(s, q), ack: value })],
    [EVENTS.PROFILE, handler({ rated: true, check: (args) => checkProfile(args[0]), call: (s, profile) => r.setProfile(s, profile), ack: value })],
    [EVENTS.PEERS, handler({ rated: true, check: checkPeersCursor, call: (s, cursor) => r.peers(s, cursor), ack: value })],
    [EVENTS.PING, handler({ rated: true, check: unchecked, call: () => undefined, ack: done })],
    [EVENTS.UDP_ALLOCATE, handler({ rated: true, check: unchecked, call: async (s, args) => await r.udpAllocate(s, args[0]), ack: value })],
    [EVENTS.UDP_REFRESH, handler({ rated: true, check: unchecked, call: (s, args) => r.udpRefresh(s, args[0]), ack: value })],
    [EVENTS.UDP_RELEASE, handler({ rated: true, check: unchecked, call: (s, args) => r.udpRelease(s, args[0]), ack: () => [null, true] })]
  ])
}

/**
 * Count a request of `session` that no honest client makes (`starsock_bad_requests_total{event}`),
 * against the socket's budget (`MAX_BAD_REQUESTS_PER_SECOND`): past it, the socket is disconnected.
 */
type Bad = (session: Session, event: string) => void

/**
 * A stream event or raw frame of `session` for a stream or lane it does not have open, or one that
 * carries nothing: counted (as a bad request when `counted`) against its stray budget
 * (`MAX_STRAY_STREAM_EVENTS_PER_SECOND`) and its address's (`MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND`);
 * past either, the socket is not read for `STRAY_HOLD_MS`
 * (a socket that cannot be held, on long-polling, takes a strike instead).
 */
type Stray = (session: Session, event: string, counted: boolean) => void

/** Run one request of `session` through `h`: gate, check, call, shape (for `reply`). */
function run (h: AnyHandler, rendezvous: Rendezvous, session: Session, event: string, args: unknown[], bad: Bad): readonly unknown[] | Promise<readonly unknown[]> {
  if (h.rated) rendezvous.takeRequest(session)
  const request = h.check(args)
  if (request instanceof StarsockError) {
    bad(session, event)
    throw request
  }
  const result = h.call(session, request)
  return result instanceof Promise ? result.then(h.ack) : h.ack(result)
}

/** The client's IP address (`clientIpOf`). */
function clientIp (socket: Socket, trustProxy: boolean): string {
  return clientIpOf(socket.handshake.headers, socket.handshake.address, trustProxy)
}

/** The client's TCP port; `undefined` behind a trusted proxy (the proxy's port says nothing). */
function clientPort (socket: Socket, trustProxy: boolean): number | undefined {
  if (trustProxy && forwardedIp(socket.handshake.headers) !== undefined) return undefined
  return (socket.request as typeof socket.request | null)?.socket?.remotePort
}

/**
 * Refuse a second socket on an engine.io connection that already had one: after the first, the
 * server forgets the connection's upgrade request (`server.ts`), so a client that leaves the
 * namespace and connects again on the same connection would come with no address; and every
 * socket adds listeners to the connection. Clients reconnect with a new connection.
 */
function oneSocketPerConnection (io: Server, metrics: ServerMetrics): void {
  const used = new WeakSet<object>()
  io.use((socket, next) => {
    if (!used.has(socket.conn)) return next()
    metrics.badRequests.inc({ event: 'reconnect-same-connection' })
    next(new Error(wireError('E_BAD_REQUEST', 'One socket per connection: reconnect with a new connection')))
  })
  io.on('connection', (socket) => { used.add(socket.conn) })
}

/** Refuse sockets without the server's token (`token` option set). */
function requireToken (io: Server, token: string, metrics: ServerMetrics): void {
  io.use((socket, next) => {
    const auth = socket.handshake.auth as Record<string, unknown> | undefined
    const given = auth?.token ?? socket.handshake.query.token
    if (sameSecret(given, token)) return next()
    metrics.limitHits.inc({ limit: 'E_FORBIDDEN' })
    next(new Error(wireError('E_FORBIDDEN', 'Missing or wrong token')))
  })
}

/**
 * Raw frames and stream events (`socket.io-pull-stream.<type>.<id>`) go to the relay; anything
 * else is answered "Unknown event". Called from the socket's listener of every event, which runs
 * as each packet is dispatched (socket.io defers named listeners a tick): data and the end that
 * follows it must take the same path, or the end overtakes the data.
 */
function otherEvent (rendezvous: Rendezvous, s: Session, bad: Bad, stray: Stray, log: Logger, event: unknown, raw: unknown[]): void {
  const relay = rendezvous.relay
  if (event === FRAME_EVENT) {
    const wrong = relay.frame(s, raw[0])
    // A frame on a lane that just closed is a race; the others (an empty one aside) are never an honest client's.
    if (wrong === 'frame-lane' || wrong === 'frame-empty') stray(s, wrong, true)
    else if (wrong !== undefined) bad(s, wrong)
    return
  }
  const parsed = typeof event === 'string' ? parseStreamEvent(event) : undefined
  if (parsed === undefined) {
    bad(s, 'unknown')
    return replyError(splitAck(raw).ack, new StarsockError('E_BAD_REQUEST', `Unknown event "${String(event).slice(0, 64)}"`), log)
  }
  const { type, streamId } = parsed
  // Stream events carry no ack (legacy clients send none); one that does still gets its one reply.
  const { args, ack } = raw.length > 0 && typeof raw[raw.length - 1] === 'function' ? splitAck(raw) : { args: raw, ack: undefined }
  const ok = type === 'accept' ? relay.accept(s, streamId, args[0], args[1])
    : type === 'queue' ? relay.data(s, streamId, args[0])
      : type === 'error' ? relay.end(s, streamId, args[0])
        : type === 'credit' ? relay.credit(s, streamId, args[0])
          : relay.abort(s, streamId, args[0])
  // Credit for a stream that just ended is honest (it crossed the end), a flood of it is not.
  if (ok === 'gone') stray(s, `stream-${type}`, false)
  else if (ok === 'empty') stray(s, 'stream-queue-empty', true)
  else if (!ok) stray(s, `stream-${type}`, true)
  if (ack === undefined) return
  if (ok !== false) return ack(null)
  replyError(ack, new StarsockError('E_BAD_REQUEST', `Stream event ${type} not taken: no such stream of this socket, not its side of it, an ended stream, or bad arguments`), log)
}

/** Wire `rendezvous` to every socket `io` accepts. */
export function attachRendezvous (io: Server, rendezvous: Rendezvous, options: ResolvedServerOptions, metrics: ServerMetrics, logger: Logger): void {
  oneSocketPerConnection(io, metrics)
  if (options.token !== '') requireToken(io, options.token, metrics)
  const handlers = requestHandlers(rendezvous)
  // One function for every socket (a closure per socket is memory every idle peer would hold).
  const strike = (session: Session, event: string): void => {
    if (session.strike()) return
    metrics.limitHits.inc({ limit: 'E_LIMIT_BAD_REQUESTS' })
    logger.debug({ session: session.id, ip: session.ip, event }, 'disconnected: too many requests no client sends')
    session.endpoint.disconnect?.()
  }
  const bad: Bad = (session, event) => {
    metrics.badRequests.inc({ event })
    strike(session, event)
  }
  const strayPerIp = new WindowCounter(MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND, 1000)
  const stray: Stray = (session, event, counted) => {
    if (counted) metrics.badRequests.inc({ event })
    // Its own budget, then its address's (sockets are free).
    if (!session.stray() && strayPerIp.hit(ipLimitKey(session.ip))) return
    const hold = session.endpoint.holdReading?.(STRAY_HOLD_MS) ?? 'unable'
    if (hold === 'started') metrics.limitHits.inc({ limit: 'E_LIMIT_STRAY_EVENTS' })
    else if (hold === 'unable') strike(session, event)
  }
  // Peer batches are encoded once for all the clients they go to unchanged (issue 18).
  rendezvous.announcer.useEncoder(createEventEncoder(io.encoder))
  io.on('connection', (socket) => {
    // `s` is read only when the transport drains, which cannot happen before it is assigned.
    const endpoint = createSocketEndpoint(socket, () => rendezvous.relay.drained(s), MAX_QUEUED_PACKETS)
    const s = rendezvous.connect(socket.id, clientIp(socket, options.trustProxy), endpoint, clientPort(socket, options.trustProxy))
    // Fields on each line rather than a child logger per socket, and one listener for every
    // event rather than one per request event: both are memory every idle peer would hold.
    const log = withFields(logger, { session: socket.id })
    log.debug({ ip: s.ip, transport: socket.conn.transport.name }, 'connected')
    socket.onAny((event: unknown, ...raw: unknown[]) => {
      // socket.io calls this before it checks the socket is still connected: a request that came
      // in one read with the disconnect must not act for a session that is gone.
      if (!socket.connected) return
      const h = typeof event === 'string' ? handlers.get(event) : undefined
      if (h === undefined) return otherEvent(rendezvous, s, bad, stray, log, event, raw)
      if (rendezvous.congested(s, event as string)) return // a socket that does not read gets nothing until it catches up
      const { args, ack } = splitAck(raw)
      reply(once(ack), log, () => run(h, rendezvous, s, event as string, args, bad))
    })
    socket.on('disconnect', (reason) => {
      log.debug({ reason }, 'disconnected')
      endpoint.dispose()
      // A client that disconnects on purpose leaves; any other end keeps its identity reserved a while.
      rendezvous.disconnect(s, reason === 'client namespace disconnect', reason)
    })
  })
}
