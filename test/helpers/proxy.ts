/** A TCP proxy for tests that need a network drop the server does not see at once. */
import net from 'node:net'

/**
 * A TCP proxy on 127.0.0.1 to `port`. `cut()` destroys the client side of every connection and
 * leaves the server side open and silent, as a network drop does until the server's ping timeout.
 * `drop()` destroys both sides: a drop the server sees at once (a reset, a restarted NAT);
 * `block(true)` resets new connections until `block(false)` (the network still down).
 */
export async function tcpProxy (port: number): Promise<{ url: string, cut: () => void, drop: () => void, block: (on: boolean) => void, close: () => void }> {
  const pairs = new Set<{ client: net.Socket, upstream: net.Socket }>()
  const stale: net.Socket[] = []
  let blocked = false
  const proxy = net.createServer((client) => {
    if (blocked) {
      client.resetAndDestroy()
      return
    }
    const upstream = net.connect(port, '127.0.0.1')
    const pair = { client, upstream }
    pairs.add(pair)
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
