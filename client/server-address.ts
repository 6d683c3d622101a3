/**
 * Where the server is: a URL (`http(s)://`, `ws(s)://`) or a multiaddr (`/ip4/.../tcp/.../ws`,
 * `/dns4/host/tcp/443/wss`), turned into the URL socket.io connects to, its socket.io path, and
 * the prefix of the websocket-star address this peer joins under.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { checkSocketPath, DEFAULT_SOCKET_PATH, socketPathOfUrl } from '../shared/socket-path.ts'

/** A server location, resolved. */
export interface ServerAddress {
  /** `http(s)://host:port` for socket.io. */
  url: string
  /** `/ip4/…/tcp/…/ws` (or ip6/dns4, wss): what the peer's address starts with. */
  prefix: string
  /** The socket.io path: `/socket.io`, or `/PREFIX/socket.io` from the URL's path or the `path` option. */
  path: string
}

function prefixFor (host: string, port: string, secure: boolean): string {
  const ws = secure ? 'wss' : 'ws'
  const bare = host.replace(/^\[|\]$/g, '')
  const kind = /^\d{1,3}(\.\d{1,3}){3}$/.test(bare) ? 'ip4' : bare.includes(':') ? 'ip6' : 'dns4'
  return `/${kind}/${bare}/tcp/${port}/${ws}`
}

/**
 * Parse `server` and the socket.io `path` (when given: it wins over a URL's, which must then be
 * `/` or the same); throws a `TypeError` that says what is wrong with them. A URL's path names
 * the socket.io path: `/` the default, `/starsock/` (a prefix, as the page's own address) or
 * `/starsock/socket.io` the same `/starsock/socket.io`.
 */
export function parseServerAddress (server: string, path?: string): ServerAddress {
  if (typeof server !== 'string' || server.trim() === '') throw new TypeError('server must be a URL or a multiaddr')
  const given = path === undefined ? undefined : checkSocketPath('path', path)
  return parseLocation(server, given)
}

/** `parseServerAddress` once `path` is checked (`given`). */
function parseLocation (server: string, given: string | undefined): ServerAddress {
  if (server.startsWith('/')) {
    let names: string[]
    let tuples: Array<[number, string?]>
    try {
      const ma = multiaddr(server)
      names = ma.protoNames()
      tuples = ma.stringTuples()
    } catch (err) {
      throw new TypeError(`server multiaddr ${server} is not valid: ${(err as Error).message}`, { cause: err })
    }
    const host = tuples[0]?.[1]
    const port = names[1] === 'tcp' ? tuples[1]?.[1] : undefined
    const ws = names[2]
    if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(names[0] ?? '') || host === undefined || port === undefined || (ws !== 'ws' && ws !== 'wss')) {
      throw new TypeError(`server multiaddr ${server} must look like /ip4/HOST/tcp/PORT/ws (or ip6, dns4, wss)`)
    }
    const secure = ws === 'wss'
    const urlHost = names[0] === 'ip6' ? `[${host}]` : host
    // A multiaddr has no path: the `path` option gives one.
    return { url: `${secure ? 'https' : 'http'}://${urlHost}:${port}`, prefix: `/${names[0] ?? 'ip4'}/${host}/tcp/${port}/${ws}`, path: given ?? DEFAULT_SOCKET_PATH }
  }
  let url: URL
  try {
    url = new URL(server)
  } catch {
    throw new TypeError(`server ${server} is neither a URL nor a multiaddr`)
  }
  const secure = url.protocol === 'https:' || url.protocol === 'wss:'
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) throw new TypeError(`server URL ${server} must be http(s):// or ws(s)://`)
  const port = url.port !== '' ? url.port : secure ? '443' : '80'
  if (url.search !== '' || url.hash !== '') throw new TypeError(`server URL ${server} must not have a query or a fragment (give the token as the token option)`)
  const urlPath = socketPathOfUrl(url.pathname)
  if (given !== undefined && url.pathname !== '/' && urlPath !== given) throw new TypeError(`server URL ${server} names the socket.io path ${urlPath} but the path option is ${given}: give one of them`)
  // `hostname` keeps the brackets of an IPv6 literal, as a URL needs them.
  return { url: `${secure ? 'https' : 'http'}://${url.hostname}:${port}`, prefix: prefixFor(url.hostname, port, secure), path: given ?? urlPath }
}
