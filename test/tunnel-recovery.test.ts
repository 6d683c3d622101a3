/**
 * Tunnels recover from every restart (issue 11, section 3): the same `forward` and `expose`
 * processes carry new connections after the far peer or the server is killed (-9) or stopped
 * (SIGTERM) and started again; a kill at the listen terminal stays final.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { peerIdOf, Programs, type Program } from './helpers/programs.ts'
import { testBytes, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'
import { wasReset, watch } from './helpers/tcp-watch.ts'

describe('forward and expose come back by themselves after restarts (real processes, real signals)', () => {
  const programs = new Programs()
  const cleanup: Array<() => void> = []
  let dir: string

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-recovery-')) })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) c()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A TCP echo on 127.0.0.1, closed after the test. */
  async function echo (): Promise<number> {
    const e = await tcpEcho()
    cleanup.push(e.close)
    return e.port
  }

  /** `count` bytes through `port` and back, byte-exact. */
  async function expectEcho (port: number, what: string, seed: number): Promise<void> {
    const data = testBytes(256 * 1024, seed)
    const back = await within(`a round trip through ${what}`, tcpRoundTrip(port, data), 15_000)
    expectBytes(back, data, `the bytes through ${what}`)
  }

  function listen (url: string, rules: string[]): Program {
    return programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), ...rules.flatMap((r) => ['--allow', r]), '--no-prompt', '--json'])
  }

  it('the far peer killed with -9, then stopped with SIGTERM, started again with the same key: the same forward and expose carry new connections', async () => {
    const echoPort = await echo()
    const { url } = await programs.serve()
    const rules = [`connect/tcp:127.0.0.1:${echoPort}`, 'bind/tcp:127.0.0.1:*']
    const listenerId = peerIdOf(join(dir, 'listener'))
    let far = listen(url, rules)
    await far.event('ready')
    const fwd = programs.start(['forward', '--server', url, '--key', join(dir, 'forwarder'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    const exp = programs.start(['expose', '--server', url, '--key', join(dir, 'exposer'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    const port = ((await fwd.event('ready')).address as { port: number }).port
    await expectEcho(port, 'the forward', 1)
    await expectEcho(((await exp.event('ready')).address as { port: number }).port, 'the exposed port', 2)

    far.proc.kill('SIGKILL')
    expect(await fwd.event('away')).toMatchObject({ peer: listenerId })
    await exp.event('away')
    far = listen(url, rules)
    await fwd.event('back', 20_000)
    await expectEcho(port, 'the forward after the peer was killed', 3)
    const back = await exp.event('back', 20_000)
    await expectEcho((back.address as { port: number }).port, 'the port bound again after the peer was killed', 4)

    expect(await far.stop('SIGTERM')).toBe(0)
    expect(await fwd.event('away', 15_000, 2)).toMatchObject({ code: 'E_PEER_SHUTDOWN' })
    expect(await exp.event('away', 15_000, 2)).toMatchObject({ code: 'E_PEER_SHUTDOWN' })
    listen(url, rules) // the far peer once more; programs.cleanup() stops it
    await fwd.event('back', 20_000, 2)
    await expectEcho(port, 'the forward after the peer was stopped', 5)
    const again = await exp.event('back', 20_000, 2)
    await expectEcho((again.address as { port: number }).port, 'the port bound again after the peer was stopped', 6)
    expect(fwd.proc.exitCode).toBe(null)
    expect(exp.proc.exitCode).toBe(null)
  }, 90_000)

  it('the server killed with -9, then stopped with SIGTERM, started again on the same port: the forward comes back, the expose on the same port (within the lease)', async () => {
    const echoPort = await echo()
    let server = await programs.serve(0, ['--shutdown-grace-ms', '200'])
    const { url } = server
    const listenerId = peerIdOf(join(dir, 'listener'))
    const far = listen(url, [`connect/tcp:127.0.0.1:${echoPort}`, 'bind/tcp:127.0.0.1:*'])
    await far.event('ready')
    const fwd = programs.start(['forward', '--server', url, '--key', join(dir, 'client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    const exp = programs.start(['expose', '--server', url, '--key', join(dir, 'exposer'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    const port = ((await fwd.event('ready')).address as { port: number }).port
    await expectEcho(port, 'the forward', 1)
    const bound = ((await exp.event('ready')).address as { port: number }).port
    await expectEcho(bound, 'the exposed port', 11)

    server.program.proc.kill('SIGKILL')
    await fwd.event('away')
    expect(await far.event('server')).toMatchObject({ state: 'reconnecting', server: url })
    server = await programs.serve(server.port, ['--shutdown-grace-ms', '200'])
    expect(await far.event('server', 30_000, 2)).toMatchObject({ state: 'joined' })
    await fwd.event('back', 30_000)
    await expectEcho(port, 'the forward after the server was killed', 2)
    // The listening peer held the port on lease while the exposer was cut off: it gets it back.
    expect(((await exp.event('back', 30_000)).address as { port: number }).port).toBe(bound)
    await expectEcho(bound, 'the exposed port after the server was killed', 12)

    expect(await server.program.stop('SIGTERM')).toBe(0)
    await fwd.event('away', 15_000, 2)
    await programs.serve(server.port, ['--shutdown-grace-ms', '200']) // stopped by programs.cleanup()
    await fwd.event('back', 30_000, 2)
    await expectEcho(port, 'the forward after the server was stopped', 3)
    expect(((await exp.event('back', 30_000, 2)).address as { port: number }).port).toBe(bound)
    await expectEcho(bound, 'the exposed port after the server was stopped', 13)
    expect(fwd.proc.exitCode).toBe(null)
    expect(exp.proc.exitCode).toBe(null)
  }, 90_000)

  it('forward and expose started while the far peer is offline wait for it (a forward resets connections meanwhile), then come up when it does', async () => {
    const echoPort = await echo()
    const { url } = await programs.serve()
    const listenerId = peerIdOf(join(dir, 'listener'))
    const fwd = programs.start(['forward', '--server', url, '--key', join(dir, 'forwarder'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    const exp = programs.start(['expose', '--server', url, '--key', join(dir, 'exposer'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    expect(await fwd.event('away')).toMatchObject({ peer: listenerId, code: 'E_PEER_NOT_FOUND' })
    expect(await exp.event('away')).toMatchObject({ peer: listenerId, code: 'E_PEER_NOT_FOUND' })
    const port = ((await fwd.event('ready')).address as { port: number }).port
    await exp.event('ready')
    const meanwhile = await within('a connection to the waiting forward to close', watch(net.connect({ host: '127.0.0.1', port }).on('error', () => {})).outcome, 10_000)
    expect(wasReset(meanwhile), `a reset, got ${JSON.stringify(meanwhile)}`).toBe(true)
    listen(url, [`connect/tcp:127.0.0.1:${echoPort}`, 'bind/tcp:127.0.0.1:*'])
    await fwd.event('back', 20_000)
    await expectEcho(port, 'the forward once the peer came online', 1)
    const back = await exp.event('back', 20_000)
    await expectEcho((back.address as { port: number }).port, 'the exposed port once the peer came online', 2)
    expect(fwd.proc.exitCode).toBe(null)
    expect(exp.proc.exitCode).toBe(null)
  }, 60_000)

  it('a kill at the listen terminal stays final: the forward exits 1 naming E_KILLED', async () => {
    const echoPort = await echo()
    const { url } = await programs.serve()
    const listenerId = peerIdOf(join(dir, 'listener'))
    const far = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--ask', '--json'])
    await far.event('ready')
    const fwd = programs.start(['forward', '--server', url, '--key', join(dir, 'client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echoPort}`, '--json'])
    await fwd.event('asking')
    far.proc.stdin.write('y\n')
    await expectEcho(((await fwd.event('ready')).address as { port: number }).port, 'the forward', 1)
    far.proc.stdin.write('kill 1\n')
    expect(await within('the forward to exit after the kill', fwd.exited, 15_000)).toBe(1)
    expect(fwd.err()).toMatch(/killed at the terminal \(E_KILLED\)$/m)
  }, 60_000)
})
