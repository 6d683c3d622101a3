/**
 * The published `libp2p-websocket-star@0.10.2` client (socket.io-client 2), driven as its users
 * drive it, with its own copies of multiaddr, peer-id and pull-stream.
 */
import { createRequire } from 'node:module'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'

const requireLegacy = createRequire(createRequire(import.meta.url).resolve('libp2p-websocket-star'))
const WStar = requireLegacy('libp2p-websocket-star')
const legacyMultiaddr = requireLegacy('multiaddr') as (s: string) => any
const LegacyPeerId = requireLegacy('peer-id')
/** The pull-stream the legacy client uses. */
export const pull = requireLegacy('pull-stream')

/** A legacy peer: its transport, listener, address and discovered addresses. */
export interface LegacyPeer {
  id: string
  addr: string
  transport: any
  listener: any
  discovered: Set<string>
  /** Disconnect for good (the legacy client would otherwise reconnect forever). */
  stop: () => void
}

/** A legacy PeerId for a fresh key made with the maintained crypto (fast); RSA ids are `Qm...`. */
export async function legacyPeerId (type: 'RSA' | 'Ed25519' = 'Ed25519'): Promise<any> {
  let bytes: Buffer
  if (type === 'RSA') {
    bytes = Buffer.from(privateKeyToProtobuf(await generateKeyPair('RSA', 2048)))
  } else {
    // The old crypto stores an Ed25519 private key as 96 bytes: seed, public key, public key again.
    const key = await generateKeyPair('Ed25519')
    bytes = Buffer.concat([Buffer.from([0x08, 0x01, 0x12, 0x60]), key.raw, key.publicKey.raw])
  }
  return await new Promise((resolve, reject) => {
    LegacyPeerId.createFromPrivKey(bytes, (err: Error | null, id: any) => err != null ? reject(err) : resolve(id))
  })
}

/** Join `server` on port `port` (over TLS with `wss`) as a legacy peer whose incoming connections go to `handler`. */
export async function startLegacyPeer (port: number, handler: (conn: any) => void, opts: { peerId?: any, addrId?: string, wss?: boolean } = {}): Promise<LegacyPeer> {
  const peerId = opts.peerId ?? await legacyPeerId()
  const id: string = peerId.toB58String()
  const addr = `/ip4/127.0.0.1/tcp/${port}/${opts.wss === true ? 'wss' : 'ws'}/p2p-websocket-star/ipfs/${opts.addrId ?? id}`
  const transport = new WStar({ id: peerId })
  const discovered = new Set<string>()
  transport.discovery.on('peer', (info: any) => {
    for (const ma of info.multiaddrs.toArray()) discovered.add(ma.toString())
  })
  const listener = transport.createListener(handler)
  listener.on('error', () => {}) // the listen callback reports it; an unhandled 'error' event would throw
  const stop = (): void => {
    listener.io?.disconnect()
    delete listener.io
  }
  await new Promise<void>((resolve, reject) => {
    listener.listen(legacyMultiaddr(addr), (err: Error | null) => {
      if (err != null) {
        stop()
        reject(err)
      } else {
        resolve()
      }
    })
  })
  return { id, addr, transport, listener, discovered, stop }
}

/** Dial `addr` from a legacy peer; settles with the connection or the dial's error. */
export async function legacyDial (peer: LegacyPeer, addr: string): Promise<any> {
  return await new Promise((resolve, reject) => {
    peer.transport.dial(legacyMultiaddr(addr), (err: Error | null, conn: any) => err != null ? reject(err) : resolve(conn))
  })
}

/** Send `data` in `chunkSize` pieces over `conn` and collect everything that comes back. */
export async function legacyExchange (conn: any, data: Uint8Array, chunkSize = 64 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = []
  for (let i = 0; i < data.length; i += chunkSize) chunks.push(Buffer.from(data.subarray(i, i + chunkSize)))
  return await new Promise((resolve, reject) => {
    pull(
      pull.values(chunks),
      conn,
      pull.collect((err: unknown, got: Buffer[]) => err != null ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(Buffer.concat(got)))
    )
  })
}
