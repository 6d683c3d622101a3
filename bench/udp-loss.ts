/**
 * UDP loss through a real `forward`: a server on 127.0.0.1 and two sock agents in this process;
 * the service (a UDP echo) and the application in a worker thread, so their pacing and buffers
 * do not depend on the tunnel's event loop.
 * Sends COUNT datagrams of 16 to 1,200 bytes at RATE per second and prints where they were lost:
 * dropped by the tunnel (by cause), by the kernel (`/proc/net/snmp` receive-buffer errors, for the
 * whole machine), and CPU steal over the run.
 *
 * STALL_MS blocks the tunnel's event loop that long every second, as a loaded machine (or a
 * hypervisor's steal) does.
 *
 *   node --conditions=starsock-source --import tsx bench/udp-loss.ts [COUNT=10000] [RATE=1000] [STALL_MS=0]
 */
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { createPeer } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { forward } from '../client/sock/tunnel.node.ts'
import { createServer } from '../server/server.ts'

const COUNT = Number(process.argv[2] ?? 10_000)
const RATE = Number(process.argv[3] ?? 1000)
const STALL_MS = Number(process.argv[4] ?? 0)

/** Kernel UDP counters (all sockets of the machine). */
function udpSnmp (): Record<string, number> {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'))
  const names = (lines[0] ?? '').split(/\s+/).slice(1)
  const values = (lines[1] ?? '').split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? 0]))
}

/** Total and steal jiffies of all CPUs. */
function cpu (): { total: number, steal: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').split(/\s+/).slice(1).map(Number)
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 }
}

/** The application: sends COUNT datagrams at RATE to PORT and counts the echoes (plain JS, for a worker thread). */
const SENDER = `
const dgram = require('node:dgram')
const { parentPort, workerData } = require('node:worker_threads')
const { COUNT, RATE } = workerData
// The service (a UDP echo) and the application, both with large buffers: what they lose is not the tunnel's.
const service = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
const app = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
let atService = 0
let back = 0
service.on('message', (msg, r) => { atService++; service.send(msg, r.port, r.address) })
app.on('message', () => { back++ })
service.bind(0, '127.0.0.1', () => app.bind(0, '127.0.0.1', () => {
  parentPort.postMessage({ servicePort: service.address().port })
}))
parentPort.once('message', ({ port }) => {
  const t0 = performance.now()
  let sent = 0
  let bytes = 0
  let seed = 7
  const tick = () => {
    const due = Math.min(COUNT, Math.floor((performance.now() - t0) * RATE / 1000))
    while (sent < due) {
      seed = (seed * 1103515245 + 12345) >>> 0
      const size = 16 + seed % 1185
      app.send(Buffer.alloc(size, sent & 0xff), port, '127.0.0.1')
      bytes += size
      sent++
    }
    if (sent < COUNT) return setTimeout(tick, 1)
    const sendMs = performance.now() - t0
    // Let what is in flight arrive: done after a second without an echo.
    let last = -1
    const settle = setInterval(() => {
      if (back !== last) { last = back; return }
      clearInterval(settle)
      app.close()
      service.close()
      parentPort.postMessage({ atService, back, sendMs, bytes })
    }, 1000)
  }
  tick()
})
`

const server = createServer({ shutdownGraceMs: 0 })
const { port } = await server.listen(0, '127.0.0.1')
const url = `http://127.0.0.1:${port}`
const worker = new Worker(SENDER, { eval: true, workerData: { COUNT, RATE } })
const { servicePort } = await new Promise<{ servicePort: number }>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject) })
const target = createSockAgent(await createPeer({ server: url }), { host: createNodeHost(), allow: [`connect/udp:127.0.0.1:${servicePort}`] })
const client = createSockAgent(await createPeer({ server: url }), { host: createNodeHost() })
const fwd = await forward(client, { peer: target.peer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: servicePort } })
const snmp0 = udpSnmp()
const cpu0 = cpu()
const stall = STALL_MS > 0 ? setInterval(() => { const until = performance.now() + STALL_MS; while (performance.now() < until); }, 1000) : undefined
worker.postMessage({ port: fwd.address.port })
const { atService, back, sendMs, bytes } = await new Promise<{ atService: number, back: number, sendMs: number, bytes: number }>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject) })
clearInterval(stall)
const snmp1 = udpSnmp()
const cpu1 = cpu()
const pct = (n: number): string => `${(100 * n / COUNT).toFixed(2)}%`
const result = {
  sent: COUNT,
  rate: RATE,
  sendSeconds: +(sendMs / 1000).toFixed(2),
  avgBytes: Math.round(bytes / COUNT),
  atService,
  lostToService: pct(COUNT - atService),
  echoedBack: back,
  lostRoundTrip: pct(COUNT - back),
  tunnel: fwd.stats(),
  forwardAgent: client.stats(),
  targetAgent: target.stats(),
  kernelRcvbufErrors: snmp1.RcvbufErrors! - snmp0.RcvbufErrors!,
  kernelSndbufErrors: snmp1.SndbufErrors! - snmp0.SndbufErrors!,
  stealPct: +(100 * (cpu1.steal - cpu0.steal) / Math.max(1, cpu1.total - cpu0.total)).toFixed(1),
  loadavg: readFileSync('/proc/loadavg', 'utf8').trim()
}
process.stdout.write(JSON.stringify(result, null, 2) + '\n')
await fwd.close()
await client.close(); await client.peer.close()
await target.close(); await target.peer.close()
await server.close()
