/**
 * One identity, one place, as a person at the terminal meets it: two `starsock` processes with
 * one key never both believe they are joined. Real server, real processes.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createServer, type StarsockServer } from '../server/server.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import type { ServerOptions } from '../server/options.ts'
import { tcpEcho, type Closable } from './helpers/sockets.ts'
import { tcpProxy } from './helpers/proxy.ts'
import { Programs, type Program } from './helpers/programs.ts'

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

describe('two starsock processes with one key', () => {
  let server: StarsockServer & { port: number }
  let dir: string
  const programs = new Programs()
  const cleanup: Closable[] = []

  const start = (args: string[]): Program => programs.start(args)

  beforeEach(async () => {
    server = await startServer()
    dir = mkdtempSync(join(tmpdir(), 'starsock-identity-cli-'))
  })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) await c.close()
    await server.close()
    await other?.close()
    other = undefined
    rmSync(dir, { recursive: true, force: true })
  })
  let other: (StarsockServer & { port: number }) | undefined
  const otherServer = async (options: ServerOptions): Promise<StarsockServer & { port: number }> => {
    other = await startServer(options)
    return other
  }

  it('listen: the second is refused (one line, exit 1); with --takeover the first is displaced (one line naming the key file and the other\'s address, non-zero)', async () => {
    const key = join(dir, 'key')
    const first = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json'])
    await first.event('ready')

    // Refused whether it comes in the gap (reserved) or after the first is back (joined).
    const second = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json'])
    expect(await within('the second listen to exit', second.exited, 15_000)).toBe(1)
    expect(second.err().trim().split('\n')).toHaveLength(1)
    expect(second.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Address in use: this peer id is joined from 127\\.0\\.0\\.1:\\d+; stop that process or pass --takeover \\(E_ADDRESS_IN_USE\\)\\n$`))
    expect(first.proc.exitCode).toBeNull()
    expect(server.stats().peers).toBe(1)

    const third = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json', '--takeover'])
    await third.event('ready')
    const code = await within('the first listen to exit once displaced', first.exited, 15_000)
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    expect(first.err().trim().split('\n')).toHaveLength(1)
    expect(first.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Displaced: another client took this peer id over from 127\\.0\\.0\\.1:\\d+ \\(E_DISPLACED\\)\\n$`))
    expect(third.proc.exitCode).toBeNull()
    await waitFor('one peer on the server', () => server.stats().peers === 1 && server.stats().sockets === 1)
  }, 60_000)

  it('two listen started at once with one key: exactly one is joined, the other exits 1 with its line', async () => {
    const key = join(dir, 'key')
    // Make the key first, so the two do not race to create it.
    const made = start(['id', '--key', key])
    expect(await within('starsock id to exit', made.exited, 15_000)).toBe(0)
    const both = [0, 1].map(() => start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json']))
    const outcomes = await Promise.all(both.map(async (p) => await Promise.race([
      p.event('ready').then(() => 'ready', () => 'exited'),
      p.exited.then(() => 'exited')
    ])))
    expect(outcomes.sort()).toEqual(['exited', 'ready'])
    const refused = both.find((p) => p.proc.exitCode !== null) as Program
    expect(await refused.exited).toBe(1)
    expect(refused.err()).toMatch(/^starsock: .*: Address in use: this peer id is joined from 127\.0\.0\.1:\d+; stop that process or pass --takeover \(E_ADDRESS_IN_USE\)\n$/)
    expect(server.stats().peers).toBe(1)
  }, 60_000)

  it('a frozen listen (SIGSTOP) is displaced by a --takeover and, once it runs again, exits with its line', async () => {
    const key = join(dir, 'key')
    const frozen = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json'])
    await frozen.event('ready')
    frozen.proc.kill('SIGSTOP')
    try {
      // Its socket looks alive to the server: a plain start is refused, a takeover goes through.
      const refused = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json'])
      expect(await within('the refused listen to exit', refused.exited, 15_000)).toBe(1)
      const taker = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json', '--takeover'])
      await taker.event('ready')
    } finally {
      frozen.proc.kill('SIGCONT')
    }
    expect(await within('the thawed listen to exit', frozen.exited, 15_000)).toBe(1)
    expect(frozen.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Displaced: another client took this peer id over from 127\\.0\\.0\\.1:\\d+ \\(E_DISPLACED\\)\\n$`))
  }, 60_000)

  it('forward is displaced by a listen --takeover with its key: it exits non-zero with the line', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const listener = start(['listen', '--server', server.url(), '--key', join(dir, 'listener'), '--allow', `connect/tcp:127.0.0.1:${echo.port}`, '--json'])
    const listenerId = String((await listener.event('ready')).peerId)
    const key = join(dir, 'client')
    const fwd = start(['forward', '--server', server.url(), '--key', key, '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`, '--json'])
    await fwd.event('ready')
    const taker = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json', '--takeover'])
    await taker.event('ready')
    const code = await within('forward to exit once displaced', fwd.exited, 15_000)
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    expect(fwd.err().trim().split('\n')).toHaveLength(1)
    expect(fwd.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Displaced: another client took this peer id over from 127\\.0\\.0\\.1:\\d+ \\(E_DISPLACED\\)\\n$`))
  }, 60_000)

  it('relay holds an allocation until a takeover displaces it: it exits non-zero with the line', async () => {
    // A UDP port range of its own per test file run, apart from udp-relay.test.ts's.
    const low = 57000 + (process.pid % 200) * 20
    const relayServer = await otherServer({ udpRelay: true, udpPorts: [low, low + 3] })
    const key = join(dir, 'relay')
    const relay = start(['relay', '--server', relayServer.url(), '--key', key])
    await waitFor('the relay to print its allocation', () => /^allocation \S+ \(token\)/m.test(relay.out()), 15_000)
    const taker = start(['listen', '--server', relayServer.url(), '--key', key, '--no-prompt', '--json', '--takeover'])
    await taker.event('ready')
    const code = await within('relay to exit once displaced', relay.exited, 15_000)
    expect(code).toBe(1)
    expect(relay.err().trim().split('\n')).toHaveLength(1)
    expect(relay.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Displaced: another client took this peer id over from 127\\.0\\.0\\.1:\\d+ \\(E_DISPLACED\\)\\n$`))
  }, 60_000)

  it('listen whose server comes back with another token exits 1 with one line (E_FORBIDDEN), not running on dead', async () => {
    let current = createServer({ token: 'alpha', shutdownGraceMs: 0 })
    const { port } = await current.listen(0, '127.0.0.1')
    cleanup.push({ close: async () => { await current.close() } })
    const listen = start(['listen', '--server', `http://127.0.0.1:${port}`, '--key', join(dir, 'key'), '--token', 'alpha', '--no-prompt', '--json'])
    await listen.event('ready')
    await current.close()
    current = createServer({ token: 'beta', shutdownGraceMs: 0 })
    await current.listen(port, '127.0.0.1')
    expect(await within('listen to exit once refused by the token', listen.exited, 15_000)).toBe(1)
    expect(listen.err()).toMatch(/^starsock: Missing or wrong token \(E_FORBIDDEN\)\n$/)
  }, 60_000)

  it('a second listen while the first reconnects after a drop is refused; the first comes back and keeps running', async () => {
    const proxy = await tcpProxy(server.port)
    cleanup.push(proxy)
    const key = join(dir, 'key')
    const first = start(['listen', '--server', proxy.url, '--key', key, '--no-prompt', '--json'])
    await first.event('ready')
    proxy.block(true) // the first cannot come back yet
    proxy.drop()
    await waitFor('the server to see the first listen go', () => server.stats().peers === 0)
    const second = start(['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json'])
    expect(await within('the second listen to exit', second.exited, 15_000)).toBe(1)
    expect(second.err()).toMatch(new RegExp(`^starsock: ${escape(key)}: Address in use: this peer id is reserved for a reconnecting client \\(joined from 127\\.0\\.0\\.1:\\d+\\) for up to \\d+ s more; stop that process or pass --takeover \\(E_ADDRESS_IN_USE\\)\\n$`))
    proxy.block(false)
    await waitFor('the first listen to rejoin', () => server.stats().peers === 1, 15_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(first.proc.exitCode).toBeNull()
    expect(first.err()).toBe('')
  }, 60_000)

  it('listen killed with -9 and started again with its key gets back in at once (the dead one\'s resume id); one beside it is still refused', async () => {
    const key = join(dir, 'key')
    const args = ['listen', '--server', server.url(), '--key', key, '--no-prompt', '--json']
    const first = start(args)
    await first.event('ready')
    first.proc.kill('SIGKILL')
    await within('the killed listen to exit', first.exited)
    await waitFor('the server to see it go', () => server.stats().peers === 0)
    const again = start(args)
    await again.event('ready')
    const beside = start(args)
    expect(await within('the listen beside it to exit', beside.exited, 15_000)).toBe(1)
    expect(beside.err()).toMatch(/Address in use: this peer id is joined from 127\.0\.0\.1:\d+; stop that process or pass --takeover \(E_ADDRESS_IN_USE\)\n$/)
    expect(again.proc.exitCode).toBeNull()
  }, 60_000)

  it('listen rides out a network drop: it takes its address back from its stale socket and keeps running', async () => {
    const proxy = await tcpProxy(server.port)
    cleanup.push(proxy)
    const listen = start(['listen', '--server', proxy.url, '--key', join(dir, 'key'), '--no-prompt', '--json'])
    await listen.event('ready')
    proxy.cut()
    // The stale socket stays on the server until the listener comes back and resumes.
    const resumed = async (): Promise<boolean> => /reason="resume"\} 1$/m.test(await server.metrics.registry.getSingleMetricAsString('starsock_displaced_total'))
    const deadline = Date.now() + 15_000
    while (!(server.stats().sockets === 1 && await resumed())) {
      if (Date.now() > deadline) throw new Error(`the listener to resume (one socket, one resume) within 15000 ms; stderr: ${listen.err()}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(server.stats().peers).toBe(1)
    expect(listen.proc.exitCode).toBeNull()
    listen.proc.kill('SIGTERM')
    expect(await within('listen to exit after SIGTERM', listen.exited, 10_000)).toBe(0)
    expect(listen.err()).toBe('')
  }, 60_000)
})
