import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { UDP_SOCKET_BUFFER_BYTES } from '../client/sock/host.node.ts'
import { forward, type Forward } from '../client/sock/tunnel.node.ts'
import { useAgents } from './helpers/agents.ts'
import { within } from './helpers/server.ts'

/**
 * The UDP application and its service, in a process of their own so their pacing goes on while
 * this process (server and both peers) is stalled: a UDP echo service on 127.0.0.1, and a client
 * that sends COUNT datagrams of 16 to 1,200 bytes at RATE a second to PORT, then prints
 * `{ atService, back }` once a second passed without an echo. It prints `SERVICE <port>` first.
 */
const APP = `
const dgram = require('node:dgram')
const [COUNT, RATE] = [Number(process.argv[1]), Number(process.argv[2])]
const service = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
const app = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
let atService = 0
let back = 0
service.on('message', (msg, r) => { atService++; service.send(msg, r.port, r.address) })
app.on('message', () => { back++ })
service.bind(0, '127.0.0.1', () => app.bind(0, '127.0.0.1', () => {
  process.stdout.write('SERVICE ' + service.address().port + '\\n')
  process.stdin.once('data', (d) => {
    const port = Number(String(d).trim())
    const t0 = performance.now()
    let sent = 0
    let seed = 7
    const tick = () => {
      const due = Math.min(COUNT, Math.floor((performance.now() - t0) * RATE / 1000))
      for (; sent < due; sent++) {
        seed = (seed * 1103515245 + 12345) >>> 0
        app.send(Buffer.alloc(16 + seed % 1185, sent & 0xff), port, '127.0.0.1')
      }
      if (sent < COUNT) return setTimeout(tick, 1)
      let last = -1
      const settle = setInterval(() => {
        if (back !== last) { last = back; return }
        clearInterval(settle)
        process.stdout.write(JSON.stringify({ atService, back }) + '\\n')
        process.exit(0)
      }, 1000)
    }
    tick()
  })
}))
`

/**
 * The stall cases hold 300 to 500 ms of datagrams in kernel buffers, which needs Linux's
 * `net.core.rmem_max` raised to `UDP_SOCKET_BUFFER_BYTES` (a stock kernel caps at 212992, about
 * 150 ms of this traffic): below that they are skipped, not failed (`sysctl -w
 * net.core.rmem_max=4194304 net.core.wmem_max=4194304` to run them).
 */
function rmemMax (): number {
  try { return Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim()) } catch { return 0 }
}
const BIG_BUFFERS = rmemMax() >= UDP_SOCKET_BUFFER_BYTES

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))

/** Lines of a child's stdout so far, and a wait for the first match of `pattern` (its first group). */
function lines (child: ChildProcess, name: string): (pattern: RegExp, what: string, ms: number) => Promise<string> {
  let out = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  return async (pattern, what, ms) => await within(what, (async () => {
    for (;;) {
      const m = pattern.exec(out)
      if (m !== null) return m[1] as string
      if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode} before ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })(), ms)
}

describe('a UDP forward at 1,000 datagrams a second', () => {
  const { agent, cleanup, server } = useAgents()

  /** The UDP application and its service, with an in-process UDP forward between two agents to it. */
  const appThroughForward = async (count: number): Promise<{ app: ChildProcessByStdio<Writable, Readable, null>, line: ReturnType<typeof lines>, fwd: Forward }> => {
    const app = spawn(process.execPath, ['-e', APP, String(count), '1000'], { stdio: ['pipe', 'pipe', 'inherit'] })
    cleanup.push({ close: () => { app.kill() } })
    const line = lines(app, 'the UDP application')
    const servicePort = Number(await line(/^SERVICE (\d+)$/m, 'the UDP service port', 10_000))
    const target = await agent({ allow: [`connect/udp:127.0.0.1:${servicePort}`] })
    const client = await agent()
    const fwd = await forward(client, { peer: target.peer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: servicePort } })
    cleanup.push(fwd)
    return { app, line, fwd }
  }

  it('loses under 1% of 3,000 datagrams with nothing stalled (any kernel buffer size); the tunnel reports its buffers', async () => {
    const COUNT = 3000
    const { app, line, fwd } = await appThroughForward(COUNT)
    expect(fwd.stats().udpBufferBytes?.recv).toBeGreaterThan(0)
    app.stdin.write(`${fwd.address.port}\n`)
    const result = JSON.parse(await line(/^(\{.*\})$/m, 'the count of datagrams that came back', 30_000)) as { atService: number, back: number }
    expect((COUNT - result.back) / COUNT, `back ${result.back} of ${COUNT}; tunnel ${JSON.stringify(fwd.stats())}`).toBeLessThan(0.01)
  }, 45_000)

  it.skipIf(!BIG_BUFFERS)('loses under 3% of 3,000 datagrams while the peers\' event loop stalls 300 ms every second (a loaded machine; needs rmem_max raised)', async () => {
    const COUNT = 3000
    const { app, line, fwd } = await appThroughForward(COUNT)
    app.stdin.write(`${fwd.address.port}\n`)
    // Before the kernel buffers were raised, this lost 11.7% (in the kernel, uncounted).
    const stall = setInterval(() => { const until = performance.now() + 300; while (performance.now() < until); }, 1000)
    cleanup.push({ close: () => clearInterval(stall) })
    const result = JSON.parse(await line(/^(\{.*\})$/m, 'the count of datagrams that came back', 30_000)) as { atService: number, back: number }
    clearInterval(stall)
    const lost = (COUNT - result.back) / COUNT
    expect(result.atService, `delivered to the service ${result.atService}, back ${result.back}, tunnel ${JSON.stringify(fwd.stats())}`).toBeGreaterThan(COUNT * 0.97)
    expect(lost, `back ${result.back} of ${COUNT}; tunnel ${JSON.stringify(fwd.stats())}`).toBeLessThan(0.03)
    // What the tunnel dropped, it counted by cause.
    const s = fwd.stats()
    expect(Object.values(s.droppedBy).reduce((a, b) => a + b, 0)).toBe(s.droppedDatagrams)
  }, 45_000)

  it.skipIf(!BIG_BUFFERS)('loses under 3% of 3,000 datagrams while the far side (`starsock listen`) is stopped 500 ms every second (needs rmem_max raised)', async () => {
    const COUNT = 3000
    const dir = mkdtempSync(join(tmpdir(), 'starsock-udp-loss-'))
    cleanup.push({ close: () => rmSync(dir, { recursive: true, force: true }) })
    const app = spawn(process.execPath, ['-e', APP, String(COUNT), '1000'], { stdio: ['pipe', 'pipe', 'inherit'] })
    cleanup.push({ close: () => { app.kill() } })
    const appLine = lines(app, 'the UDP application')
    const servicePort = Number(await appLine(/^SERVICE (\d+)$/m, 'the UDP service port', 10_000))
    const listen = spawn(process.execPath, [BIN, 'listen', '--server', server().url(), '--key', join(dir, 'key'), '--allow', `connect/udp:127.0.0.1:${servicePort}`, '--no-prompt', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
    cleanup.push({ close: () => { listen.kill('SIGCONT'); listen.kill('SIGKILL') } })
    const listenerId = await lines(listen, 'starsock listen')(/"event":"ready".*?"peerId":"(\w+)"/, 'starsock listen to be ready', 20_000)
    const client = await agent()
    const fwd = await forward(client, { peer: listenerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: servicePort } })
    cleanup.push(fwd)
    app.stdin.write(`${fwd.address.port}\n`)
    // With a window fixed at 256 KiB, this lost 12% (367 and 371 of 3,000 dropped for want of credit, counted).
    const stop = setInterval(() => {
      listen.kill('SIGSTOP')
      setTimeout(() => listen.kill('SIGCONT'), 500)
    }, 1000)
    cleanup.push({ close: () => clearInterval(stop) })
    const result = JSON.parse(await appLine(/^(\{.*\})$/m, 'the count of datagrams that came back', 30_000)) as { atService: number, back: number }
    clearInterval(stop)
    listen.kill('SIGCONT')
    const s = fwd.stats()
    expect(result.atService, `delivered to the service ${result.atService}, back ${result.back}, tunnel ${JSON.stringify(s)}`).toBeGreaterThan(COUNT * 0.97)
    expect((COUNT - result.back) / COUNT, `back ${result.back} of ${COUNT}; tunnel ${JSON.stringify(s)}`).toBeLessThan(0.03)
    expect(Object.values(s.droppedBy).reduce((a, b) => a + b, 0)).toBe(s.droppedDatagrams)
  }, 60_000)
})
