import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { Programs, peerIdOf, type Program } from './helpers/programs.ts'
import { tcpEcho, tcpRoundTrip, udpClient, udpEcho, type Closable } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'

/** A free TCP (and, most likely, UDP) port on 127.0.0.1. */
async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** Send `data` over UDP to 127.0.0.1:`port` until the same comes back. */
async function udpRoundTrip (port: number, data: Buffer): Promise<Buffer> {
  const client = await udpClient()
  try {
    return await within(`a UDP echo through 127.0.0.1:${port}`, new Promise<Buffer>((resolve) => {
      const send = (): void => client.socket.send(data, port, '127.0.0.1')
      const timer = setInterval(send, 200)
      send()
      client.socket.on('message', (msg) => { clearInterval(timer); resolve(msg) })
    }), 15_000)
  } finally {
    client.close()
  }
}

describe('starsock up: one agent, many tunnels', () => {
  let server: StarsockServer & { port: number }
  let dir: string
  const programs = new Programs()
  const cleanup: Closable[] = []

  beforeEach(async () => {
    server = await startServer()
    dir = mkdtempSync(join(tmpdir(), 'starsock-up-'))
  })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) await c.close()
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const config = (name: string, text: string): string => {
    const file = join(dir, name)
    writeFileSync(file, `server = "${server.url()}"\n${text}`)
    return file
  }
  const up = (file: string): Program => programs.start(['up', '--config', file, '--json'])
  /** The `ready` event of mapping `id` (its nth). */
  const ready = async (p: Program, id: string, nth = 1): Promise<Record<string, unknown>> => {
    for (let i = 1; ; i++) {
      const e = await p.event('ready', 20_000, i)
      if (e.id === id && --nth === 0) return e
    }
  }

  it('runs two TCP forwards, a UDP forward and an expose in one process over one server connection; each moves bytes exact', async () => {
    const db = await tcpEcho()
    const web = await tcpEcho()
    const dns = await udpEcho()
    const local = await tcpEcho()
    cleanup.push(db, web, dns, local)
    const farKey = join(dir, 'far.key')
    const far = peerIdOf(farKey)
    const [p1, p2, p3, bindPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()])
    const farFile = config('far.toml', `key = "far.key"\nallow = ["connect/tcp:127.0.0.1:${db.port}", "connect/tcp:127.0.0.1:${web.port}", "connect/udp:127.0.0.1:${dns.port}", "bind/tcp:127.0.0.1:${bindPort}"]\n`)
    const farProc = up(farFile)
    await farProc.event('up')
    const nearFile = config('near.toml', `key = "near.key"
[[forward]]
name = "db"
peer = "${far}"
listen = "127.0.0.1:${p1}"
to = "127.0.0.1:${db.port}"

[[forward]]
name = "web"
peer = "${far}"
listen = ${p2}
to = "127.0.0.1:${web.port}"

[[forward]]
name = "dns"
peer = "${far}"
proto = "udp"
listen = "127.0.0.1:${p3}"
to = "127.0.0.1:${dns.port}"

[[expose]]
name = "back"
peer = "${far}"
bind_host = "127.0.0.1"
port = ${bindPort}
to = "127.0.0.1:${local.port}"
`)
    const near = up(nearFile)
    for (const id of ['db', 'web', 'dns', 'back']) expect((await ready(near, id)).state).toBe('up')
    const a = testBytes(300_000, 1)
    const b = testBytes(200_000, 2)
    const c = testBytes(100_000, 3)
    const [ra, rb, rc] = await Promise.all([tcpRoundTrip(p1, a), tcpRoundTrip(p2, b), tcpRoundTrip(bindPort, c)])
    expectBytes(ra, a, 'forward db')
    expectBytes(rb, b, 'forward web')
    expectBytes(rc, c, 'expose back')
    const d = Buffer.from(testBytes(1200, 4))
    expectBytes(await udpRoundTrip(p3, d), d, 'forward dns (udp)')
    // The server's own count: one socket per process, whatever the number of mappings.
    expect(server.stats().sockets).toBe(2)
    expect(server.stats().peers).toBe(2)
    await waitFor('no other sessions', () => near.out().split('\n').filter((l) => l.includes('"event":"session"')).length === 1, 2000)
    expect(await near.stop('SIGTERM')).toBe(0)
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 60_000)
})
