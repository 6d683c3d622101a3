/**
 * Where the server is: a URL (`http(s)://`, `ws(s)://`) or a multiaddr (`/ip4/.../tcp/.../ws`,
 * `/dns4/host/tcp/443/wss`), turned into the URL socket.io connects to, its socket.io path, and
 * the prefix of the websocket-star address this peer joins under.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { checkSocketPath, DEFAULT_SOCKET_PATH, socketPathOfUrl, socketPathPrefix } from '../shared/socket-path.ts'

/** A server location, resolved. */
export interface ServerAddress {
  /** `http(s)://host:port` for socket.io. */
  url: string
  /** `/ip4/…/tcp/…/ws` (or ip6/dns4, wss): what the peer's address starts with. */
  prefix: string
  /** The socket.io path: `/socket.io`, or `/PREFIX/socket.io` from the URL's path or the `path` option. */
  path: string
  /**
   * The server as a user gives it again (`--server`, a link): `url`, with `/PREFIX/` when the
   * socket.io path has one (`http://host:port/starsock/`).
   */
  href: string
}

/** `url` and `path` as one address another client (or the CLI) takes back: the prefix kept. */
function hrefOf (url: string, path: string): string {
  if (path === DEFAULT_SOCKET_PATH || !path.endsWith(DEFAULT_SOCKET_PATH)) return url
  return `${url}${socketPathPrefix(path)}/`
}

/** An address with its `href`. */
function addressOf (url: string, prefix: string, path: string): ServerAddress {
  return { url, prefix, path, href: hrefOf(url, path) }
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
export function parseServerAddress (server: string, path?: string, socketIoPath?: unknown): ServerAddress {
  if (typeof server !== 'string' || server.trim() === '') throw new TypeError('server must be a URL or a multiaddr')
  const given = path === undefined ? undefined : checkSocketPath('path', path)
  const { address, named } = parseLocation(server, given)
  if (socketIoPath === undefined) return address
  // socket.io's own `path` (in `socketOptions`): any path (a proxy's `/relay`), used when nothing
  // else names one, refused when something else names another.
  if (typeof socketIoPath !== 'string' || !socketIoPath.startsWith('/') || /[?#\s]/.test(socketIoPath)) throw new TypeError(`socketOptions.path must be a URL path starting with '/', got ${String(socketIoPath)}`)
  const trimmed = socketIoPath.length > 1 && socketIoPath.endsWith('/') ? socketIoPath.slice(0, -1) : socketIoPath
  if (named && trimmed !== address.path) throw new TypeError(`socketOptions.path is ${socketIoPath} but the ${given !== undefined ? 'path option' : 'server URL'} names the socket.io path ${address.path}: give one of them`)
  return addressOf(address.url, address.prefix, trimmed)
}

/** `parseServerAddress` once `path` is checked (`given`); `named`: whether `given` or the URL named a path. */
function parseLocation (server: string, given: string | undefined): { address: ServerAddress, named: boolean } {
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
    return { address: addressOf(`${secure ? 'https' : 'http'}://${urlHost}:${port}`, `/${names[0] ?? 'ip4'}/${host}/tcp/${port}/${ws}`, given ?? DEFAULT_SOCKET_PATH), named: given !== undefined }
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
  if (url.search !== '' || url.hash !== '') throw new TypeError(`server URL ${server} must not have a query or a fragment (give the token with --token, or as the token option)`)
  const urlPath = socketPathOfUrl(url.pathname)
  if (given !== undefined && url.pathname !== '/' && urlPath !== given) throw new TypeError(`server URL ${server} names the socket.io path ${urlPath} but the path option is ${given}: give one of them`)
  // `hostname` keeps the brackets of an IPv6 literal, as a URL needs them.
  return { address: addressOf(`${secure ? 'https' : 'http'}://${url.hostname}:${port}`, prefixFor(url.hostname, port, secure), given ?? urlPath), named: given !== undefined || url.pathname !== '/' }
}
