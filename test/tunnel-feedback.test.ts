/**
 * The tunnel commands say what is happening (issue 11, section 3): a wrong `--server` fails fast
 * with one line, `listen` prints the command a peer runs for each rule, and a requester waiting
 * for a person says so.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { peerIdOf, Programs, runProgram } from './helpers/programs.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { closedPort, tcpEcho, tcpRoundTrip } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'

describe('the tunnel commands say what is happening', () => {
  const programs = new Programs()
  const cleanup: Array<() => void> = []
  let dir: string

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-feedback-')) })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) c()
    rmSync(dir, { recursive: true, force: true })
  })

  it('a wrong --server: forward fails soon (not after the 60 s join timeout) with one readable line and exit 1', async () => {
    const port = await closedPort()
    // Bounded well under the old 62 s of silence; the command itself gives up after 2.5 s.
    const r = runProgram(['forward', '--server', `http://127.0.0.1:${port}`, '--key', join(dir, 'client'), '--peer', peerIdOf(join(dir, 'other')), '--listen', '0', '--to', '127.0.0.1:1'], 20_000)
    expect(r.timedOut).toBe(false)
    expect(r.status).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(new RegExp(`^starsock: Server http://127\\.0\\.0\\.1:${port} could not be reached within \\d+ ms: .* \\(E_SERVER_UNREACHABLE\\)$`, 'm'))
  })

  it('createPeer: a server never reached fails with E_SERVER_UNREACHABLE after connectTimeoutMs, whatever the join timeout', async () => {
    const port = await closedPort()
    await expect(within('createPeer to give up', createPeer({ server: `http://127.0.0.1:${port}`, timeoutMs: 60_000, connectTimeoutMs: 500 }), 10_000))
      .rejects.toMatchObject({ code: 'E_SERVER_UNREACHABLE' })
  })

  it('listen prints the forward and expose commands of its rules, and they work as printed; a requester waiting for a person says so', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo.close)
    const { url } = await programs.serve()
    const listenerId = peerIdOf(join(dir, 'listener'))
    const far = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--allow', `connect/tcp:127.0.0.1:${echo.port}`, '--allow', 'bind/tcp:127.0.0.1:*', '--ask', '--json'])
    const ready = await far.event('ready')
    const forwardLine = `starsock forward --server ${url} --peer ${listenerId} --listen ${echo.port} --to 127.0.0.1:${echo.port}`
    const exposeLine = `starsock expose --server ${url} --peer ${listenerId} --bind-host 127.0.0.1 --port 0 --to 127.0.0.1:LOCAL_PORT`
    expect(ready).toMatchObject({ server: url, commands: [forwardLine, exposeLine] })

    // Run them as printed; only the local port (taken here by the echo itself) and the service are filled in.
    const argv = (line: string): string[] => {
      const words = line.split(' ').slice(1).map((w) => w.replace('LOCAL_PORT', String(echo.port)))
      const at = words.indexOf('--listen')
      if (at >= 0) words[at + 1] = '0'
      return words
    }
    const fwd = programs.start([...argv(forwardLine), '--key', join(dir, 'forwarder'), '--json'])
    const exp = programs.start([...argv(exposeLine), '--key', join(dir, 'exposer'), '--json'])
    const data = testBytes(64 * 1024, 5)
    for (const [program, what] of [[fwd, 'the printed forward'], [exp, 'the printed expose']] as const) {
      const port = ((await program.event('ready')).address as { port: number }).port
      expectBytes(await within(`a round trip through ${what}`, tcpRoundTrip(port, data), 15_000), data, `a round trip through ${what}`)
    }

    // An offer no rule allows: the person at the listen terminal is asked, and the requester says it waits.
    const asked = programs.start(['forward', '--server', url, '--key', join(dir, 'asker'), '--peer', listenerId, '--listen', '0', '--to', '127.0.0.1:1'])
    await waitFor('the requester to say it waits for a person', () => asked.err().includes('answer the offer'), 15_000)
    expect(asked.err()).toMatch(new RegExp(`waiting for ${listenerId} to answer the offer \\(a person is asked\\), up to 60 s$`, 'm'))
    await waitFor('the prompt at the listen terminal', () => far.err().includes('Allow? [y/N]'), 15_000)
    far.proc.stdin.write('n\n')
    expect(await within('the denied forward to exit', asked.exited, 15_000)).toBe(1)
    expect(asked.err()).toMatch(/\(E_DENIED\)$/m)
  }, 60_000)
})
