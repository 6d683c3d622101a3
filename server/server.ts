/**
 * `createServer`: the HTTP(S) server (its own, or one it attaches to), socket.io with the
 * rendezvous, and the plain routes.
 */
import { createServer as createHttpServer, ServerResponse, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { Server as TlsServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { Server as SocketIoServer } from 'socket.io'
import { wireError } from '../shared/errors.ts'
import { serverFrameParser } from '../shared/raw-parser.ts'
import { DEFAULT_HOST, DEFAULT_PORT } from './constants.ts'
import { routeRequest, type RouteContext } from './http-routes.ts'
import { tuneLegacySockets } from './legacy-packets.ts'
import { ServerMetrics } from './metrics.ts'
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from './options.ts'
import { Rendezvous } from './rendezvous.ts'
import { attachRendezvous } from './socket-wiring.ts'
import { socketPathPrefix } from '../shared/socket-path.ts'
import { ClusterDirectory } from './cluster/cluster-directory.ts'
import { ConnectionsPerIp, TOTAL_FACTOR } from './connections-per-ip.ts'
import type { ClusterNode } from './cluster/node.ts'
import type { ClusterStatus } from './cluster/types.ts'

import { VERSION } from './package-root.ts'

export { VERSION }

/** Engine.io heartbeat: a silent client is dropped after interval + timeout. */
const PING_INTERVAL_MS = 10_000
const PING_TIMEOUT_MS = 20_000

/** An upgrade on another path that no listener but starsock's hears is ended after this long (engine.io's own delay). */
const UNHEARD_UPGRADE_MS = 1000

/** Figures the server keeps about itself (the same as in `/metrics`). */
export interface ServerStats {
  sockets: number
  peers: number
  streams: number
  bufferedBytes: number
  wsPeerMessages: number
  /** Stream bytes forwarded to receivers since the start. */
  relayedBytes: number
}

/**
 * Serve starsock's page and routes (`/healthz`, `/readyz`, `/metrics`, `/status`, `/status.json`,
 * the page at `/`, all under the prefix of `path`) from a request handler of your own; any other
 * request goes to `next` (Express, Connect) and the call returns `false` (plain Node, Fastify).
 * Reads `req.originalUrl` when there is one, so an Express mount point does not matter.
 */
export type RequestHandler = (req: IncomingMessage & { originalUrl?: string }, res: ServerResponse, next?: (err?: unknown) => void) => boolean

/** A running (or ready to run) starsock server. */
export interface StarsockServer {
  /** The HTTP or HTTPS server: starsock's own, or the one given as `server`. */
  readonly http: HttpServer
  /** Whether starsock is attached to a server given as `server` (it then never listens or closes it). */
  readonly attached: boolean
  /** starsock's page and routes as a request handler, for an attached server (see `RequestHandler`). */
  readonly handleRequest: RequestHandler
  /** The socket.io server. */
  readonly io: SocketIoServer
  /** The rendezvous state. */
  readonly rendezvous: Rendezvous
  /** This node's part in a cluster of nodes (`redis`); `undefined` on a single node. */
  readonly cluster: ClusterNode | undefined
  /** The metrics. */
  readonly metrics: ServerMetrics
  /** Options in force. */
  readonly options: ResolvedServerOptions
  /** Start listening; settles with the bound address once listening. Rejects when attached: listen on your server. */
  listen: (port?: number, host?: string) => Promise<AddressInfo>
  /**
   * `http(s)://host:port` of the bound address, and `/PREFIX/` when `path` has one (what clients
   * and browsers take); throws until the server listens (when attached: until your server does).
   */
  url: () => string
  /** Figures now. */
  stats: () => ServerStats
  /**
   * Shut down: stop accepting, let open streams finish for up to `shutdownGraceMs`, then fail
   * what is left and disconnect everyone. Settles when everything is closed. An attached server
   * only lets go of your server (its listeners as they were), which keeps listening.
   */
  close: () => Promise<void>
}

/**
 * Create a starsock server; it listens once `listen` is called, or, with `server`, attaches to
 * yours at once.
 * @example
 * const server = createServer({ cryptoChallenge: true })
 * await server.listen(9090, '0.0.0.0')
 * @example
 * const app = express()
 * const http = app.listen(8080)
 * const starsock = createServer({ server: http, path: '/starsock/socket.io' })
 * app.use(starsock.handleRequest) // the page at /starsock/, /starsock/healthz, ...
 */
export function createServer (options: ServerOptions = {}): StarsockServer {
  const opts = resolveServerOptions(options)
  const logger = opts.logger.child({ ns: 'starsock:server' })
  // The gauge is read at scrape time, after `rendezvous` exists.
  const metrics = new ServerMetrics(opts.metrics, () => rendezvous.relay.bufferedBytes)
  const directory = opts.redis === '' ? undefined : new ClusterDirectory()
  const rendezvous: Rendezvous = new Rendezvous(opts, metrics, VERSION, logger, directory)
  /** This node's part in a cluster, once `startCluster` made it: its module (Redis's client, the node links) loads only with `redis`. */
  let cluster: ClusterNode | undefined
  let clusterStarting: Promise<void> | undefined
  const startCluster = async (): Promise<void> => {
    if (directory === undefined) return
    clusterStarting ??= (async () => {
      const { ClusterNode } = await import('./cluster/node.ts')
      cluster = new ClusterNode(rendezvous, directory, opts, metrics, logger)
      await cluster.start()
    })()
    await clusterStarting
  }
  let ready = false
  let closing: Promise<void> | undefined
  let closed = false
  metrics.udpGauges(() => ({ allocations: rendezvous.udp?.size ?? 0, endpoints: rendezvous.udp?.endpoints ?? 0 }))

  const stats = (): ServerStats => statsOf(rendezvous)

  const routes: RouteContext = {
    ready: () => ready && (directory === undefined || cluster?.ready() === true),
    registry: opts.metrics ? metrics.registry : undefined,
    token: opts.token,
    webRoot: opts.webRoot,
    prefix: socketPathPrefix(opts.path),
    status: () => ({ version: VERSION, ...stats(), ...(cluster === undefined ? {} : clusterFields(cluster.status())) })
  }
  const attached = opts.server !== undefined
  const http: HttpServer = opts.server ?? (opts.tls !== undefined ? createHttpsServer(opts.tls) : createHttpServer())
  const prefix = socketPathPrefix(opts.path)
  const isSocketIo = (req: IncomingMessage): boolean => req.url?.startsWith(opts.path + '/') === true
  const before = attached ? listenersOf(http) : undefined
  const connectionsPerIp = new ConnectionsPerIp(opts.maxConnectionsPerIp, TOTAL_FACTOR * opts.maxPeers, opts.trustProxy, metrics, logger, opts.nonceTtlMs)
  const io = createIo(http, opts, connectionsPerIp)
  const after = attached ? listenersOf(http) : undefined
  // engine.io's destroyUpgrade is off when attached (the app's own upgrade handlers may take their
  // time); an upgrade nobody else listens for is still ended after a second, as Node would end it.
  const dropUnheardUpgrade = (req: IncomingMessage, socket: Duplex): void => {
    if (isSocketIo(req)) return
    const others = http.listeners('upgrade').filter((fn) => fn !== dropUnheardUpgrade && !(after?.upgrade.includes(fn as Listener) === true && before?.upgrade.includes(fn as Listener) !== true))
    if (others.length > 0) return
    setTimeout(() => {
      if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) socket.destroy()
    }, UNHEARD_UPGRADE_MS).unref()
  }
  if (attached) http.on('upgrade', dropUnheardUpgrade)
  const handleRequest: RequestHandler = (req, res, next) => {
    // Once closed, starsock has let go of the server: everything is the app's again.
    if (closed) {
      next?.()
      return false
    }
    let taken = true
    routeRequest(routes, prefix, req, res, () => {
      taken = false
      next?.()
    })
    return taken
  }
  // socket.io answers its own path; on a server of our own every other request is ours.
  if (!attached) {
    http.on('request', (req, res) => {
      if (!isSocketIo(req)) routeRequest(routes, prefix, req, res)
    })
  }
  // While shutting down the port stays open (so /readyz can answer 503) but takes no new sockets.
  io.use((_socket, next) => { next(closing === undefined ? undefined : new Error(wireError('E_SHUTDOWN', 'Server shutting down'))) })
  attachRendezvous(io, rendezvous, opts, metrics, logger)
  // A connection whose session never joins may be evicted for a newcomer when the server is full.
  io.on('connection', (socket) => {
    const session = rendezvous.sessions.get(socket.id)
    if (session !== undefined) connectionsPerIp.bind(socket.conn, session.addrs)
  })
  tuneLegacySockets(io)
  forgetUpgradeRequests(io)

  const secure = http instanceof TlsServer
  const url = (): string => urlOf(http, secure) + (prefix === '' ? '' : prefix + '/')
  const startUdp = (): void => {
    const addr = http.address()
    if (addr === null || typeof addr === 'string') return void logger.warn({ address: addr }, 'no UDP relay: the server does not listen on a TCP address')
    rendezvous.startUdp(addr.address, addr.port)
  }
  if (attached) {
    // The user listens: the UDP relay binds to the address the user's server listens on.
    if (opts.udpRelay) {
      if (http.listening) startUdp()
      else http.once('listening', startUdp)
    }
    ready = true
    startCluster().catch((err: unknown) => logger.error({ err }, 'cluster node did not start'))
    logger.info({ path: opts.path, listening: http.listening, udpRelay: opts.udpRelay ? opts.udpPorts : undefined }, 'attached')
  }

  return {
    http,
    attached,
    handleRequest,
    io,
    rendezvous,
    get cluster () { return cluster },
    metrics,
    options: opts,
    url,
    stats,
    listen: async (port = DEFAULT_PORT, host = DEFAULT_HOST) => {
      if (attached) throw new Error('this starsock server is attached to your http.Server (option server): listen on that server instead')
      await listenOn(http, port, host)
      if (opts.udpRelay) rendezvous.startUdp(host, (http.address() as AddressInfo).port)
      await startCluster()
      ready = true
      logger.info({ url: url(), udpRelay: opts.udpRelay ? opts.udpPorts : undefined }, 'listening')
      return http.address() as AddressInfo
    },
    close: () => {
      closing ??= (async () => {
        ready = false
        http.off('listening', startUdp)
        logger.info({ streams: rendezvous.relay.openStreams }, 'shutting down')
        await clusterStarting?.catch(() => {})
        await cluster?.leaving()
        await rendezvous.close(opts.shutdownGraceMs)
        await cluster?.close()
        http.off('upgrade', dropUnheardUpgrade)
        if (before !== undefined && after !== undefined) {
          // socket.io's own close() would close the user's server too: disconnect, close the
          // engine, and give the server back its listeners as they were.
          io.disconnectSockets(true)
          io.engine.close()
          detach(http, io, before, after)
        } else {
          await new Promise<void>((resolve) => {
            void io.close(() => resolve())
            http.closeAllConnections?.()
          })
        }
        closed = true
        logger.info('closed')
      })()
      return closing
    }
  }
}

/** The server events engine.io listens to when it attaches. */
const ATTACH_EVENTS = ['request', 'upgrade', 'close', 'listening'] as const

type Listener = (...args: unknown[]) => void
type Listeners = Record<(typeof ATTACH_EVENTS)[number], Listener[]>

/** The server's listeners of the events engine.io attaches to, now. */
function listenersOf (http: HttpServer): Listeners {
  return Object.fromEntries(ATTACH_EVENTS.map((e) => [e, http.listeners(e)])) as Listeners
}

/**
 * Undo engine.io's attach (`after` less `before` are its listeners): remove its `upgrade`, `close`
 * and `listening` listeners, and put the `request` listeners it took (it wraps them in one of its
 * own) back in its wrapper's place. When something attached after it wrapped that wrapper in turn
 * (another socket.io), the wrapper stays in that chain but passes every request to the listeners
 * it took.
 */
function detach (http: HttpServer, io: SocketIoServer, before: Listeners, after: Listeners): void {
  for (const event of ['upgrade', 'close', 'listening'] as const) {
    for (const fn of after[event]) if (!before[event].includes(fn)) http.off(event, fn)
  }
  const wrapper = after.request.find((fn) => !before.request.includes(fn))
  if (wrapper === undefined) return
  const now = http.rawListeners('request') as Listener[]
  if (now.includes(wrapper)) {
    http.removeAllListeners('request')
    for (const fn of now) {
      if (fn !== wrapper) http.on('request', fn)
      else for (const taken of before.request) http.on('request', taken)
    }
  } else {
    (io.engine as unknown as { handleRequest: Listener }).handleRequest = (...args) => {
      for (const taken of before.request) taken.apply(http, args)
    }
  }
}

/** A cluster node's status as rows of `/status`: `clusterNode`, `clusterNodes`, `clusterRedis` (`up`/`down`), ... */
function clusterFields (status: ClusterStatus): Record<string, number | string> {
  return {
    clusterNode: status.nodeId,
    clusterNodes: status.nodes,
    clusterRedis: status.redis ? 'up' : 'down',
    clusterRemotePeers: status.remotePeers,
    clusterLinks: status.links
  }
}

function statsOf (rendezvous: Rendezvous): ServerStats {
  return {
    sockets: rendezvous.sessions.size,
    peers: rendezvous.directory.size,
    streams: rendezvous.relay.openStreams,
    bufferedBytes: rendezvous.relay.bufferedBytes,
    wsPeerMessages: rendezvous.announcer.sent,
    relayedBytes: rendezvous.relay.relayedBytes
  }
}

/** socket.io on `http`, as the legacy clients need it. */
function createIo (http: HttpServer, opts: ResolvedServerOptions, connectionsPerIp: ConnectionsPerIp): SocketIoServer {
  const io = new SocketIoServer(http, {
    allowEIO3: true, // the published websocket-star clients speak engine.io 3
    parser: serverFrameParser, // socket.io-parser, with starsock's raw data frames and one attachment per event (shared/raw-parser.ts)
    maxHttpBufferSize: opts.maxMessageBytes,
    cors: { origin: opts.corsOrigin === '*' ? '*' : opts.corsOrigin.split(',').map((o) => o.trim()) },
    serveClient: false,
    path: opts.path,
    // Attached, upgrades on other paths are the app's (its own WebSocket server may answer them
    // late): engine.io must not destroy them after a second.
    destroyUpgrade: opts.server === undefined,
    pingInterval: PING_INTERVAL_MS,
    pingTimeout: PING_TIMEOUT_MS,
    // A load balancer learns each session's node from this cookie in the handshake's answer, then
    // sticks on the `sid` parameter every later request carries (deploy/haproxy.cfg).
    cookie: opts.stickyCookie === '' ? false : { name: opts.stickyCookie, httpOnly: true, sameSite: 'lax', path: opts.path },
    allowRequest: connectionsPerIp.allowRequest
  })
  connectionsPerIp.attach(io.engine)
  return io
}

/** Where `forgetUpgradeRequests` keeps a WebSocket upgrade's response object on its request, until its headers are out. */
const UPGRADE_RESPONSE = Symbol('starsock:upgrade-response')

/**
 * Let go of the HTTP request each connection began with once nothing needs it. engine.io keeps it
 * for the life of the socket twice: as `conn.request`, and through the response object of a
 * WebSocket upgrade, which a `close` listener on the TCP socket holds and which holds the request
 * (`res.req`); socket.io's `handshake.headers` holds its headers. With the parser state, headers
 * and raw headers that is a few KB per idle peer (socket.io's "memory usage" docs suggest the
 * first cut). The response lets go once the upgrade's headers are written (engine.io's `headers`
 * event, the last use); the rest after `connection`, whose handler in `attachRendezvous`,
 * registered first, runs first and takes what the server needs: the client's IP address and
 * port, `X-Forwarded-For`; the token was checked before, by a middleware.
 */
function forgetUpgradeRequests (io: SocketIoServer): void {
  io.engine.use((req: IncomingMessage & { [UPGRADE_RESPONSE]?: { req: unknown } }, res: unknown, next: () => void) => {
    if (!(res instanceof ServerResponse)) req[UPGRADE_RESPONSE] = res as { req: unknown }
    next()
  })
  io.engine.on('headers', (_headers: unknown, req: IncomingMessage & { [UPGRADE_RESPONSE]?: { req: unknown } }) => {
    const res = req[UPGRADE_RESPONSE]
    if (res === undefined) return
    res.req = null
    delete req[UPGRADE_RESPONSE]
  })
  io.on('connection', (socket) => {
    (socket.conn as unknown as { request: unknown }).request = null
    socket.handshake.headers = {}
  })
}

/** `http(s)://host:port` of the bound address; throws before `listen`. */
function urlOf (http: HttpServer, tls: boolean): string {
  const addr = http.address()
  if (addr === null) throw new Error('server is not listening')
  if (typeof addr === 'string') throw new Error(`server listens on ${addr}, not a TCP address: it has no http URL`)
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return `${tls ? 'https' : 'http'}://${host}:${addr.port}`
}

/** Settles once `http` listens on `port` and `host`; rejects with the listen error. */
async function listenOn (http: HttpServer, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(port, host, () => {
      http.off('error', reject)
      resolve()
    })
  })
}
