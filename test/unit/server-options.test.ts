import { readFileSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { resolveServerOptions, SERVER_OPTIONS, type ServerOptions } from '../../server/options.ts'

/** The rows of the options table (docs/options.md), by flag (each flag of a row like "`--key`, `--cert`"). */
function readmeOptionRows (): Map<string, { env: string, default: string }> {
  const section = readFileSync(new URL('../../docs/options.md', import.meta.url), 'utf8')
  const rows = new Map<string, { env: string, default: string }>()
  for (const line of section.split('\n')) {
    const cells = line.split(' | ').map((c) => c.replace(/^\| ?| ?\|$/g, ''))
    if (cells.length < 4 || !(cells[0] ?? '').startsWith('`--')) continue
    for (const [, flag] of (cells[0] ?? '').matchAll(/`(--[\w-]+)/g)) rows.set(flag ?? '', { env: cells[1] ?? '', default: cells[2] ?? '' })
  }
  return rows
}

/** A default in the table such as `4 MiB`, `1,000,000` or `0 (none)`, as a number. */
function readmeNumber (text: string): number {
  const m = /^([\d,]+)(?: ([MG])iB)?/.exec(text)
  if (m === null) return NaN
  return Number((m[1] ?? '').replace(/,/g, '')) * (m[2] === 'G' ? 1024 ** 3 : m[2] === 'M' ? 1024 ** 2 : 1)
}

describe('SERVER_OPTIONS, the one table of server options', () => {
  const entries = Object.entries(SERVER_OPTIONS)

  it('gives every option a flag, except the ones that say why not', () => {
    const flagless = entries.filter(([, spec]) => spec.flag === null)
    expect(flagless.map(([name]) => name)).toEqual(['webRoot', 'server'])
    for (const [, spec] of flagless) expect(spec.noFlag).toMatch(/\w/)
  })

  it('matches the options table of docs/options.md: every flag is listed with its env variable and default', () => {
    const rows = readmeOptionRows()
    for (const [name, spec] of entries) {
      if (spec.flag === null) continue
      const flag = spec.flag.split(' ')[0] ?? ''
      const row = rows.get(flag)
      expect(row, `docs/options.md row for ${flag} (${name})`).toBeDefined()
      if (spec.env !== undefined) expect(row?.env, `env of ${flag}`).toContain(`\`${spec.env}\``)
      if (spec.cli === 'integer') expect(readmeNumber(row?.default ?? ''), `default of ${flag}`).toBe(spec.default)
      if (spec.cli === 'switch' || spec.cli === 'inverted-switch') expect(row?.default, `default of ${flag}`).toBe('off')
    }
  })

  it('has defaults that pass its own checks', () => {
    expect(() => resolveServerOptions()).not.toThrow()
  })
})

describe('resolveServerOptions', () => {
  it('fills every default', () => {
    const o = resolveServerOptions()
    expect({ ...o, logger: undefined, webRoot: undefined }).toEqual({
      cryptoChallenge: true,
      strictMultiaddr: true,
      metrics: true,
      tls: undefined,
      maxMessageBytes: 1_000_000,
      nonceTtlMs: 30_000,
      dialTimeoutMs: 10_000,
      announceIntervalMs: 10_000,
      announceBatchPeers: 64,
      announceJoinsPerSecond: 4,
      streamBufferBytes: 8 * 1024 * 1024,
      socketBufferBytes: 16 * 1024 * 1024,
      ipBufferBytes: 64 * 1024 * 1024,
      senderStallTimeoutMs: 8_000,
      maxAddressesPerSocket: 8,
      maxStreamsPerSocket: 1024,
      maxDialsPerSecond: 100,
      maxPeers: 20_000,
      maxJoinsPerIpPerMinute: 600,
      maxPeersPerIp: 1000,
      maxConnectionsPerIp: 1000,
      identityGraceMs: 30_000,
      streamByteBudget: 0,
      streamIdleTimeoutMs: 0,
      allowPeers: [],
      token: '',
      corsOrigin: '*',
      trustProxy: false,
      stickyCookie: '',
      shutdownGraceMs: 5_000,
      logger: undefined,
      udpRelay: false,
      udpPorts: [40000, 40999],
      udpPublicIp: '',
      udpMaxAllocationsPerPeer: 4,
      udpMaxAllocationsPerIp: 128,
      udpOwnerGraceMs: 30_000,
      udpIdleMs: 60_000,
      udpLifetimeMs: 600_000,
      udpMaxBytes: 1024 * 1024 * 1024,
      udpMaxPacketsPerSecond: 5000,
      webRoot: undefined,
      path: '/socket.io',
      server: undefined,
      redis: '',
      clusterListen: '127.0.0.1:0',
      clusterAdvertise: '',
      clusterSecret: '',
      clusterNodeTtlMs: 10_000
    })
    expect(typeof o.logger.child).toBe('function')
    expect(o.webRoot).toMatch(/dist[/\\]web$/)
  })

  it('keeps a 0 and ignores an explicit undefined', () => {
    const o = resolveServerOptions({ announceIntervalMs: 0, shutdownGraceMs: 0, maxPeers: undefined, token: undefined })
    expect(o.announceIntervalMs).toBe(0)
    expect(o.shutdownGraceMs).toBe(0)
    expect(o.maxPeers).toBe(20_000)
    expect(o.token).toBe('')
  })

  it('takes a path with or without its trailing /', () => {
    expect(resolveServerOptions({ path: '/starsock/socket.io/' }).path).toBe('/starsock/socket.io')
    expect(resolveServerOptions({ path: '/a/b%20c/socket.io' }).path).toBe('/a/b%20c/socket.io')
    expect(resolveServerOptions({ path: '/socket.io/' }).path).toBe('/socket.io')
    // An escape that is a '.'/'..' segment, a separator, or no escape at all is refused.
    for (const path of ['/%2e%2e/socket.io', '/a/.%2E/socket.io', '/a%2fb/socket.io', '/%zz/socket.io', '/a%00/socket.io']) {
      expect(() => resolveServerOptions({ path }), path).toThrow('path must be plain URL path segments')
    }
  })

  it('takes a sticky cookie name that is an HTTP token, and refuses one that could split a Set-Cookie header', () => {
    expect(resolveServerOptions({ stickyCookie: 'starsock_sid' }).stickyCookie).toBe('starsock_sid')
    expect(resolveServerOptions({ stickyCookie: 'io' }).stickyCookie).toBe('io')
    for (const name of ['a b', 'a;b', 'a=b', 'a\r\nX-Injected: 1', 'é', 'a,b', 'x'.repeat(65)]) {
      expect(() => resolveServerOptions({ stickyCookie: name }), name).toThrow('stickyCookie must be a cookie name')
    }
    expect(() => resolveServerOptions({ stickyCookie: 1 as unknown as string })).toThrow('stickyCookie must be a string')
  })

  it('takes a Redis URL or socket path with a secret, and refuses one without the join challenge (any node could take any address)', () => {
    const secret = 'sixteen-chars-secret'
    expect(resolveServerOptions({ redis: 'redis://127.0.0.1:6379', clusterSecret: secret }).redis).toBe('redis://127.0.0.1:6379')
    expect(resolveServerOptions({ redis: '/run/redis.sock', clusterSecret: secret }).redis).toBe('/run/redis.sock')
    expect(() => resolveServerOptions({ redis: 'localhost:6379', clusterSecret: secret })).toThrow('redis must be a redis:// or rediss:// URL')
    expect(() => resolveServerOptions({ redis: 'redis://127.0.0.1:6379', clusterSecret: 'short' })).toThrow('clusterSecret must be at least 16 characters')
    expect(() => resolveServerOptions({ redis: 'redis://127.0.0.1:6379', clusterSecret: secret, cryptoChallenge: false })).toThrow('redis cannot be used with cryptoChallenge off')
    expect(resolveServerOptions({ cryptoChallenge: false }).redis).toBe('')
  })

  it('checks buffers against each other', () => {
    expect(resolveServerOptions({ maxMessageBytes: 3_000_000, streamBufferBytes: 6_000_000, socketBufferBytes: 6_000_000 }).socketBufferBytes).toBe(6_000_000)
  })

  it.each<[string, ServerOptions, ErrorConstructor, string]>([
    ['a non-integer', { maxPeers: 1.5 }, TypeError, 'maxPeers must be an integer, got 1.5'],
    ['a string for a number', { nonceTtlMs: '5' as never }, TypeError, 'nonceTtlMs must be an integer, got 5'],
    ['a small message size', { maxMessageBytes: 10 }, RangeError, 'maxMessageBytes must be at least 1000000, got 10'],
    ['a stream buffer under two messages', { maxMessageBytes: 2_000_000, streamBufferBytes: 3_000_000 }, RangeError, 'streamBufferBytes must be at least 4000000, got 3000000'],
    ['a socket buffer under a stream buffer', { socketBufferBytes: 2_000_000 }, RangeError, 'socketBufferBytes must be at least 8388608, got 2000000'],
    ['a long stall timeout', { senderStallTimeoutMs: 60_000 }, RangeError, 'senderStallTimeoutMs must be at most 15000, got 60000'],
    ['a negative budget', { streamByteBudget: -1 }, RangeError, 'streamByteBudget must be at least 0, got -1'],
    ['too few streams', { maxStreamsPerSocket: 1 }, RangeError, 'maxStreamsPerSocket must be at least 2, got 1'],
    ['a non-boolean switch', { metrics: 'yes' as never }, TypeError, 'metrics must be a boolean, got yes'],
    ['an allowlist with an empty id', { allowPeers: [''] }, TypeError, 'allowPeers must be an array of peer id strings'],
    ['an allowlist that is a string', { allowPeers: 'Qm' as never }, TypeError, 'allowPeers must be an array of peer id strings'],
    ['a token that is a number', { token: 5 as never }, TypeError, 'token must be a string'],
    ['an empty CORS origin', { corsOrigin: '' }, TypeError, 'corsOrigin must be a non-empty string'],
    ['a reversed port range', { udpPorts: [41000, 40000] }, RangeError, 'udpPorts must be [low, high] within 1-65535 with low < high, got 41000,40000'],
    ['a port range past 65535', { udpPorts: [60000, 70000] }, RangeError, 'udpPorts must be [low, high] within 1-65535 with low < high, got 60000,70000'],
    ['zero UDP idle time', { udpIdleMs: 0 }, RangeError, 'udpIdleMs must be at least 1, got 0'],
    ['a path without its leading /', { path: 'starsock/socket.io' }, TypeError, "path must start with '/', got 'starsock/socket.io'"],
    ['a path with a query', { path: '/starsock/socket.io?x=1' }, TypeError, "path is a URL path: no '?' or '#', got '/starsock/socket.io?x=1'"],
    ['a path with a fragment', { path: '/a#/socket.io' }, TypeError, "path is a URL path: no '?' or '#', got '/a#/socket.io'"],
    ['a path with a dot-dot segment', { path: '/a/../socket.io' }, TypeError, "path must be plain URL path segments (no empty, '.' or '..' segments, no spaces), got '/a/../socket.io'"],
    ['a path with an empty segment', { path: '//socket.io' }, TypeError, "path must be plain URL path segments (no empty, '.' or '..' segments, no spaces), got '//socket.io'"],
    ['a path with a space', { path: '/my app/socket.io' }, TypeError, "path must be plain URL path segments (no empty, '.' or '..' segments, no spaces), got '/my app/socket.io'"],
    ['a path not ending in /socket.io', { path: '/rtc' }, TypeError, "path must be '/socket.io' or end with '/socket.io' (e.g. '/starsock/socket.io'): the page and clients find it under its prefix, got '/rtc'"],
    ['a long path', { path: '/' + 'a'.repeat(200) + '/socket.io' }, RangeError, 'path must be at most 200 characters, got 211'],
    ['a path that is a number', { path: 5 as never }, TypeError, "path must be a string such as '/socket.io' or '/starsock/socket.io', got number"],
    ['a server that is not an http.Server', { server: {} as never }, TypeError, 'server must be a Node http.Server or https.Server (Express: the result of app.listen(); Fastify: fastify.server)'],
    ['a server with TLS material', { server: createHttpServer(), tls: { key: 'k', cert: 'c' } }, TypeError, 'server and tls cannot be used together: the server you attach to has its own TLS (make it with https.createServer)']
  ])('refuses %s with an exact message', (_, options, type, message) => {
    let thrown: unknown
    try {
      resolveServerOptions(options)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(type)
    expect((thrown as Error).message).toBe(message)
  })
})
