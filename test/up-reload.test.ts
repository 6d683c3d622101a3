import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { testBytes, within } from './helpers/server.ts'
import { runProgram, type Program } from './helpers/programs.ts'
import { tcpEcho, tcpRoundTrip } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'
import { freePorts, table, useUp } from './helpers/up.ts'

/** Whether a TCP connection to 127.0.0.1:`port` is refused (nothing listens). */
async function refused (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

/** A connection through a forward that stays open: write parts, then end and read everything back. */
async function openTransfer (port: number): Promise<{ write: (b: Uint8Array) => Promise<void>, finish: (last: Uint8Array) => Promise<Buffer>, errors: Error[] }> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  const parts: Buffer[] = []
  const errors: Error[] = []
  let ended: () => void = () => {}
  const end = new Promise<void>((resolve) => { ended = resolve })
  socket.on('data', (c: Buffer) => parts.push(c))
  socket.on('error', (err) => errors.push(err))
  socket.on('end', () => { socket.end(); ended() })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  let sent = 0
  return {
    write: async (b) => {
      sent += b.byteLength
      await new Promise<void>((resolve) => socket.write(b, () => resolve()))
      // Wait for the echo of everything so far: the transfer is really running through the tunnel.
      await within(`${sent} bytes echoed`, new Promise<void>((resolve) => {
        const check = (): void => { if (parts.reduce((n, p) => n + p.byteLength, 0) >= sent) { socket.off('data', check); resolve() } }
        socket.on('data', check)
        check()
      }), 15_000)
    },
    finish: async (last) => {
      socket.end(last)
      await within('the transfer to end', end, 15_000)
      return Buffer.concat(parts)
    },
    errors
  }
}

describe('starsock up: SIGHUP reload and bad files', () => {
  const { cleanup, config: write, up, far: farSide } = useUp({ prefix: 'starsock-up-reload-' })
  const forward = (name: string, peer: string, listen: number, to: number): string =>
    `\n${table('forward', { name, peer, listen, to: `127.0.0.1:${to}` })}`
  /** The JSON event `name` whose fields match `match`, after the ones seen so far. */
  const eventWhere = async (p: Program, name: string, match: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    for (let i = 1; ; i++) {
      const e = await p.event(name, 20_000, i)
      if (match(e)) return e
    }
  }

  it('adds one mapping and removes another while a transfer on a third keeps running; a bad file keeps the running config', async () => {
    const echo = await tcpEcho()
    const other = await tcpEcho()
    cleanup.push(echo, other)
    const { id: far, proc: farProc } = await farSide(`allow = ["connect/tcp:127.0.0.1:${echo.port}", "connect/tcp:127.0.0.1:${other.port}"]\n`)
    const [pa, pb, pc, pd] = await freePorts(4)
    const file = write('near.toml', `key = "near.key"\n${forward('keep', far, pa, echo.port)}${forward('gone', far, pb, echo.port)}${forward('moved', far, pd, echo.port)}`)
    const near = up(file)
    await eventWhere(near, 'ready', (e) => e.id === 'keep')
    await eventWhere(near, 'ready', (e) => e.id === 'gone')
    const before = testBytes(100_000, 5)
    expectBytes(await tcpRoundTrip(pb, before), before, 'the forward that goes, before the reload')

    const transfer = await openTransfer(pa)
    const first = testBytes(200_000, 6)
    await transfer.write(first)

    write('near.toml', `key = "near.key"\n${forward('keep', far, pa, echo.port)}${forward('new', far, pc, echo.port)}${forward('moved', far, pd, other.port)}`)
    near.proc.kill('SIGHUP')
    const reload = await near.event('reload')
    expect(reload).toMatchObject({ ok: true, added: ['new'], changed: ['moved'], removed: ['gone'], kept: ['keep'] })
    // The changed one listens on its old port again, now to the new target.
    let seen = 0
    const again = await eventWhere(near, 'ready', (e) => e.id === 'moved' && ++seen === 2)
    expect(again.address).toEqual({ ip: '127.0.0.1', port: pd })
    const moved = testBytes(20_000, 10)
    expectBytes(await tcpRoundTrip(pd, moved), moved, 'the changed forward')
    expect(farProc.out()).toContain(`connect/tcp 127.0.0.1:${other.port}`)
    await eventWhere(near, 'ready', (e) => e.id === 'new')
    // The one kept was never touched: no second ready, no close.
    expect(near.out()).not.toMatch(/"event":"closed","time":"[^"]*","id":"keep"/)
    expect(near.out().split('\n').filter((l) => l.includes('"event":"ready"') && l.includes('"id":"keep"'))).toHaveLength(1)
    const added = testBytes(50_000, 7)
    expectBytes(await tcpRoundTrip(pc, added), added, 'the forward added by the reload')
    expect(await refused(pb)).toBe(true)

    // A bad file on SIGHUP: one line, and everything stays.
    write('near.toml', `key = "near.key"\n${forward('keep', far, pa, echo.port)}\n[[forward]]\npeer = "${far}"\nlisten = "nowhere"\nto = "127.0.0.1:1"\n`)
    near.proc.kill('SIGHUP')
    const bad = await near.event('reload', 20_000, 2)
    expect(bad.ok).toBe(false)
    expect(bad.message).toMatch(/near\.toml:12: forward\[1\]\.listen: not \[HOST:\]PORT/)
    expectBytes(await tcpRoundTrip(pc, added), added, 'the forward added before, after a bad reload')

    const second = testBytes(150_000, 8)
    await transfer.write(second)
    const last = testBytes(10_000, 9)
    const all = await transfer.finish(last)
    expectBytes(all, Buffer.concat([first, second, last]), 'the transfer that ran through both reloads')
    expect(transfer.errors).toEqual([])
    expect(await near.stop('SIGTERM')).toBe(0)
  }, 90_000)

  it('a bad config file at start is one line with its line number, exit 1', () => {
    const file = write('bad.toml', 'key = "k"\n\n[[socks]]\nlisten = 1080\npeer = "not-a-peer"\n')
    const r = runProgram(['up', '--config', file])
    expect(r.status).toBe(1)
    expect(r.stderr).toBe(`starsock: ${file}:6: socks[0].peer: not a peer id (base58, e.g. 12D3KooW...)\n`)
    const syntax = write('syntax.toml', 'key = "k\n')
    const s = runProgram(['up', '--config', syntax])
    expect(s.status).toBe(1)
    expect(s.stderr).toMatch(new RegExp(`^starsock: ${syntax}:2: syntax: not valid TOML: [^\\n]+\\n$`))
  })
})
