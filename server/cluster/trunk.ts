/**
 * The trunk: links to the other nodes of a cluster, dials to the node that holds the listener,
 * and the bytes of cross-node streams with a per-stream credit.
 *
 * A cross-node stream is two ordinary relay streams, one on each node, between a real session and
 * a stand-in (`stand-in.ts`) for the peer on the other node. A link is opened at the first dial
 * to a node (`links.ts`: one WebSocket, authenticated with the cluster secret) and reused by both
 * nodes; a dial only ever asks the node that holds the listener. A link that closes or stops
 * answering fails every stream through it, on both nodes, with `E_PEER_GONE` naming the node.
 */
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { StarsockError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/logger.ts'
import type { ServerMetrics } from '../metrics.ts'
import type { ResolvedServerOptions } from '../options.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { Session } from '../session.ts'
import { LINK_DATA_HEADER_BYTES, LINK_TEXT_MAX_BYTES, type DataMessage, type DialMessage, type EventMessage, type LinkMessage } from './link-codec.ts'
import { acceptLink, initiateLink, Link, LINK_AUTH_TIMEOUT_MS, LINK_PING_INTERVAL_MS, LINK_CLOSE_CODES, LinkRefused, type LinkHandler, type LinkPeer, type RefusalReason } from './links.ts'
import { StandIn, type StandInHost } from './stand-in.ts'
import { TrunkMetrics } from './trunk-metrics.ts'
import type { ClusterView, TrunkPart } from './types.ts'

/** What the trunk is made with (by `ClusterNode`). */
export interface TrunkDeps {
  rendezvous: Rendezvous
  view: ClusterView
  options: ResolvedServerOptions
  metrics: ServerMetrics
  logger: Logger
}

/** Largest window of one stream between two nodes (also at most a quarter of `streamBufferBytes`). */
export const STREAM_WINDOW_BYTES = 1024 * 1024
/** Connections on the internal port still proving the secret, at most. */
export const MAX_UNAUTHENTICATED_LINKS = 32
/** Bytes a connection may send before it proved the secret (the handshake takes a few hundred). */
export const MAX_UNAUTHENTICATED_BYTES = 2 * LINK_TEXT_MAX_BYTES
/** TCP connections on the internal port, at most (links are one or two per node). */
export const MAX_LINK_CONNECTIONS = 256
/** Connections from one IP address not yet authenticated (from TCP connect to the proof), at most: one address cannot hold the port (each node opens one at a time to another: room for 16 nodes on one host). */
export const MAX_UNAUTHENTICATED_PER_IP = 16
/** The dialer's node waits this much longer than the dial timeout, so the listener's node answers first (with its code). */
const DIAL_REPLY_MARGIN_MS = 1000
/** On close, how long links get to write what waits (the streams' `E_SHUTDOWN`) before they close. */
const CLOSE_FLUSH_MS = 2000

/** See the module comment. */
export class Trunk implements TrunkPart, LinkHandler, StandInHost {
  readonly metrics: TrunkMetrics
  private http: HttpServer | undefined
  private wss: WebSocketServer | undefined
  private readonly byNode = new Map<string, Set<Link>>()
  private readonly connecting = new Map<string, Promise<Link>>()
  private unauthenticated = 0
  /** Connections not yet authenticated, by remote IP address (see `MAX_UNAUTHENTICATED_PER_IP`). */
  private readonly unauthenticatedByIp = new Map<string, number>()
  /** The sockets counted there and their address (gone from a closed socket), until they authenticate or close. */
  private readonly counted = new Map<Socket, string>()
  private closing = false
  private readonly logger: Logger
  /** Largest link message: a chunk as large as a client may send, with its header. */
  private readonly maxPayload: number
  /** The window this node gives the other node for a stream it receives through a stand-in. */
  private readonly window: number

  constructor (private readonly deps: TrunkDeps) {
    this.logger = deps.logger.child({ ns: 'starsock:server:trunk' })
    this.metrics = new TrunkMetrics(deps.metrics, () => this.links())
    this.maxPayload = Math.max(deps.options.maxMessageBytes + LINK_DATA_HEADER_BYTES + 1024, LINK_TEXT_MAX_BYTES)
    this.window = Math.min(STREAM_WINDOW_BYTES, Math.floor(deps.options.streamBufferBytes / 4))
  }

  /**
   * Listen on `clusterListen`; settles with the address to advertise (`clusterAdvertise`, else the
   * bound one). Throws a `RangeError` for a wildcard host without `clusterAdvertise`.
   */
  async listen (): Promise<string> {
    const { clusterListen, clusterAdvertise } = this.deps.options
    const { host, port } = splitHostPort(clusterListen)
    if (clusterAdvertise === '' && (host === '0.0.0.0' || host === '::' || host === '')) {
      throw new RangeError(`clusterListen ${clusterListen} is a wildcard address: set clusterAdvertise to the host:port other nodes reach this one on`)
    }
    // Timeouts are checked every `connectionsCheckingInterval` (30 s by default): a connection that
    // sends nothing would hold its place that long.
    const http = this.http = createServer({ connectionsCheckingInterval: 500 }, (req, res) => this.notUpgrade(req, res))
    http.maxConnections = MAX_LINK_CONNECTIONS
    http.headersTimeout = LINK_AUTH_TIMEOUT_MS
    http.requestTimeout = LINK_AUTH_TIMEOUT_MS
    http.on('connection', (socket: Socket) => this.connected(socket))
    http.on('clientError', (_err, socket: Socket) => {
      this.refused('bad-message', 'not HTTP')
      socket.destroy()
    })
    const wss = this.wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: this.maxPayload, clientTracking: false })
    wss.on('wsClientError', (_err, socket: Socket) => {
      this.refused('bad-message', 'bad WebSocket upgrade')
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
      socket.destroy()
    })
    wss.on('connection', (ws, req) => this.accepted(ws, req.socket))
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(port, host, () => { http.off('error', reject); resolve() })
    })
    const bound = http.address() as AddressInfo
    const advertised = clusterAdvertise !== '' ? clusterAdvertise : joinHostPort(host, bound.port)
    this.logger.info({ listen: joinHostPort(host, bound.port), advertised }, 'trunk listening')
    return advertised
  }

  /** A new stand-in for the peer at `to` when the view puts it on another member node (see `RendezvousCluster.remoteTarget`). */
  remoteTarget (to: string, _dialer: Session): Session | undefined {
    const node = this.deps.view.remoteNodeOf(to)
    const address = node === undefined ? undefined : this.deps.view.linkAddressOf(node)
    if (node === undefined || address === undefined) return undefined
    return new StandIn(node, to, splitHostPort(address).host, this).session
  }

  /**
   * Node `nodeId` left the cluster. A link that went silent (a frozen or unplugged node whose key
   * lapsed) is cut now: its streams fail. A link that still answers belongs to a node saying
   * goodbye (it ends its streams with `E_SHUTDOWN` after its grace, then closes its links) or one
   * that lost Redis: its streams go on, no new dial takes it, and it closes once they are over.
   */
  nodeGone (nodeId: string): void {
    for (const link of [...this.byNode.get(nodeId) ?? []]) {
      if (link.silentMs() > LINK_PING_INTERVAL_MS * 1.5 || link.dials.size === 0) link.terminate(`node ${nodeId} left the cluster`)
      else link.retiring = true
    }
  }

  /** Links open now (a link between two nodes counts on each). */
  links (): number {
    let n = 0
    for (const set of this.byNode.values()) n += set.size
    return n
  }

  /** Stand-ins (one per cross-node dial on each of its two nodes) still on a link now. */
  standIns (): number {
    let n = 0
    for (const set of this.byNode.values()) for (const link of set) n += link.dials.size
    return n
  }

  /** Let the links write what waits (the `E_SHUTDOWN` of every stream), close them and stop listening. */
  async close (): Promise<void> {
    this.closing = true
    const all = [...this.byNode.values()].flatMap((set) => [...set])
    await Promise.all(all.map(async (link) => await link.flush(CLOSE_FLUSH_MS)))
    for (const link of all) link.close()
    this.wss?.close()
    const http = this.http
    if (http !== undefined) {
      const closed = new Promise<void>((resolve) => http.close(() => resolve()))
      http.closeAllConnections()
      await closed
    }
  }

  // --- the dialer's side -------------------------------------------------------------------

  /**
   * Send a stand-in's dial (`ss-incomming` args: dialId, from, hint) to its node; settles with the
   * listener's ack arguments, rejects with the other node's `StarsockError`, `E_PEER_GONE` when the
   * node cannot be reached or the link goes, `E_DIAL_TIMEOUT` after `timeoutMs` and a margin.
   */
  async dial (standIn: StandIn, args: unknown[], timeoutMs: number): Promise<unknown[]> {
    try {
      const reply = await this.dialSteps(standIn, args, timeoutMs)
      this.metrics.dials.inc({ outcome: reply[0] === null || reply[0] === undefined ? 'accepted' : 'refused' })
      return reply
    } catch (err) {
      this.metrics.dials.inc({ outcome: 'failed' })
      throw err
    }
  }

  private async dialSteps (standIn: StandIn, args: unknown[], timeoutMs: number): Promise<unknown[]> {
    const [dialId, from, hint] = args
    if (typeof dialId !== 'string' || typeof from !== 'string') throw new TypeError('a stand-in dial takes (dialId, from, hint)')
    const h = typeof hint === 'object' && hint !== null ? hint as { starsock?: unknown, secure?: unknown } : {}
    standIn.dialId = dialId
    const link = await this.linkTo(standIn.node)
    if (standIn.forgotten) throw new StarsockError('E_PEER_GONE', 'Dialer disconnected during the dial')
    // A link that closed while this dial waited for it (after it opened) would never answer.
    if (!link.open) throw new StarsockError('E_PEER_GONE', `Server node ${standIn.node} unreachable (link closed)`)
    standIn.link = link
    standIn.key = link.newKey()
    link.dials.set(standIn.key, standIn)
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        standIn.pending = undefined
        reject(new StarsockError('E_DIAL_TIMEOUT', `Listener did not answer within ${timeoutMs} ms`))
      }, timeoutMs + DIAL_REPLY_MARGIN_MS)
      standIn.pending = {
        resolve: (reply) => { clearTimeout(timer); resolve(reply) },
        reject: (err) => { clearTimeout(timer); reject(err) }
      }
      link.send({ t: 'dial', k: standIn.key, from, to: standIn.addr, id: dialId, secure: h.secure === true, starsock: h.starsock === true, win: this.window })
      standIn.dialSent()
    })
  }

  /** An open link to `node`, opening one when there is none (every dial to it waits for the same). */
  private async linkTo (node: string): Promise<Link> {
    for (const link of this.byNode.get(node) ?? []) if (link.open && !link.retiring) return link
    let opening = this.connecting.get(node)
    if (opening === undefined) {
      opening = this.connect(node).finally(() => this.connecting.delete(node))
      this.connecting.set(node, opening)
    }
    return await opening
  }

  /**
   * Open and authenticate a link to `node`; rejects with `E_PEER_GONE` naming it. A node that
   * does not know this one yet (it learns members every `clusterNodeTtlMs / 3`: this node just
   * started) refuses it as unknown: asked once more after that.
   */
  private async connect (node: string): Promise<Link> {
    let open: { ws: WebSocket, peer: LinkPeer } | undefined
    try {
      try {
        open = await this.handshake(node)
      } catch (err) {
        if (!(err instanceof LinkRefused) || err.reason !== 'unknown-node' || this.closing) throw err
        await new Promise((resolve) => setTimeout(resolve, Math.ceil(this.deps.options.clusterNodeTtlMs / 3)))
        open = await this.handshake(node)
      }
    } catch (err) {
      throw new StarsockError('E_PEER_GONE', `Server node ${node} unreachable (${(err as Error).message})`)
    }
    if (this.closing) {
      open.ws.close(1001)
      throw new StarsockError('E_PEER_GONE', `Server node ${node} unreachable (this node is closing)`)
    }
    return this.add(new Link(node, 'initiator', open.ws, this, open.peer.heads))
  }

  /** Connect to `node` and prove the secret; settles with the open socket and what it said, rejects with `LinkRefused` (counted unless it never opened). */
  private async handshake (node: string): Promise<{ ws: WebSocket, peer: LinkPeer }> {
    const address = this.deps.view.linkAddressOf(node)
    if (address === undefined || this.closing) throw new LinkRefused('timeout', 'not a member')
    // A zero mask: ws then skips masking both ways. Masking protects proxies from what a page
    // makes a browser send; a link between two nodes carries no page's bytes, and masking every
    // chunk would cost a pass over it on both nodes.
    const ws = new WebSocket(`ws://${address}/`, { perMessageDeflate: false, maxPayload: this.maxPayload, handshakeTimeout: LINK_AUTH_TIMEOUT_MS, generateMask: (mask) => mask.fill(0) })
    ws.on('error', () => {}) // the close or the handshake says what went wrong
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', resolve)
        ws.once('close', () => reject(new LinkRefused('timeout', 'could not connect')))
      })
      const peer = await initiateLink(ws, this.deps.view.nodeId, node, this.deps.options.clusterSecret)
      return { ws, peer }
    } catch (err) {
      ws.terminate()
      const refused = err instanceof LinkRefused ? err : new LinkRefused('bad-message', (err as Error).message)
      // A link that never opened is not a refusal: only what the other side said or proved wrong is counted.
      if (refused.reason !== 'timeout') this.refused(refused.reason, `link to ${node}: ${refused.message}`)
      throw refused
    }
  }

  // --- the listener's side -----------------------------------------------------------------

  /** A TCP connection on the internal port: counted against its IP address until it authenticates or closes. */
  private connected (socket: Socket): void {
    const ip = socket.remoteAddress ?? ''
    const n = (this.unauthenticatedByIp.get(ip) ?? 0) + 1
    if (n > MAX_UNAUTHENTICATED_PER_IP) {
      this.refused('too-many', `too many connections proving the secret from ${ip}`)
      socket.destroy()
      return
    }
    this.unauthenticatedByIp.set(ip, n)
    this.counted.set(socket, ip)
    socket.once('close', () => this.authenticatedOrGone(socket))
  }

  /** `socket` proved the secret or closed: it no longer counts against its IP address. */
  private authenticatedOrGone (socket: Socket): void {
    const ip = this.counted.get(socket)
    if (ip === undefined) return
    this.counted.delete(socket)
    const n = (this.unauthenticatedByIp.get(ip) ?? 1) - 1
    if (n > 0) this.unauthenticatedByIp.set(ip, n)
    else this.unauthenticatedByIp.delete(ip)
  }

  /** A connection on the internal port: it must prove the secret in time, or it is refused and counted. */
  private accepted (ws: WebSocket, socket: Socket): void {
    ws.on('error', () => {})
    if (this.closing) return ws.close(1001)
    if (this.unauthenticated >= MAX_UNAUTHENTICATED_LINKS) return this.refuse(ws, 'too-many', 'too many connections proving the secret')
    this.unauthenticated++
    // Until it proved the secret a connection sends a few small messages: more is cut at once
    // (refused as bad-message) rather than buffered up to the links' maxPayload.
    let heard = 0
    const onData = (chunk: Buffer): void => {
      heard += chunk.byteLength
      if (heard > MAX_UNAUTHENTICATED_BYTES) ws.terminate()
    }
    socket.on('data', onData)
    const known = (node: string): boolean => this.deps.view.linkAddressOf(node) !== undefined
    acceptLink(ws, this.deps.view.nodeId, this.deps.options.clusterSecret, known).then((peer) => {
      this.unauthenticated--
      this.authenticatedOrGone(socket)
      socket.off('data', onData)
      if (this.closing) return ws.close(1001)
      this.add(new Link(peer.node, 'acceptor', ws, this, peer.heads))
    }, (err: unknown) => {
      this.unauthenticated--
      this.refuse(ws, err instanceof LinkRefused ? err.reason : 'bad-message', (err as Error).message)
    })
  }

  /** Any HTTP request other than the upgrade: refused and counted. */
  private notUpgrade (_req: IncomingMessage, res: ServerResponse): void {
    this.refused('bad-message', 'plain HTTP request')
    res.writeHead(426, { connection: 'close' }).end()
  }

  private refuse (ws: WebSocket, reason: RefusalReason, detail: string): void {
    this.refused(reason, detail)
    ws.close(LINK_CLOSE_CODES[reason], reason)
    setTimeout(() => ws.terminate(), 1000).unref?.()
  }

  /** Count and log a refusal (never the secret, nor the proofs). */
  private refused (reason: RefusalReason, detail: string): void {
    this.metrics.refusal(reason)
    this.logger.warn({ reason, detail: detail.slice(0, 200) }, 'cluster link refused')
  }

  /** A dial from the other node to a peer here: a stand-in for the dialer, then the rendezvous' own dial. */
  private incomingDial (link: Link, m: DialMessage): void {
    const ours = (m.k % 2 === 0) === (link.role === 'initiator')
    if (ours || link.dials.has(m.k)) return link.send({ t: 'fail', k: m.k, code: 'E_BAD_REQUEST', msg: 'Dial key in use' })
    const standIn = new StandIn(link.node, m.from, 'node', this)
    standIn.sendSide = 0
    standIn.dialId = m.id
    standIn.link = link
    standIn.key = m.k
    standIn.window = m.win
    standIn.session.starsock = m.starsock
    link.dials.set(m.k, standIn)
    const session = standIn.session
    this.deps.rendezvous.trunkDial(session, m.from, m.to, m.id, m.secure).then(({ refusal, listenerStarsock }) => {
      link.send({ t: 'reply', k: m.k, refusal: refusal ?? null, starsock: listenerStarsock, win: this.window })
    }, (err: unknown) => {
      const e = err instanceof StarsockError ? err : new StarsockError('E_INTERNAL')
      if (!(err instanceof StarsockError)) this.logger.error({ err }, 'cross-node dial failed')
      link.send({ t: 'fail', k: m.k, code: e.code, msg: e.message.slice(0, 256) })
      if (this.deps.rendezvous.relay.streamCount(session) === 0) this.forget(standIn)
    })
  }

  // --- links -------------------------------------------------------------------------------

  private add (link: Link): Link {
    let set = this.byNode.get(link.node)
    if (set === undefined) this.byNode.set(link.node, set = new Set())
    set.add(link)
    this.logger.info({ node: link.node, role: link.role }, 'cluster link open')
    return link
  }

  /** A text message on an open link (`LinkHandler`). */
  message (link: Link, m: LinkMessage): void {
    switch (m.t) {
      case 'dial': return this.incomingDial(link, m)
      case 'reply': case 'fail': return this.answered(link, m)
      case 'ev': return this.event(link, m)
      case 'ack': {
        const standIn = link.dials.get(m.k)
        if (standIn === undefined) return
        standIn.acked(m.n)
        this.deps.rendezvous.relay.drained(standIn.session)
        return
      }
      default: return this.bad(link, `unexpected ${m.t}`)
    }
  }

  /** The other node's answer to a dial of ours. */
  private answered (link: Link, m: Extract<LinkMessage, { t: 'reply' | 'fail' }>): void {
    const standIn = link.dials.get(m.k)
    const pending = standIn?.pending
    if (standIn === undefined || pending === undefined) return
    standIn.pending = undefined
    if (m.t === 'fail') return pending.reject(new StarsockError(m.code, m.msg))
    standIn.session.starsock = m.starsock
    standIn.window = m.win
    pending.resolve([m.refusal ?? undefined])
    // The listener may have accepted (and the dialer sent) before this answer came: the window is open now.
    this.deps.rendezvous.relay.drained(standIn.session)
  }

  /** A stream event the other node's relay emitted to its stand-in: the same call on this relay. */
  private event (link: Link, m: EventMessage): void {
    const standIn = link.dials.get(m.k)
    if (standIn === undefined) return
    const relay = this.deps.rendezvous.relay
    const { session } = standIn
    const id = standIn.streamId(m.s)
    if (m.e === 'accept') relay.accept(session, id, m.a ?? undefined)
    else if (m.e === 'credit') relay.credit(session, id, m.a)
    else if (m.e === 'abort') relay.abort(session, id, m.a)
    else if (m.f === true && typeof m.a === 'string') relay.failStream(session, id, m.a)
    else if (relay.end(session, id, m.a) && m.s === standIn.sendSide) standIn.farEnded()
  }

  /** Stream bytes on an open link: the chunk of the stand-in's stream on this relay. */
  data (link: Link, d: DataMessage): void {
    this.metrics.bytes.inc({ direction: 'in' }, d.payload.byteLength)
    const standIn = link.dials.get(d.k)
    if (standIn !== undefined) this.deps.rendezvous.relay.data(standIn.session, standIn.streamId(d.s), d.payload)
  }

  /** A malformed message: the other node is broken or not what it proved; cut the link. */
  bad (link: Link, what: string): void {
    this.metrics.badMessages.inc({ what })
    this.logger.warn({ node: link.node, what }, 'malformed message on a cluster link, cutting it')
    link.terminate(`malformed ${what}`)
  }

  /** The link's socket caught up: the relay may send to its stand-ins again. */
  drained (link: Link): void {
    for (const standIn of [...link.dials.values()]) this.deps.rendezvous.relay.drained(standIn.session)
  }

  /** A link closed or was cut: every stream through it fails here, every dial waiting on it rejects. */
  closed (link: Link, why: string): void {
    this.byNode.get(link.node)?.delete(link)
    if (this.byNode.get(link.node)?.size === 0) this.byNode.delete(link.node)
    if (!this.closing) this.logger.warn({ node: link.node, why, dials: link.dials.size }, 'cluster link closed')
    const message = `Server node ${link.node} unreachable (link ${why})`
    for (const standIn of [...link.dials.values()]) {
      standIn.linkLost(new StarsockError('E_PEER_GONE', message))
      this.deps.rendezvous.relay.dropSession(standIn.session, message)
      this.forget(standIn)
    }
  }

  // --- stand-ins ---------------------------------------------------------------------------

  /** Drop a stand-in whose streams are over (or whose dial failed); a retiring link with no dial left closes. */
  forget (standIn: StandIn): void {
    if (standIn.forgotten) return
    standIn.forgotten = true
    const link = standIn.link
    if (link?.dials.get(standIn.key) === standIn) {
      link.dials.delete(standIn.key)
      if (link instanceof Link && link.retiring && link.dials.size === 0) link.close()
    }
    standIn.linkLost(new StarsockError('E_PEER_GONE', 'Dial streams closed'))
    this.deps.rendezvous.relay.dropSession(standIn.session)
  }

  /** Stream bytes a stand-in sent on a link. */
  sent (bytes: number): void {
    this.metrics.bytes.inc({ direction: 'out' }, bytes)
  }
}

/** `host` and `port` of `host:port` (`[v6]:port`, brackets removed). */
function splitHostPort (value: string): { host: string, port: number } {
  const colon = value.lastIndexOf(':')
  const host = value.slice(0, colon).replace(/^\[(.*)\]$/, '$1')
  return { host, port: Number(value.slice(colon + 1)) }
}

/** `host:port`, an IPv6 host in brackets. */
function joinHostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
