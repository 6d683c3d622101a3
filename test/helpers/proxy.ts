/** A TCP proxy for tests that need a network drop the server does not see at once, or a record of what crossed it. */
import net from 'node:net'

/** Which way a chunk crossed the proxy: `up` from a client to the server, `down` from the server to a client. */
export type ProxyDirection = 'up' | 'down'

/** Options of `tcpProxy`. */
export interface ProxyOptions {
  /** Sees every chunk that crosses, each way, as it goes on (`connection` numbers the client connections from 0). */
  tap?: (direction: ProxyDirection, chunk: Buffer, connection: number) => void
}

/** What a proxy carried, kept per connection and direction (a tap for `tcpProxy`). */
export interface ProxyRecording {
  tap: NonNullable<ProxyOptions['tap']>
  /** Everything each connection carried `direction`, one buffer per connection. */
  streams: (direction: ProxyDirection) => Buffer[]
  /** Bytes recorded `direction`, all connections together. */
  bytes: (direction: ProxyDirection) => number
  /** How many of `samples` occur in what some connection carried `direction`. */
  count: (direction: ProxyDirection, samples: readonly Uint8Array[]) => number
}

/** A recorder of everything a proxy carries, both ways (pass its `tap` to `tcpProxy`). */
export function proxyRecording (): ProxyRecording {
  const chunks = { up: new Map<number, Buffer[]>(), down: new Map<number, Buffer[]>() }
  const streams = (direction: ProxyDirection): Buffer[] => [...chunks[direction].values()].map((list) => Buffer.concat(list))
  return {
    tap: (direction, chunk, connection) => {
      const list = chunks[direction].get(connection) ?? []
      list.push(chunk)
      chunks[direction].set(connection, list)
    },
    streams,
    bytes: (direction) => [...chunks[direction].values()].flat().reduce((n, c) => n + c.byteLength, 0),
    count: (direction, samples) => {
      const all = streams(direction)
      return samples.filter((sample) => all.some((s) => s.indexOf(sample) >= 0)).length
    }
  }
}

/**
 * A TCP proxy on 127.0.0.1 to `port`. `cut()` destroys the client side of every connection and
 * leaves the server side open and silent, as a network drop does until the server's ping timeout.
 * `drop()` destroys both sides: a drop the server sees at once (a reset, a restarted NAT);
 * `block(true)` resets new connections until `block(false)` (the network still down).
 * `options.tap` sees what crosses, each way (see `proxyRecording`).
 */
export async function tcpProxy (port: number, options: ProxyOptions = {}): Promise<{ url: string, cut: () => void, drop: () => void, block: (on: boolean) => void, close: () => void }> {
  const pairs = new Set<{ client: net.Socket, upstream: net.Socket }>()
  const stale: net.Socket[] = []
  let blocked = false
  let connections = 0
  const proxy = net.createServer((client) => {
    if (blocked) {
      client.resetAndDestroy()
      return
    }
    const upstream = net.connect(port, '127.0.0.1')
    const pair = { client, upstream }
    pairs.add(pair)
    const tap = options.tap
    if (tap !== undefined) {
      // A second 'data' listener beside the pipe: it sees the same chunks, in order, and changes nothing.
      const n = connections++
      client.on('data', (chunk: Buffer) => tap('up', chunk, n))
      upstream.on('data', (chunk: Buffer) => tap('down', chunk, n))
    }
    client.pipe(upstream)
    upstream.pipe(client)
    const forget = (): void => { pairs.delete(pair); client.destroy(); upstream.destroy() }
    client.on('error', forget)
    upstream.on('error', forget)
    client.on('close', () => { if (pairs.has(pair)) forget() })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const { port: proxyPort } = proxy.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    cut: () => {
      for (const pair of pairs) {
        pairs.delete(pair)
        pair.client.unpipe(pair.upstream)
        pair.upstream.unpipe(pair.client)
        pair.upstream.pause() // nothing more reaches the server, nothing is read from it: silent
        stale.push(pair.upstream)
        pair.client.destroy()
      }
    },
    block: (on) => { blocked = on },
    drop: () => {
      for (const pair of pairs) {
        pairs.delete(pair)
        pair.client.destroy()
        pair.upstream.destroy()
      }
    },
    close: () => {
      proxy.close()
      for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy() }
      for (const s of stale) s.destroy()
    }
  }
}
