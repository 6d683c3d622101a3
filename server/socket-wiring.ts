/**
 * Attaches the rendezvous to a socket.io server: translates events into calls on `Rendezvous`
 * and results into acks. Every request that carries an ack gets exactly one reply; a request with
 * bad arguments gets an error string; an event without an ack that is bad is counted and ignored.
 */
import { isIP } from 'node:net'
import type { Server, Socket } from 'socket.io'
import { StarsockError, wireError } from '../shared/errors.ts'
import { EVENTS, parseStreamEvent } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import { checkDial, checkHello, checkJoin, checkLeave, checkPeersCursor, splitAck, type Ack } from '../shared/validate.ts'
import { MAX_QUEUED_PACKETS } from '../shared/constants.ts'
import type { ServerMetrics } from './metrics.ts'
import type { ResolvedServerOptions } from './options.ts'
import type { Rendezvous } from './rendezvous.ts'
import { sameSecret } from './secret.ts'
import { createSocketEndpoint } from './socket-endpoint.ts'

/** Events clients send that have their own handler; anything else with an ack gets "Unknown event". */
const HANDLED_EVENTS = new Set<string>([EVENTS.JOIN, EVENTS.LEAVE, EVENTS.DIAL, EVENTS.HELLO, EVENTS.PEERS, EVENTS.PING, EVENTS.UDP_ALLOCATE, EVENTS.UDP_REFRESH, EVENTS.UDP_RELEASE])

function once (ack: Ack | undefined): Ack | undefined {
  if (ack === undefined) return undefined
  let done = false
  return (...args) => {
    if (done) return
    done = true
    ack(...args)
  }
}

/**
 * Answer a request that failed: a `StarsockError` with its wire string; anything else is a bug
 * here, logged with its stack and answered `E_INTERNAL` (never "Crypto error" or a stack).
 */
function replyError (ack: Ack | undefined, err: unknown, log?: Logger): void {
  if (err instanceof StarsockError) {
    log?.debug({ code: err.code }, 'refused')
    return ack?.(err.toWire())
  }
  log?.error({ err: err instanceof Error ? err.stack : String(err) }, 'internal error')
  ack?.(new StarsockError('E_INTERNAL').toWire())
}

/**
 * The IP address the trusted proxy saw, from `X-Forwarded-For`: its rightmost entry, the one the
 * proxy itself appended (entries to its left were written by the client and prove nothing).
 * `undefined` without the header or when that entry is not an IP address.
 */
function forwardedIp (socket: Socket): string | undefined {
  const header = socket.handshake.headers['x-forwarded-for']
  const joined = Array.isArray(header) ? header.join(',') : header // repeated headers, in order
  const last = joined?.split(',').pop()?.trim()
  return last !== undefined && isIP(last) !== 0 ? last : undefined
}

/** The client's IP address: behind a trusted proxy what it saw (`forwardedIp`), else the socket's. */
function clientIp (socket: Socket, trustProxy: boolean): string {
  const ip = (trustProxy ? forwardedIp(socket) : undefined) ?? socket.handshake.address
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip // one key per client, whichever socket family it came in on
}

/** The client's TCP port; `undefined` behind a trusted proxy (the proxy's port says nothing). */
function clientPort (socket: Socket, trustProxy: boolean): number | undefined {
  if (trustProxy && forwardedIp(socket) !== undefined) return undefined
  return socket.request.socket?.remotePort
}

/** Wire `rendezvous` to every socket `io` accepts. */
export function attachRendezvous (io: Server, rendezvous: Rendezvous, options: ResolvedServerOptions, metrics: ServerMetrics, logger: Logger): void {
  if (options.token !== '') {
    io.use((socket, next) => {
      const auth = socket.handshake.auth as Record<string, unknown> | undefined
      const given = auth?.token ?? socket.handshake.query.token
      if (sameSecret(given, options.token)) return next()
      metrics.limitHits.inc({ limit: 'E_FORBIDDEN' })
      next(new Error(wireError('E_FORBIDDEN', 'Missing or wrong token')))
    })
  }
  io.on('connection', (socket) => {
    // `s` is read only when the transport drains, which cannot happen before it is assigned.
    const endpoint = createSocketEndpoint(socket, () => rendezvous.relay.drained(s), MAX_QUEUED_PACKETS)
    const s = rendezvous.connect(socket.id, clientIp(socket, options.trustProxy), endpoint, clientPort(socket, options.trustProxy))
    const log = logger.child({ session: socket.id })
    log.debug({ ip: s.ip, transport: socket.conn.transport.name }, 'connected')
    const bad = (event: string): void => { metrics.badRequests.inc({ event }) }
    const congested = (event: string): boolean => rendezvous.congested(s, event)
    const withinRate = (ack: Ack | undefined): boolean => {
      try {
        rendezvous.takeRequest(s)
        return true
      } catch (err) {
        replyError(ack, err, log)
        return false
      }
    }

    socket.on(EVENTS.JOIN, (...raw: unknown[]) => {
      if (congested(EVENTS.JOIN)) return
      const { args, ack: rawAck } = splitAck(raw)
      const ack = once(rawAck)
      const req = checkJoin(args)
      if (req instanceof StarsockError) { bad(EVENTS.JOIN); return replyError(ack, req) }
      rendezvous.join(s, req.addr, req.proof).then((result) => {
        if ('nonce' in result) return ack?.(null, result.nonce)
        // The resume secret rides as an extra, last element that legacy clients ignore.
        if (result.resume !== undefined) ack?.(null, null, result.peers, { resume: result.resume })
        else ack?.(null, null, result.peers)
      }, (err: unknown) => { replyError(ack, err, log) })
    })

    socket.on(EVENTS.LEAVE, (...raw: unknown[]) => {
      if (congested(EVENTS.LEAVE)) return
      const { args, ack } = splitAck(raw)
      if (!withinRate(ack)) return
      const req = checkLeave(args)
      if (req instanceof StarsockError) { bad(EVENTS.LEAVE); return replyError(ack, req) }
      rendezvous.leave(s, req.addr)
      ack?.(null)
    })

    socket.on(EVENTS.DIAL, (...raw: unknown[]) => {
      if (congested(EVENTS.DIAL)) return
      const { args, ack: rawAck } = splitAck(raw)
      const ack = once(rawAck)
      const req = checkDial(args)
      if (req instanceof StarsockError) { bad(EVENTS.DIAL); return replyError(ack, req) }
      rendezvous.dial(s, req.from, req.to, req.dialId).then((refusal) => {
        if (refusal === undefined) ack?.()
        else ack?.(refusal)
      }, (err: unknown) => { replyError(ack, err, log) })
    })

    socket.on(EVENTS.HELLO, (...raw: unknown[]) => {
      if (congested(EVENTS.HELLO)) return
      const { args, ack } = splitAck(raw)
      if (!withinRate(ack)) return
      const req = checkHello(args)
      if (req instanceof StarsockError) { bad(EVENTS.HELLO); return replyError(ack, req) }
      ack?.(null, rendezvous.hello(s, req))
    })

    socket.on(EVENTS.PEERS, (...raw: unknown[]) => {
      if (congested(EVENTS.PEERS)) return
      const { args, ack } = splitAck(raw)
      if (!withinRate(ack)) return
      const cursor = checkPeersCursor(args)
      if (cursor instanceof StarsockError) { bad(EVENTS.PEERS); return replyError(ack, cursor) }
      try {
        ack?.(null, rendezvous.peers(s, cursor))
      } catch (err) {
        replyError(ack, err, log)
      }
    })

    /** UDP relay requests: every one answered once. */
    const udpRequest = (event: string, run: (args: unknown[]) => Promise<unknown> | unknown): void => {
      socket.on(event, (...raw: unknown[]) => {
        if (congested(event)) return
        const { args, ack } = splitAck(raw)
        if (!withinRate(ack)) return
        Promise.resolve().then(() => run(args)).then((value) => ack?.(null, value), (err: unknown) => { replyError(ack, err, log) })
      })
    }
    udpRequest(EVENTS.UDP_ALLOCATE, async (args) => await rendezvous.udpAllocate(s, args[0]))
    udpRequest(EVENTS.UDP_REFRESH, (args) => rendezvous.udpRefresh(s, args[0]))
    udpRequest(EVENTS.UDP_RELEASE, (args) => { rendezvous.udpRelease(s, args[0]); return true })

    socket.on(EVENTS.PING, (...raw: unknown[]) => {
      const { ack } = splitAck(raw)
      if (!congested(EVENTS.PING) && withinRate(ack)) ack?.(null)
    })

    socket.onAny((event: unknown, ...raw: unknown[]) => {
      if (typeof event === 'string' && HANDLED_EVENTS.has(event)) return
      const parsed = typeof event === 'string' ? parseStreamEvent(event) : undefined
      if (parsed === undefined) {
        bad('unknown')
        const { ack } = splitAck(raw)
        return replyError(ack, new StarsockError('E_BAD_REQUEST', `Unknown event "${String(event).slice(0, 64)}"`))
      }
      const { type, streamId } = parsed
      const relay = rendezvous.relay
      const ok = type === 'accept' ? relay.accept(s, streamId, raw[0])
        : type === 'queue' ? relay.data(s, streamId, raw[0])
          : type === 'error' ? relay.end(s, streamId, raw[0])
            : type === 'credit' ? relay.credit(s, streamId, raw[0])
              : relay.abort(s, streamId, raw[0])
      if (!ok) bad(`stream-${type}`)
    })

    socket.on('disconnect', (reason) => {
      log.debug({ reason }, 'disconnected')
      endpoint.dispose()
      // A client that disconnects on purpose leaves; any other end keeps its identity reserved a while.
      rendezvous.disconnect(s, reason === 'client namespace disconnect')
    })
  })
}
