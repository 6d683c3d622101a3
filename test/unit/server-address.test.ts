import { describe, expect, it } from 'vitest'
import { parseServerAddress } from '../../client/server-address.ts'

describe('parseServerAddress', () => {
  it.each([
    ['http://127.0.0.1:9090', 'http://127.0.0.1:9090', '/ip4/127.0.0.1/tcp/9090/ws'],
    ['ws://127.0.0.1:9090', 'http://127.0.0.1:9090', '/ip4/127.0.0.1/tcp/9090/ws'],
    ['https://example.org', 'https://example.org:443', '/dns4/example.org/tcp/443/wss'],
    ['wss://example.org:8443/', 'https://example.org:8443', '/dns4/example.org/tcp/8443/wss'],
    ['http://[::1]:9090', 'http://[::1]:9090', '/ip6/::1/tcp/9090/ws'],
    ['http://localhost', 'http://localhost:80', '/dns4/localhost/tcp/80/ws'],
    ['/ip4/127.0.0.1/tcp/9090/ws', 'http://127.0.0.1:9090', '/ip4/127.0.0.1/tcp/9090/ws'],
    ['/dns4/example.org/tcp/443/wss', 'https://example.org:443', '/dns4/example.org/tcp/443/wss'],
    ['/ip6/::1/tcp/9090/ws', 'http://[::1]:9090', '/ip6/::1/tcp/9090/ws']
  ])('%s', (input, url, prefix) => {
    expect(parseServerAddress(input)).toEqual({ url, prefix, path: '/socket.io', href: url })
  })

  it.each([
    ['http://127.0.0.1:9090/starsock/', undefined, '/starsock/socket.io'],
    ['http://127.0.0.1:9090/starsock', undefined, '/starsock/socket.io'],
    ['http://127.0.0.1:9090/a/b/', undefined, '/a/b/socket.io'],
    ['http://127.0.0.1:9090/starsock/socket.io', undefined, '/starsock/socket.io'],
    ['wss://example.org/starsock/socket.io/', undefined, '/starsock/socket.io'],
    ['http://127.0.0.1:9090/socket.io/', undefined, '/socket.io'],
    ['http://127.0.0.1:9090', '/starsock/socket.io', '/starsock/socket.io'],
    ['http://127.0.0.1:9090/starsock/', '/starsock/socket.io/', '/starsock/socket.io'],
    ['/ip4/127.0.0.1/tcp/9090/ws', '/starsock/socket.io', '/starsock/socket.io'],
    // A page's address pasted as the server: its file or page name is dropped, as the page does.
    ['http://127.0.0.1:9090/index.html', undefined, '/socket.io'],
    ['http://127.0.0.1:9090/status', undefined, '/socket.io'],
    ['http://127.0.0.1:9090/status.json', undefined, '/socket.io'],
    ['http://127.0.0.1:9090/healthz', undefined, '/socket.io'],
    ['http://127.0.0.1:9090/starsock/index.html', undefined, '/starsock/socket.io'],
    ['http://127.0.0.1:9090/starsock/status', undefined, '/starsock/socket.io'],
    ['http://127.0.0.1:9090/starsock/status/', undefined, '/starsock/status/socket.io'],
    ['http://127.0.0.1:9090/a/b%20c/', undefined, '/a/b%20c/socket.io'],
    // Any other last segment is a prefix, dotted or not.
    ['http://127.0.0.1:9090/v1.2', undefined, '/v1.2/socket.io'],
    ['http://127.0.0.1:9090/relay.example/', undefined, '/relay.example/socket.io']
  ])('%s with path %s: socket.io at %s', (input, path, expected) => {
    expect(parseServerAddress(input, path).path).toBe(expected)
  })

  it.each([
    ['http://127.0.0.1:9090', 'http://127.0.0.1:9090'],
    ['http://127.0.0.1:9090/starsock', 'http://127.0.0.1:9090/starsock/'],
    ['https://example.org/a/b/socket.io', 'https://example.org:443/a/b/'],
    ['http://127.0.0.1:9090/starsock/status', 'http://127.0.0.1:9090/starsock/']
  ])('%s is given on as %s (href: the prefix kept)', (input, href) => {
    expect(parseServerAddress(input).href).toBe(href)
    expect(parseServerAddress(href).path).toBe(parseServerAddress(input).path)
  })

  it('takes socket.io\'s own path from socketOptions when nothing else names one, and refuses a conflict', () => {
    expect(parseServerAddress('http://127.0.0.1:9090', undefined, '/relay')).toMatchObject({ path: '/relay', url: 'http://127.0.0.1:9090' })
    expect(parseServerAddress('http://127.0.0.1:9090', undefined, '/relay/')).toMatchObject({ path: '/relay' })
    expect(parseServerAddress('http://127.0.0.1:9090/a/', undefined, '/a/socket.io/').path).toBe('/a/socket.io')
    expect(() => parseServerAddress('http://127.0.0.1:9090/a/', undefined, '/relay')).toThrow('socketOptions.path is /relay but the server URL names the socket.io path /a/socket.io: give one of them')
    expect(() => parseServerAddress('http://127.0.0.1:9090', '/a/socket.io', '/relay')).toThrow('but the path option names')
    expect(() => parseServerAddress('http://127.0.0.1:9090', undefined, 'relay')).toThrow(TypeError)
  })

  it.each([
    ['', undefined, 'must be a URL or a multiaddr'],
    ['not a url', undefined, 'neither a URL nor a multiaddr'],
    ['ftp://example.org', undefined, 'must be http(s):// or ws(s)://'],
    ['/ip4/127.0.0.1/udp/9090', undefined, 'must look like /ip4/HOST/tcp/PORT/ws'],
    ['/ip4/127.0.0.1/tcp/9090', undefined, 'must look like /ip4/HOST/tcp/PORT/ws'],
    ['/ip4/999.0.0.1/tcp/1/ws', undefined, 'is not valid'],
    ['http://127.0.0.1:9090', 'starsock/socket.io', "path must start with '/', got 'starsock/socket.io'"],
    ['http://127.0.0.1:9090', '/rtc', "path must be '/socket.io' or end with '/socket.io'"],
    ['http://127.0.0.1:9090/a/', '/b/socket.io', 'names the socket.io path /a/socket.io but the path option is /b/socket.io: give one of them'],
    ['http://127.0.0.1:9090/a//b/', undefined, "the server URL's path must be plain URL path segments"],
    ['http://127.0.0.1:9090/?token=x', undefined, 'must not have a query or a fragment'],
    ['http://127.0.0.1:9090/#token=x', undefined, 'must not have a query or a fragment (give the token with --token, or as the token option)'],
    ['http://127.0.0.1:9090/a%2fb/', undefined, "the server URL's path must be plain URL path segments"],
    ['http://127.0.0.1:9090/%zz/', undefined, "the server URL's path must be plain URL path segments"],
    ['http://127.0.0.1:9090', '/%2e%2e/socket.io', 'path must be plain URL path segments'],
    ['http://127.0.0.1:9090', '/a/%2E./socket.io', 'path must be plain URL path segments'],
    ['http://127.0.0.1:9090', '/%zz/socket.io', 'path must be plain URL path segments']
  ])('refuses %j (path %j) with a TypeError', (input, path, message) => {
    expect(() => parseServerAddress(input, path)).toThrow(TypeError)
    expect(() => parseServerAddress(input, path)).toThrow(message)
  })
})
