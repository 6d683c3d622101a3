/**
 * Client side of the benchmarks, in its own process so clients never share a core's event loop
 * with the server: `node --conditions=starsock-source --import tsx bench/worker.ts TASK JSON_ARGS`. A task prints its result
 * as one JSON line on stdout; `crowd` prints `READY {...}` and then answers commands on stdin.
 *
 * Legacy-protocol tasks use socket.io-client 2 (the legacy client's own), so the same client
 * runs against the original server (socket.io 2) and ours (which accepts engine.io 3).
 */
import { createRequire } from 'node:module'
import { connect as tcpConnect } from 'node:net'
import { createInterface } from 'node:readline'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import WebSocket from 'ws'
import { createPeer } from '../client/peer.ts'
import { cpuSeconds } from './proc-stat.ts'
import { streamSink, streamSource } from './stream-tasks.ts'
import { tunnelBytes, tunnelClient, tunnelTarget } from './tunnel-tasks.ts'

const requireLegacy = createRequire(createRequire(import.meta.url).resolve('libp2p-websocket-star'))
const io2 = requireLegacy('socket.io-client') as (url: string, opts: Record<string, unknown>) => any
const WStar = requireLegacy('libp2p-websocket-star')
const legacyMultiaddr = requireLegacy('multiaddr') as (s: string) => any
const LegacyPeerId = requireLegacy('peer-id')
const pull = requireLegacy('pull-stream')

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const now = (): number => performance.now()
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const ev = (type: string, id: string): string => `socket.io-pull-stream.${type}.${id}`

interface Key { key: PrivateKey, id: string }

async function keys (type: 'RSA' | 'Ed25519', n: number): Promise<Key[]> {
  const out: Key[] = []
  for (let i = 0; i < n; i++) {
    const key = type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair('Ed25519')
    out.push({ key, id: peerIdFromPrivateKey(key).toString() })
  }
  return out
}

function addrOf (port: number, id: string): string {
  return `/ip4/127.0.0.1/tcp/${port}/ws/p2p-websocket-star/ipfs/${id}`
}

async function connect2 (url: string): Promise<any> {
  const socket = io2(url, { transports: ['websocket'], forceNew: true, reconnection: false })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('connect_error', reject)
  })
  return socket
}

function ack (socket: any, event: string, ...args: unknown[]): Promise<unknown[]> {
  return new Promise((resolve) => socket.emit(event, ...args, (...reply: unknown[]) => resolve(reply)))
}

async function join2 (socket: any, k: Key, addr: string): Promise<void> {
  const [e1, nonce] = await ack(socket, 'ss-join', addr, hex(publicKeyToProtobuf(k.key.publicKey)))
  if (e1 != null) throw new Error(`join: ${String(e1)}`)
  const sig = await k.key.sign(new TextEncoder().encode(nonce as string))
  const [e2] = await ack(socket, 'ss-join', addr, hex(sig))
  if (e2 != null) throw new Error(`join: ${String(e2)}`)
}

async function pool<T> (count: number, inFlight: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  let next = 0
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, async () => {
    while (next < count) {
      const i = next++
      out[i] = await fn(i)
    }
  }))
  return out
}

function percentiles (ms: number[]): Record<string, number> {
  const s = [...ms].sort((a, b) => a - b)
  const at = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length, count: s.length }
}

/** `fn`'s result and, with `serverPid`, the CPU seconds that process used while `fn` ran. */
async function withServerCpu<T> (serverPid: number | undefined, fn: () => Promise<T>): Promise<{ result: T, serverCpu: number | undefined }> {
  const cpu0 = serverPid !== undefined ? cpuSeconds(serverPid) : NaN
  const result = await fn()
  return { result, serverCpu: serverPid !== undefined ? cpuSeconds(serverPid) - cpu0 : undefined }
}

/**
 * Joins through the challenge: a fresh socket each, `inFlight` at a time. With `warmup`, that many
 * unmeasured joins first, in the same process, into the server at `warmup.url`/`warmup.port` (one
 * that is not measured): a fresh client's first joins run before its code is optimised and,
 * against a server that answers faster than the client can ask, set the rate; and the original
 * server gets slower with every join it has taken, so they must not go into the measured one. With
 * `serverPid`, the server's CPU seconds over the measured joins only.
 */
async function joins (a: { url: string, port: number, keyType: 'RSA' | 'Ed25519', count: number, inFlight: number, warmup?: { count: number, url: string, port: number }, serverPid?: number }): Promise<unknown> {
  const ks = await keys(a.keyType, a.keyType === 'RSA' ? 20 : 100)
  const run = async (count: number, url: string, port: number): Promise<{ joins: number, failures: number, seconds: number, rate: number }> => {
    let failures = 0
    const t0 = now()
    await pool(count, a.inFlight, async (i) => {
      const k = ks[i % ks.length] as Key
      const socket = await connect2(url)
      try {
        await join2(socket, k, addrOf(port, k.id))
      } catch {
        failures++
      } finally {
        socket.close()
      }
    })
    const seconds = (now() - t0) / 1000
    return { joins: count - failures, failures, seconds, rate: (count - failures) / seconds }
  }
  const cold = a.warmup !== undefined && a.warmup.count > 0 ? await run(a.warmup.count, a.warmup.url, a.warmup.port) : undefined
  const { result: measured, serverCpu } = await withServerCpu(a.serverPid, async () => await run(a.count, a.url, a.port))
  return { ...measured, serverCpu, ...(cold === undefined ? {} : { coldRate: cold.rate, coldFailures: cold.failures }) }
}

/** Answer a dial the way the legacy listener does, then end the listener stream. */
function answerDials (socket: any): void {
  socket.on('ss-incomming', (dialId: string, _from: string, cb: (err?: unknown) => void) => {
    socket.emit(ev('accept', `${dialId}.dialer`))
    socket.once(ev('accept', `${dialId}.listener`), () => socket.emit(ev('error', `${dialId}.listener`), true))
    cb()
  })
}

/** `count` joined peers that answer dials and count `ws-peer`; commands on stdin: reset, count, stop. */
async function crowd (a: { url: string, port: number, count: number }): Promise<void> {
  const ks = await keys('Ed25519', a.count)
  let wsPeer = 0
  const sockets: any[] = []
  const t0 = now()
  const addrs: string[] = []
  let failed = 0
  // Bounded: a server that cannot admit the crowd (the original at 1,000 peers) is recorded as such.
  const deadline = t0 + 180_000
  await pool(a.count, 50, async (i) => {
    if (now() > deadline) { failed++; return }
    const k = ks[i] as Key
    try {
      const socket = await connect2(a.url)
      socket.on('ws-peer', () => { wsPeer++ })
      answerDials(socket)
      sockets.push(socket)
      await join2(socket, k, addrOf(a.port, k.id))
      addrs.push(addrOf(a.port, k.id))
    } catch {
      failed++
    }
  })
  process.stdout.write(`READY ${JSON.stringify({ joined: addrs.length, failed, seconds: (now() - t0) / 1000, addrs })}\n`)
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'reset') wsPeer = 0
    else if (line === 'count') process.stdout.write(JSON.stringify({ wsPeer }) + '\n')
    else if (line === 'stop') break
  }
  for (const s of sockets) s.close()
  process.exit(0)
}

/**
 * Dial latency: sequential dials to random targets, from `ss-dial` to its ack. With `warmup`, that
 * many dials first, unmeasured but for their own percentiles (`cold`): a fresh dialer, listeners and
 * server run their dial code unoptimised for hundreds of dials, and those set the p99. With
 * `reference`, a plain request (as `rtt`) right before each dial, warm-up included, on the same
 * socket: the reference sees the same process, the same warm-up and the same moment as the dials
 * (`reference`, `coldReference`). With `serverPid`, the server's CPU seconds over the measured
 * dials (and their references): `serverCpu`. `failures` counts measured dials, `coldFailures` the
 * warm-up's.
 */
async function dials (a: { url: string, port: number, targetsFile: string, count: number, warmup?: number, reference?: boolean, serverPid?: number }): Promise<unknown> {
  const { readFile } = await import('node:fs/promises')
  const targets = JSON.parse(await readFile(a.targetsFile, 'utf8')) as string[]
  const [k] = await keys('Ed25519', 1)
  const socket = await connect2(a.url)
  const me = addrOf(a.port, (k as Key).id)
  await join2(socket, k as Key, me)
  const tally = (): { ms: number[], refMs: number[], failures: number, firstError: unknown } => ({ ms: [], refMs: [], failures: 0, firstError: undefined })
  const run = tally()
  const cold = tally()
  const once = async (i: number, into: typeof run): Promise<void> => {
    if (a.reference === true) into.refMs.push(await plainRequest(socket, i))
    const dialId = `b${i}-${Math.random().toString(36).slice(2)}`
    const to = targets[Math.floor(Math.random() * targets.length)] as string
    socket.once(ev('accept', `${dialId}.dialer`), () => socket.emit(ev('error', `${dialId}.dialer`), true))
    const t0 = now()
    const [err] = await ack(socket, 'ss-dial', me, to, dialId)
    into.ms.push(now() - t0)
    if (err != null) {
      into.failures++
      into.firstError ??= err
    } else {
      socket.emit(ev('accept', `${dialId}.listener`))
    }
  }
  const warmup = a.warmup ?? 0
  for (let i = 0; i < warmup; i++) await once(-1 - i, cold)
  const { serverCpu } = await withServerCpu(a.serverPid, async () => { for (let i = 0; i < a.count; i++) await once(i, run) })
  socket.close()
  const reference = a.reference === true ? percentiles(run.refMs) : undefined
  const coldPart = warmup > 0 ? { cold: percentiles(cold.ms), coldReference: a.reference === true ? percentiles(cold.refMs) : undefined, coldFailures: cold.failures } : {}
  return { ...percentiles(run.ms), failures: run.failures, firstError: run.firstError ?? cold.firstError, reference, serverCpu, ...coldPart }
}

/** One request both servers answer at once (`ss-dial` from an address the socket did not join); settles with its round trip in ms. */
async function plainRequest (socket: any, i: number): Promise<number> {
  const t0 = now()
  await ack(socket, 'ss-dial', '/p2p-websocket-star', '/p2p-websocket-star', `r${i}`)
  return now() - t0
}

/** Round trip of a request both servers answer at once (`plainRequest`). */
async function rtt (a: { url: string, count: number }): Promise<unknown> {
  const socket = await connect2(a.url)
  const ms: number[] = []
  for (let i = 0; i < a.count; i++) ms.push(await plainRequest(socket, i))
  socket.close()
  return percentiles(ms)
}

async function legacyPeer (port: number, handler: (conn: any) => void): Promise<{ transport: any, addr: string, stop: () => void }> {
  const bytes = Buffer.concat([Buffer.from([0x08, 0x01, 0x12, 0x60])])
  const key = await generateKeyPair('Ed25519')
  const proto = Buffer.concat([bytes, key.raw, key.publicKey.raw])
  const peerId = await new Promise<any>((resolve, reject) => LegacyPeerId.createFromPrivKey(proto, (e: Error | null, id: any) => e != null ? reject(e) : resolve(id)))
  const addr = addrOf(port, peerId.toB58String())
  const transport = new WStar({ id: peerId })
  const listener = transport.createListener(handler)
  listener.on('error', () => {})
  await new Promise<void>((resolve, reject) => listener.listen(legacyMultiaddr(addr), (e: Error | null) => e != null ? reject(e) : resolve()))
  return { transport, addr, stop: () => listener.io?.disconnect() }
}

/** Throughput with the published legacy client: `streams` dials, `bytes` in all, 64 KiB chunks. */
async function throughputLegacy (a: { port: number, bytes: number, streams: number }): Promise<unknown> {
  let received = 0
  let done: () => void = () => {}
  const finished = new Promise<void>((resolve) => { done = resolve })
  const b = await legacyPeer(a.port, (conn: any) => {
    pull(conn, pull.drain((chunk: Buffer) => { received += chunk.length; if (received >= a.bytes) done() }, () => {}))
    pull(pull.empty(), conn)
  })
  const sender = await legacyPeer(a.port, () => {})
  const per = a.bytes / a.streams
  const chunk = Buffer.alloc(64 * 1024, 7)
  const conns = await Promise.all(Array.from({ length: a.streams }, async () => await new Promise<any>((resolve, reject) => {
    sender.transport.dial(legacyMultiaddr(b.addr), (e: Error | null, c: any) => e != null ? reject(e) : resolve(c))
  })))
  const t0 = now()
  for (const conn of conns) {
    let sent = 0
    pull(pull((end: unknown, cb: (end: unknown, data?: Buffer) => void) => {
      if (end != null || sent >= per) return cb(true)
      sent += chunk.length
      cb(null, chunk)
    }), conn, pull.drain(() => {}, () => {}))
  }
  await finished
  const seconds = (now() - t0) / 1000
  b.stop()
  sender.stop()
  return { bytes: received, seconds, mibPerSecond: received / 1048576 / seconds }
}

/**
 * Throughput with the starsock client: encrypted (the default) unless `secure` is false, then
 * both peers are plaintext ones (`createPeer({ secure: false })`). The dials, and with them the
 * handshakes, are done before the clock starts.
 */
async function throughputOurs (a: { url: string, sinkUrl?: string, bytes: number, streams: number, windowBytes?: number, chunkBytes?: number, secure?: boolean }): Promise<unknown> {
  const secure = a.secure !== false
  // With `sinkUrl` (the cluster scenario) the receiver joins another node of the cluster.
  const b = await createPeer({ server: a.sinkUrl ?? a.url, windowBytes: a.windowBytes, secure })
  const sender = await createPeer({ server: a.url, chunkBytes: a.chunkBytes, secure })
  let received = 0
  // The receiver's reads end with an error when `b` closes before the stream's end came (a
  // serving worker must not die of it after its answer).
  b.handle((conn) => { (async () => { for await (const c of conn) received += c.byteLength })().catch(() => {}) })
  const per = a.bytes / a.streams
  const chunk = new Uint8Array(256 * 1024).fill(7)
  // A receiver on another node reaches the sender's node through Redis's change log: wait for it, untimed.
  if (a.sinkUrl !== undefined) await reachable(sender, b.peerId)
  const conns = await Promise.all(Array.from({ length: a.streams }, async () => await sender.dial(b.peerId)))
  // A run that asked for encryption and did not get it (or the other way round) must not pass as one.
  const notAsked = conns.find((c) => c.secure !== secure)
  if (notAsked !== undefined) throw new Error(`asked for ${secure ? 'an encrypted' : 'a plaintext'} connection, got secure: ${String(notAsked.secure)}`)
  const t0 = now()
  await Promise.all(conns.map(async (conn) => {
    for (let sent = 0; sent < per; sent += chunk.byteLength) await conn.write(chunk)
    await conn.closeWrite()
  }))
  while (received < a.bytes) await sleep(1)
  const seconds = (now() - t0) / 1000
  await b.close()
  await sender.close()
  return { bytes: received, seconds, mibPerSecond: received / 1048576 / seconds }
}

/** Wait (at most 10 s) until `peerId` is in the directory of `peer`'s node: a peer list that names it. */
async function reachable (peer: Awaited<ReturnType<typeof createPeer>>, peerId: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (peer.peers().some((p) => p.peerId === peerId)) return
    await sleep(50)
  }
  throw new Error(`peer ${peerId} never reached the dialer's node`)
}

/** Throughput through the raw TCP relay. */
async function throughputTcp (a: { port: number, bytes: number, streams: number }): Promise<unknown> {
  const per = a.bytes / a.streams
  let received = 0
  const chunk = Buffer.alloc(64 * 1024, 7)
  const receivers: Array<ReturnType<typeof tcpConnect>> = []
  const t0 = now()
  await Promise.all(Array.from({ length: a.streams }, async (_, i) => {
    const pair = `p${i}-${Math.random()}`
    const recv = tcpConnect(a.port, '127.0.0.1')
    receivers.push(recv)
    recv.write(`${pair} recv\n`)
    recv.on('data', (d: Buffer) => { received += d.length })
    const send = tcpConnect(a.port, '127.0.0.1')
    send.write(`${pair} send\n`)
    for (let sent = 0; sent < per; sent += chunk.length) {
      if (!send.write(chunk)) await new Promise((resolve) => send.once('drain', resolve))
    }
    send.end()
  }))
  while (received < a.bytes) await sleep(1)
  const seconds = (now() - t0) / 1000
  for (const r of receivers) r.destroy()
  return { bytes: received, seconds, mibPerSecond: received / 1048576 / seconds }
}

/** Throughput through the raw `ws` relay. */
async function throughputWs (a: { port: number, bytes: number, streams: number }): Promise<unknown> {
  const per = a.bytes / a.streams
  let received = 0
  const chunk = Buffer.alloc(64 * 1024, 7)
  const sockets: WebSocket[] = []
  const t0 = now()
  await Promise.all(Array.from({ length: a.streams }, async (_, i) => {
    const pair = `p${i}-${Math.random()}`
    const recv = new WebSocket(`ws://127.0.0.1:${a.port}/?pair=${pair}&role=recv`)
    sockets.push(recv)
    recv.on('message', (d: Buffer, binary: boolean) => { if (binary) received += d.length })
    await new Promise((resolve) => recv.once('open', resolve))
    const send = new WebSocket(`ws://127.0.0.1:${a.port}/?pair=${pair}&role=send`)
    sockets.push(send)
    await new Promise((resolve) => send.once('message', resolve)) // "go": paired
    for (let sent = 0; sent < per; sent += chunk.length) {
      send.send(chunk)
      while (send.bufferedAmount > 4 * 1024 * 1024) await sleep(1)
    }
  }))
  while (received < a.bytes) await sleep(1)
  const seconds = (now() - t0) / 1000
  for (const ws of sockets) ws.close() // for a worker that serves more tasks (`serve`)
  return { bytes: received, seconds, mibPerSecond: received / 1048576 / seconds }
}

/**
 * A sender with no flow control (like the legacy sink) blasts `bytes` to a receiver that reads
 * its socket at `rate` bytes per second; the orchestrator watches the server's memory meanwhile.
 */
async function slowReceiver (a: { url: string, port: number, bytes: number, rate: number }): Promise<unknown> {
  const [ka, kb] = await keys('Ed25519', 2) as [Key, Key]
  const sa = await connect2(a.url)
  const sb = await connect2(a.url)
  const addrA = addrOf(a.port, ka.id)
  const addrB = addrOf(a.port, kb.id)
  await join2(sa, ka, addrA)
  await join2(sb, kb, addrB)
  let received = 0
  let ended = false
  let end: unknown
  sb.on('ss-incomming', (dialId: string, _from: string, cb: () => void) => {
    sb.on(ev('queue', `${dialId}.dialer`), (d: Buffer) => { received += d.length })
    sb.on(ev('error', `${dialId}.dialer`), (value: unknown) => { ended = true; end = value })
    sb.emit(ev('accept', `${dialId}.dialer`))
    cb()
  })
  const accepted = new Promise((resolve) => sa.once(ev('accept', 'slow.dialer'), resolve))
  const [err] = await ack(sa, 'ss-dial', addrA, addrB, 'slow')
  if (err != null) throw new Error(String(err))
  await accepted
  // Meter the receiver's TCP reads: resume for a 50 ms budget, pause once it is spent.
  const net = sb.io.engine.transport.ws._socket
  const budget = a.rate / 20
  let spentAt = 0
  const meter = setInterval(() => { spentAt = received; net.resume() }, 50)
  sb.on(ev('queue', 'slow.dialer'), () => { if (received - spentAt >= budget) net.pause() })
  const chunk = Buffer.alloc(64 * 1024, 7)
  const t0 = now()
  for (let sent = 0; sent < a.bytes; sent += chunk.length) {
    sa.emit(ev('queue', 'slow.dialer'), chunk)
    if (sent % (16 * chunk.length) === 0) await sleep(0) // let the socket write; no flow control
  }
  sa.emit(ev('error', 'slow.dialer'), true)
  while (!ended && received < a.bytes) await sleep(20)
  clearInterval(meter)
  const seconds = (now() - t0) / 1000
  sa.close()
  sb.close()
  return { bytes: received, seconds, mibPerSecond: received / 1048576 / seconds, complete: received >= a.bytes, end }
}

/**
 * Run tasks sent on stdin, one JSON line `{"task","args"}` at a time, each answered with one JSON
 * line (its result, or `{"error"}`), so a series of runs shares one warm process. Prints
 * `READY {}` first; ends on `stop`.
 */
async function serve (): Promise<void> {
  process.stdout.write('READY {}\n')
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stop') break
    let answer: unknown
    try {
      const { task, args } = JSON.parse(line) as { task: string, args: unknown }
      const fn = tasks[task]
      if (fn === undefined || fn === serve) throw new Error(`unknown task ${task}`)
      answer = await fn(args) ?? {}
    } catch (err) {
      answer = { error: String((err as Error).message ?? err) }
    }
    process.stdout.write(JSON.stringify(answer) + '\n')
  }
  process.exit(0)
}

/** A full garbage collection (the worker runs with `--expose-gc`), asked for between measured runs. */
async function gc (): Promise<unknown> {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error('no global gc(): the worker runs without --expose-gc')
  collect()
  return {}
}

const tasks: Record<string, (a: any) => Promise<unknown>> = { gc, joins, crowd, dials, rtt, throughputLegacy, throughputOurs, throughputTcp, throughputWs, slowReceiver, streamSink, streamSource, tunnelTarget, tunnelClient, tunnelBytes, serve }
const [task = '', json = '{}'] = process.argv.slice(2)
const fn = tasks[task]
if (fn === undefined) {
  process.stderr.write(`unknown task ${task}\n`)
  process.exit(2)
}
try {
  const result = await fn(JSON.parse(json))
  if (result !== undefined) process.stdout.write(JSON.stringify(result) + '\n')
  process.exit(0)
} catch (err) {
  process.stderr.write(`worker ${task}: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
