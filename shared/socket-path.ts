/**
 * The socket.io path of a starsock server: `/socket.io` (the default, the only one legacy
 * websocket-star clients know) or `/PREFIX/socket.io`. Its last segment is fixed so that the page,
 * the server's routes and a client given `http://host:port/PREFIX/` all find it from the prefix.
 */

/** socket.io's default path. */
export const DEFAULT_SOCKET_PATH = '/socket.io'
/** Longest path accepted, in characters. */
export const MAX_SOCKET_PATH_CHARS = 200

/** One URL path segment: RFC 3986 `pchar`s (percent escapes included), not empty. */
const SEGMENTS = /^(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$/

/**
 * Validate a socket.io path and return it without a trailing `/`; throws a `TypeError` or
 * `RangeError` naming `name` that says what is wrong.
 */
export function checkSocketPath (name: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string such as '/socket.io' or '/starsock/socket.io', got ${typeof value}`)
  if (value.length > MAX_SOCKET_PATH_CHARS) throw new RangeError(`${name} must be at most ${MAX_SOCKET_PATH_CHARS} characters, got ${value.length}`)
  if (!value.startsWith('/')) throw new TypeError(`${name} must start with '/', got '${value}'`)
  if (/[?#]/.test(value)) throw new TypeError(`${name} is a URL path: no '?' or '#', got '${value}'`)
  const path = value.endsWith('/') ? value.slice(0, -1) : value
  if (!SEGMENTS.test(path) || path.split('/').map(decodedSegment).some((s) => s === undefined || s === '.' || s === '..')) {
    throw new TypeError(`${name} must be plain URL path segments (no empty, '.' or '..' segments, no spaces), got '${value}'`)
  }
  if (path !== DEFAULT_SOCKET_PATH && !path.endsWith('/socket.io')) {
    throw new TypeError(`${name} must be '/socket.io' or end with '/socket.io' (e.g. '/starsock/socket.io'): the page and clients find it under its prefix, got '${value}'`)
  }
  return path
}

/**
 * A path segment decoded (`b%20c` is `b c`), or `undefined` when its escapes are not valid UTF-8
 * percent escapes (`%zz`) or it decodes to a `/`, `\` or NUL: what a server would see is then not
 * what was written (`%2e%2e` is `..`, `%2f` a separator).
 */
function decodedSegment (segment: string): string | undefined {
  if (!segment.includes('%')) return segment
  try {
    const decoded = decodeURIComponent(segment)
    return /[/\\\0]/.test(decoded) ? undefined : decoded
  } catch {
    return undefined
  }
}

/** The prefix the page and routes live under: `''` for `/socket.io`, `/starsock` for `/starsock/socket.io`. */
export function socketPathPrefix (path: string): string {
  return path.slice(0, -DEFAULT_SOCKET_PATH.length)
}

/** The server's own pages: the last segment of an address a user may paste instead of the page's. */
const PAGE_NAMES = new Set(['index.html', 'status', 'status.json', 'healthz', 'readyz', 'metrics'])

/**
 * The socket.io path a server URL's path names: `/` is the default; a path ending in
 * `/socket.io` is that path; any other is a prefix (`/starsock/` means `/starsock/socket.io`),
 * as the page's own address is. A last segment that is one of the server's pages (`index.html`,
 * `status`, `status.json`, `healthz`, ...) is dropped, as the page finds its prefix
 * (`new URL('.')`): `http://host/starsock/status` names `/starsock/socket.io`; any other name,
 * dotted or not (`/v1.2`), is a prefix.
 * Throws like `checkSocketPath`.
 */
export function socketPathOfUrl (pathname: string): string {
  const last = pathname.slice(pathname.lastIndexOf('/') + 1)
  if (PAGE_NAMES.has(last)) pathname = pathname.slice(0, -last.length)
  if (pathname === '' || pathname === '/') return DEFAULT_SOCKET_PATH
  const trimmed = pathname.endsWith('/') ? pathname.slice(0, -1) : pathname
  return checkSocketPath('the server URL\'s path', trimmed.endsWith('/socket.io') ? trimmed : `${trimmed}/socket.io`)
}
