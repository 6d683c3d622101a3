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
    expect(parseServerAddress(input)).toEqual({ url, prefix })
  })

  it.each([
    ['', 'must be a URL or a multiaddr'],
    ['not a url', 'neither a URL nor a multiaddr'],
    ['ftp://example.org', 'must be http(s):// or ws(s)://'],
    ['/ip4/127.0.0.1/udp/9090', 'must look like /ip4/HOST/tcp/PORT/ws'],
    ['/ip4/127.0.0.1/tcp/9090', 'must look like /ip4/HOST/tcp/PORT/ws'],
    ['/ip4/999.0.0.1/tcp/1/ws', 'is not valid']
  ])('refuses %j with a TypeError', (input, message) => {
    expect(() => parseServerAddress(input)).toThrow(TypeError)
    expect(() => parseServerAddress(input)).toThrow(message)
  })
})
