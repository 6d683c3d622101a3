import net from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { peerIdOf, type Program } from './helpers/programs.ts'
import { SocksClient } from 'socks'
import { tcpEcho, tcpRoundTrip, udpClient, udpEcho } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'
import { eventOf, freePort, freePorts, table, useUp } from './helpers/up.ts'

/** Connect from `localAddress`, write, and settle with what came back and whether the connection was reset. */
async function tryFrom (port: number, localAddress: string, data: Uint8Array, host = '127.0.0.1'): Promise<{ data: Buffer, reset: boolean }> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host, port, localAddress, allowHalfOpen: true })
    const parts: Buffer[] = []
    let reset = false
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('error', () => { reset = true })
    socket.on('end', () => socket.end())
    socket.on('close', () => resolve({ data: Buffer.concat(parts), reset }))
    socket.end(data)
  })
}

/** Round trip through a SOCKS5 proxy on 127.0.0.1:`proxy` to `host:port`. */
async function socksRoundTrip (proxy: number, host: string, port: number, data: Uint8Array): Promise<Buffer> {
  const { socket } = await within(`a SOCKS5 CONNECT to ${host}:${port}`, SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host, port } }), 15_000)
  return await within('the SOCKS5 round trip', new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = []
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('end', () => resolve(Buffer.concat(parts)))
    socket.on('error', reject)
    socket.end(data)
  }), 15_000)
}

/** A raw SOCKS5 CONNECT without auth to `ip4:port`; settles with the reply bytes. */
async function socksReply (proxy: number, ip4: number[], port: number): Promise<Buffer> {
  const p = Buffer.alloc(2)
  p.writeUInt16BE(port)
  return await within('a SOCKS5 reply', new Promise<Buffer>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port: proxy })
    const parts: Buffer[] = []
    socket.on('data', (c: Buffer) => { parts.push(c); if (Buffer.concat(parts).byteLength >= 12) socket.destroy() })
    socket.on('error', () => {})
    socket.on('close', () => resolve(Buffer.concat(parts)))
    socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, ...ip4]), p]))
  }), 20_000)
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

/** A forward named "shell" to the far side's service "shell". */
const SHELL_FORWARD = (far: string, port: number): string => table('forward', { name: 'shell', peer: far, listen: port, service: 'shell' })

describe('starsock up: one agent, many tunnels', () => {
  const { server, dir, cleanup, config, up, far: farSide } = useUp({ prefix: 'starsock-up-' })
  /** A far side (with `--ask`, `text` first in its file) whose service "shell" (a TCP echo) a person is asked about. */
  const askingFar = async (text: string): Promise<{ id: string, proc: Program }> => {
    const shell = await tcpEcho()
    cleanup.push(shell)
    return await farSide(`${text}[services]\nshell = { to = "127.0.0.1:${shell.port}", ask = true }\n`, ['--ask'])
  }

  /** The `ready` event of mapping `id`. */
  const ready = async (p: Program, id: string): Promise<Record<string, unknown>> => await eventOf(p, 'ready', id)

  it('runs two TCP forwards, a UDP forward, an expose and a SOCKS5 listener in one process over one server connection; each moves bytes exact', async () => {
    const db = await tcpEcho()
    const web = await tcpEcho()
    const dns = await udpEcho()
    const local = await tcpEcho()
    const proxied = await tcpEcho()
    cleanup.push(db, web, dns, local, proxied)
    const [p1, p2, p3, bindPort, proxy] = await freePorts(5)
    const { id: far, proc: farProc } = await farSide(`allow = ["connect/tcp:127.0.0.1:${db.port}", "connect/tcp:127.0.0.1:${web.port}", "connect/udp:127.0.0.1:${dns.port}", "bind/tcp:0.0.0.0:${bindPort}", "connect/tcp:localhost:${proxied.port}"]\n`)
    const nearFile = config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'db', peer: far, listen: `127.0.0.1:${p1}`, to: `127.0.0.1:${db.port}` }) +
      table('forward', { name: 'web', peer: far, listen: p2, to: `127.0.0.1:${web.port}` }) +
      table('forward', { name: 'dns', peer: far, proto: 'udp', listen: `127.0.0.1:${p3}`, to: `127.0.0.1:${dns.port}` }) +
      table('expose', { name: 'back', peer: far, port: bindPort, to: `127.0.0.1:${local.port}` }) +
      table('socks', { name: 'proxy', peer: far, listen: proxy }))
    const near = up(nearFile)
    for (const id of ['db', 'web', 'dns', 'back', 'proxy']) expect((await ready(near, id)).state).toBe('up')
    // The expose bound 0.0.0.0 there: its address is one that can be used, not the wildcard.
    const back = (await ready(near, 'back')).address as { ip: string, port: number }
    expect(back.port).toBe(bindPort)
    expect(back.ip).not.toBe('0.0.0.0')
    const a = testBytes(300_000, 1)
    const b = testBytes(200_000, 2)
    const c = testBytes(100_000, 3)
    const [ra, rb, rc] = await Promise.all([tcpRoundTrip(p1, a), tcpRoundTrip(p2, b), tcpRoundTrip(bindPort, c)])
    expectBytes(ra, a, 'forward db')
    expectBytes(rb, b, 'forward web')
    expectBytes(rc, c, 'expose back')
    const d = Buffer.from(testBytes(1200, 4))
    expectBytes(await udpRoundTrip(p3, d), d, 'forward dns (udp)')
    const e = testBytes(150_000, 5)
    expectBytes(await socksRoundTrip(proxy, 'localhost', proxied.port, e), e, 'socks5 to a domain name')
    // The server's own count: one socket per process, whatever the number of mappings.
    expect(server().stats().sockets).toBe(2)
    expect(server().stats().peers).toBe(2)
    // And one connection between the two peers, whatever the number of mappings.
    await waitFor('no other sessions', () => near.out().split('\n').filter((l) => l.includes('"event":"session"')).length === 1, 2000)
    expect(await near.stop('SIGTERM')).toBe(0)
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 60_000)

  it('every mapping comes back when the far side restarts cleanly, without the first process restarting', async () => {
    const db = await tcpEcho()
    const dns = await udpEcho()
    const local = await tcpEcho()
    cleanup.push(db, dns, local)
    const [p1, p2, bindPort] = await freePorts(3)
    const first = await farSide(`allow = ["connect/tcp:127.0.0.1:${db.port}", "connect/udp:127.0.0.1:${dns.port}", "bind/tcp:127.0.0.1:${bindPort}"]\n`)
    const far = first.id
    let farProc = first.proc
    const farFile = join(dir(), 'far.toml')
    const near = up(config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'db', peer: far, listen: p1, to: `127.0.0.1:${db.port}` }) +
      table('forward', { name: 'dns', peer: far, proto: 'udp', listen: p2, to: `127.0.0.1:${dns.port}` }) +
      table('expose', { name: 'back', peer: far, bind_host: '127.0.0.1', port: bindPort, to: `127.0.0.1:${local.port}` })))
    for (const id of ['db', 'dns', 'back']) expect((await ready(near, id)).state).toBe('up')
    const a = testBytes(100_000, 11)
    expectBytes(await tcpRoundTrip(p1, a), a, 'forward before the restart')
    expect(await farProc.stop('SIGTERM')).toBe(0)
    for (const id of ['db', 'dns', 'back']) await eventOf(near, 'away', id)
    farProc = up(farFile)
    await farProc.event('up')
    for (const id of ['db', 'dns', 'back']) await eventOf(near, 'back', id, 30_000)
    const b = testBytes(120_000, 12)
    const c = testBytes(80_000, 13)
    const [rb, rc] = await Promise.all([tcpRoundTrip(p1, b), tcpRoundTrip(bindPort, c)])
    expectBytes(rb, b, 'forward after the restart')
    expectBytes(rc, c, 'expose after the restart')
    const d = Buffer.from(testBytes(900, 14))
    expectBytes(await udpRoundTrip(p2, d), d, 'udp forward after the restart')
    expect(near.proc.exitCode).toBe(null)
    expect(near.out()).not.toContain('"event":"failed"')
    expect(await near.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('allow_from refuses another address here and on the far bind; a SOCKS5 CONNECT the far rules deny gets 0x02', async () => {
    const db = await tcpEcho()
    const secret = await tcpEcho()
    const webTarget = await tcpEcho()
    const local = await tcpEcho()
    cleanup.push(db, secret, webTarget, local)
    const [p1, proxy, bindPort] = await freePorts(3)
    // The far side offers "web" (its own choice of target) and allows db and one bind; nothing else.
    const { id: far, proc: farProc } = await farSide(`allow = ["connect/tcp:127.0.0.1:${db.port}", "bind/tcp:127.0.0.1:${bindPort}"]\n[services]\nweb = "127.0.0.1:${webTarget.port}"\n`)
    const near = up(config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'db', peer: far, listen: `0.0.0.0:${p1}`, to: `127.0.0.1:${db.port}`, allow_from: ['127.0.0.1/32'] }) +
      table('socks', { name: 'proxy', peer: far, listen: proxy }) +
      table('expose', { name: 'back', peer: far, bind_host: '127.0.0.1', port: bindPort, to: `127.0.0.1:${local.port}`, allow_from: ['127.0.0.1/32'] })))
    for (const id of ['db', 'proxy', 'back']) expect((await ready(near, id)).state).toBe('up')
    const a = testBytes(50_000, 21)
    const ok = await tryFrom(p1, '127.0.0.1', a)
    expectBytes(ok.data, a, 'a forward from an allowed address')
    const other = await tryFrom(p1, '127.0.0.2', a)
    expect(other.data.byteLength).toBe(0)
    expect(other.reset).toBe(true)
    const refused = await near.event('refused')
    expect(refused).toMatchObject({ id: 'db', src: { ip: '127.0.0.2' } })
    // The far side checks the expose's list on the port it bound.
    expectBytes((await tryFrom(bindPort, '127.0.0.1', a)).data, a, 'an expose from an allowed address')
    const far2 = await tryFrom(bindPort, '127.0.0.2', a)
    expect(far2.data.byteLength).toBe(0)
    expect(far2.reset).toBe(true)
    // SOCKS5: a target the far rules do not allow is "connection not allowed by ruleset" (0x02).
    const reply = await socksReply(proxy, [127, 0, 0, 1], secret.port)
    expect([...reply.subarray(0, 4)]).toEqual([0x05, 0x00, 0x05, 0x02])
    expect(secret.open()).toBe(0)
    const b = testBytes(40_000, 22)
    expectBytes(await socksRoundTrip(proxy, '127.0.0.1', db.port, b), b, 'socks5 to an allowed target')
    expect(await near.stop('SIGTERM')).toBe(0)
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('a service by name (a forward, and an accept) reaches the target the far side chose; an unknown name is a final failure of that mapping alone', async () => {
    const webTarget = await tcpEcho()
    const decoy = await tcpEcho()
    cleanup.push(webTarget, decoy)
    const [p1, p2, p3, p4] = await freePorts(4)
    const { id: far, proc: farProc } = await farSide(`[services]\nweb = "127.0.0.1:${webTarget.port}"\n`)
    const near = up(config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'web', peer: far, listen: p1, service: 'web' }) +
      table('forward', { name: 'nothing', peer: far, listen: p2, service: 'nothing' }) +
      table('forward', { name: 'direct', peer: far, listen: p3, to: `127.0.0.1:${decoy.port}` }) +
      table('accept', { name: 'web-accept', peer: far, listen: p4, service: 'web' })))
    expect((await ready(near, 'web')).state).toBe('up')
    expect((await ready(near, 'web-accept')).state).toBe('up')
    const failed = await eventOf(near, 'failed', 'nothing')
    expect(failed).toMatchObject({ code: 'E_DENIED', final: true })
    // No rule for a direct connect: denied too, and the service still works.
    expect(await eventOf(near, 'failed', 'direct')).toMatchObject({ code: 'E_DENIED', final: true })
    const c = testBytes(60_000, 23)
    expectBytes(await tcpRoundTrip(p1, c), c, 'forward to the far side\'s service web')
    const d = testBytes(70_000, 24)
    expectBytes(await tcpRoundTrip(p4, d), d, 'accept for the far side\'s service web')
    await waitFor('the service target to see the connection end', () => webTarget.open() === 0, 5000)
    expect(decoy.open()).toBe(0)
    expect(await near.stop('SIGTERM')).toBe(0)
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('a service with ask = true is asked of the far person; a mapping that person kills (or denies) is final, never asked again until a reload', async () => {
    const p1 = await freePort()
    // stdin is not a terminal here: --ask takes the answers from it.
    const { id: far, proc: farProc } = await askingFar('')
    const near = up(config('near.toml', `key = "near.key"\n${SHELL_FORWARD(far, p1)}`))
    await eventOf(near, 'asking', 'shell')
    await waitFor('the far prompt', () => farProc.err().includes('Allow? [y/N]'), 20_000)
    expect(farProc.err()).toContain('shell')
    farProc.proc.stdin.write('y\n')
    expect((await ready(near, 'shell')).state).toBe('up')
    const a = testBytes(20_000, 51)
    expectBytes(await tcpRoundTrip(p1, a), a, 'the service a person allowed')
    farProc.proc.stdin.write('kill 1\n')
    expect(await eventOf(near, 'failed', 'shell')).toMatchObject({ code: 'E_KILLED', final: true })
    // Not asked again: the far side saw one offer only, and nothing listens for it here any more.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(farProc.out().split('\n').filter((l) => l.includes('"event":"offer"'))).toHaveLength(1)
    expect(near.out()).not.toContain('"event":"away"')
    const closed = await new Promise<string | undefined>((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: p1 })
      c.once('connect', () => { c.destroy(); resolve(undefined) })
      c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code))
    })
    expect(closed).toBe('ECONNREFUSED')
    // A reload is the way to try again: asked anew; a "no" is final too.
    near.proc.kill('SIGHUP')
    expect(await near.event('reload')).toMatchObject({ ok: true, kept: ['shell'] })
    await waitFor('the far prompt again', () => farProc.err().split('Allow? [y/N]').length === 3, 20_000)
    farProc.proc.stdin.write('n\n')
    expect(await eventOf(near, 'failed', 'shell', 20_000, 2)).toMatchObject({ code: 'E_DENIED', final: true })
    expect(await near.stop('SIGTERM')).toBe(0)
    farProc.proc.stdin.end()
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('nobody answering the far person in time is final: one offer only, not retried until a reload', async () => {
    const p1 = await freePort()
    // The far person has a minute; this side waits 2 s, then gives up.
    const { id: far, proc: farProc } = await askingFar('ask_timeout_ms = 60000\n')
    const near = up(config('near.toml', `key = "near.key"\ntimeout_ms = 2000\n${SHELL_FORWARD(far, p1)}`))
    await eventOf(near, 'asking', 'shell')
    expect(await eventOf(near, 'failed', 'shell')).toMatchObject({ code: 'E_TIMEOUT', final: true })
    // A retry would come after 1 s and prompt the far person again.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    expect(farProc.err().split('Allow? [y/N]')).toHaveLength(2)
    expect(near.out().split('\n').filter((l) => l.includes('"event":"asking"'))).toHaveLength(1)
    expect(await near.stop('SIGTERM')).toBe(0)
    farProc.proc.stdin.end()
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 60_000)

  it('SIGTERM while the far person is asked at start, or after a reload that asks, exits 0 at once with the mapping closed', async () => {
    const [p1, p2] = await freePorts(2)
    const { id: far, proc: farProc } = await askingFar('ask_timeout_ms = 60000\n')
    // At start: the first mapping waits for a person who never answers (both sides wait 60 s).
    const near = up(config('near.toml', `key = "near.key"\n${SHELL_FORWARD(far, p1)}`))
    await eventOf(near, 'asking', 'shell')
    expect(await near.stop('SIGTERM', 15_000)).toBe(0)
    expect(await eventOf(near, 'closed', 'shell', 1000)).toMatchObject({ why: 'closed' })
    // After a reload that adds a mapping a person is asked about.
    const file = config('near2.toml', 'key = "near2.key"\n')
    const near2 = up(file)
    await near2.event('up')
    config('near2.toml', `key = "near2.key"\n${SHELL_FORWARD(far, p2)}`)
    near2.proc.kill('SIGHUP')
    await eventOf(near2, 'asking', 'shell')
    expect(await near2.event('reload')).toMatchObject({ ok: true, added: ['shell'] })
    expect(await near2.stop('SIGTERM', 15_000)).toBe(0)
    expect(await eventOf(near2, 'closed', 'shell', 1000)).toMatchObject({ why: 'closed' })
    farProc.proc.stdin.end()
    expect(await farProc.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('a mapping whose port is taken fails alone, is retried with backoff, and comes up once the port is free', async () => {
    const db = await tcpEcho()
    cleanup.push(db)
    const [p1, p2] = await freePorts(2)
    const squatter = net.createServer((s) => s.destroy())
    await new Promise<void>((resolve) => squatter.listen(p2, '127.0.0.1', resolve))
    const { id: far, proc: farProc } = await farSide(`allow = ["connect/tcp:127.0.0.1:${db.port}"]\n`)
    const near = up(config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'free', peer: far, listen: p1, to: `127.0.0.1:${db.port}` }) +
      table('forward', { name: 'taken', peer: far, listen: p2, to: `127.0.0.1:${db.port}` })))
    expect((await ready(near, 'free')).state).toBe('up')
    const failed = await eventOf(near, 'failed', 'taken')
    expect(failed).toMatchObject({ code: 'E_BIND_FAILED', final: false })
    const a = testBytes(30_000, 31)
    expectBytes(await tcpRoundTrip(p1, a), a, 'the other forward while one fails')
    // The second failure: a retry came, and the far side was still not asked.
    expect(await eventOf(near, 'failed', 'taken', 20_000, 2)).toMatchObject({ code: 'E_BIND_FAILED', final: false })
    // The far side was asked for the forward that works only: a port taken here is found before asking.
    expect(farProc.out().split('\n').filter((l) => l.includes('"event":"offer"'))).toHaveLength(1)
    await new Promise<void>((resolve) => squatter.close(() => resolve()))
    expect((await eventOf(near, 'ready', 'taken', 40_000)).state).toBe('up')
    expectBytes(await tcpRoundTrip(p2, a), a, 'the forward that came up late')
    expect(await near.stop('SIGTERM')).toBe(0)
  }, 90_000)
})

describe('starsock up: the server restarts', () => {
  const { dir, programs, cleanup, config, up } = useUp({ prefix: 'starsock-up-server-', server: false })

  it('a server not reachable at start is waited for (a line says so) and joined once it runs; SIGTERM while waiting exits 0', async () => {
    const port = await freePort()
    const file = config('agent.toml', 'key = "agent.key"\ntimeout_ms = 1000\n', `http://127.0.0.1:${port}`)
    const agent = up(file)
    expect(await agent.event('waiting', 20_000)).toMatchObject({ code: 'E_SERVER_UNREACHABLE' })
    await agent.event('waiting', 20_000, 2)
    expect(agent.proc.exitCode).toBeNull()
    const serve = await programs.serve(port)
    expect(await agent.event('up', 60_000)).toMatchObject({ server: serve.url })
    expect(await agent.stop('SIGTERM')).toBe(0)
    // Stopped while waiting: exit 0.
    await serve.program.stop('SIGTERM')
    const waiting = up(file)
    await waiting.event('waiting', 20_000)
    expect(await waiting.stop('SIGTERM')).toBe(0)
    // A server name that does not resolve is said as such, and waited for all the same.
    const nameless = up(config('nameless.toml', 'key = "agent.key"\ntimeout_ms = 1000\n', 'http://starsock-test.invalid:9'))
    expect(await nameless.event('waiting', 20_000)).toMatchObject({ code: 'E_SERVER_UNREACHABLE', unresolved: 'starsock-test.invalid', message: expect.stringMatching(/: the name starsock-test\.invalid does not resolve$/) })
    await nameless.event('waiting', 20_000, 2)
    expect(nameless.proc.exitCode).toBeNull()
    expect(await nameless.stop('SIGTERM')).toBe(0)
  }, 120_000)

  it('every mapping comes back by itself after the server stops and starts again; neither agent restarts', async () => {
    const serve = await programs.serve(0, ['--shutdown-grace-ms', '200'])
    const db = await tcpEcho()
    const local = await tcpEcho()
    cleanup.push(db, local)
    const far = peerIdOf(join(dir(), 'far.key'))
    const [p1, bindPort] = await freePorts(2)
    const farProc = up(config('far.toml', `key = "far.key"\nallow = ["connect/tcp:127.0.0.1:${db.port}", "bind/tcp:127.0.0.1:${bindPort}"]\n`, serve.url))
    await farProc.event('up')
    const near = up(config('near.toml', `key = "near.key"\n` +
      table('forward', { name: 'db', peer: far, listen: p1, to: `127.0.0.1:${db.port}` }) +
      table('expose', { name: 'back', peer: far, bind_host: '127.0.0.1', port: bindPort, to: `127.0.0.1:${local.port}` }), serve.url))
    for (const id of ['db', 'back']) expect((await eventOf(near, 'ready', id, 40_000)).state).toBe('up')
    expect(await serve.program.stop('SIGTERM')).toBe(0)
    for (const id of ['db', 'back']) await eventOf(near, 'away', id, 40_000)
    // The same port again (stopped with the other programs after the test).
    await programs.serve(serve.port, ['--shutdown-grace-ms', '200'])
    for (const id of ['db', 'back']) await eventOf(near, 'back', id, 40_000)
    const a = testBytes(80_000, 41)
    const b = testBytes(60_000, 42)
    const [ra, rb] = await Promise.all([tcpRoundTrip(p1, a), tcpRoundTrip(bindPort, b)])
    expectBytes(ra, a, 'forward after the server restarted')
    expectBytes(rb, b, 'expose after the server restarted')
    expect(near.proc.exitCode).toBe(null)
    expect(farProc.proc.exitCode).toBe(null)
    expect(await near.stop('SIGTERM')).toBe(0)
  }, 120_000)
})

describe('starsock up: a UDP relay half handed over ([udp_relay])', () => {
  // A port range of its own (other files use 41000-61999).
  const low = 62000 + (process.pid % 100) * 20
  const { server, dir, programs, cleanup, config, up } = useUp({ prefix: 'starsock-up-relay-', server: { udpRelay: true, udpPorts: [low, low + 7] } })

  it('an agent with a udp-relay rule bridges the half to [udp_relay] local; datagrams both ways exact', async () => {
    const a = await udpClient()
    const b = await udpClient()
    cleanup.push(a, b)
    const sharerKey = join(dir(), 'sharer')
    const sharer = peerIdOf(sharerKey)
    const agent = up(config('agent.toml', `key = "agent.key"\nallow = ["udp-relay@${sharer}"]\n[udp_relay]\nlocal = "127.0.0.1:${b.socket.address().port}"\n`))
    const agentId = (await agent.event('up')).peerId as string
    const relay = programs.start(['relay', '--server', server().url(), '--key', sharerKey, '--share', agentId, '--local1', `127.0.0.1:${a.socket.address().port}`, '--json'])
    const taken = await agent.event('udp-relay', 30_000)
    expect(taken).toMatchObject({ peerId: sharer, rule: `udp-relay@${sharer}`, local: { ip: '127.0.0.1', port: b.socket.address().port } })
    await waitFor('the sharer to say where its bridge is', () => relay.out().includes('"via"') && relay.out().includes('"shared"'), 30_000)
    const lines = relay.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    const bridge1 = lines.find((l) => l.endpoint === 1 && l.via !== undefined) as { via: number }
    const via2 = taken.via as number
    const n = 20
    for (let i = 0; i < n; i++) {
      a.socket.send(Buffer.from(`a ${i} `.padEnd(100 + i, 'x')), bridge1.via, '127.0.0.1')
      b.socket.send(Buffer.from(`b ${i} `.padEnd(100 + i, 'y')), via2, '127.0.0.1')
    }
    await waitFor(`${n} datagrams at each side`, () => a.got.length >= n && b.got.length >= n, 20_000)
      .catch((err: Error) => { throw new Error(`${err.message}: a got ${a.got.length}, b got ${b.got.length}`) })
    expect(b.got.map(String).sort()).toEqual(Array.from({ length: n }, (_, i) => `a ${i} `.padEnd(100 + i, 'x')).sort())
    expect(a.got.map(String).sort()).toEqual(Array.from({ length: n }, (_, i) => `b ${i} `.padEnd(100 + i, 'y')).sort())
    expect(await relay.stop()).toBe(0)
    expect(await agent.stop()).toBe(0)
  }, 90_000)
})
