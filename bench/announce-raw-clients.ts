/**
 * Cheap batch clients for `bench/announce-death.ts`: `count` raw WebSocket connections that speak
 * engine.io 4 and socket.io by hand (open, connect, pong, one join, one hello with `peerBatch`)
 * and only count the `starsock:peer-batch` events they get, without parsing them: thousands of
 * clients each receiving a batch of 10,000 leaves must not cost the machine more than the server.
 *
 * argv[2]: JSON `{ port, count, tag }`. Prints `READY {"joined","failed"}` once all joined (as
 * legacy clients: no hello yet, so the crowd's own joins are not batched to it); then on stdin
 * `arm` (the hello with `peerEvents` and `peerBatch`, prints `ARMED {"armed"}`), `expect K` (counts
 * start again; once every open client got K batch events prints `DONE {"t","complete","clients","bytes"}`,
 * `t` the `Date.now()` of the last), `report` (prints `DONE` as it stands) and `stop`.
 */
import { createInterface } from 'node:readline'
import WebSocket from 'ws'
import { joinAll } from './join-pool.ts'

const { port, count, tag } = JSON.parse(process.argv[2] ?? '{}') as { port: number, count: number, tag: string }
const IN_FLIGHT = 100
const BATCH_PREFIX = '42["starsock:peer-batch",'

/** One raw client: its socket, its pending acks by id, and what it got since the last `expect`. */
interface RawClient {
  ws: WebSocket
  acks: Map<number, (reply: string) => void>
  batches: number
}

const clients: RawClient[] = []
let expected = Infinity
let complete = 0
let bytes = 0
let lastMs = 0
let reported = false

/** The socket.io packet `42<id>[event, ...args]`, settling with the ack's JSON. */
async function ask (client: RawClient, id: number, event: string, ...args: unknown[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack to ${event}`)), 60_000)
    client.acks.set(id, (reply) => { clearTimeout(timer); resolve(reply) })
    client.ws.send(`42${id}${JSON.stringify([event, ...args])}`)
  })
}

/** What one engine.io message means to the client. */
function onMessage (client: RawClient, data: string, connected: () => void): void {
  if (data === '2') client.ws.send('3') // engine.io ping
  else if (data.startsWith('0')) client.ws.send('40') // engine.io open: connect to the main namespace
  else if (data.startsWith('40')) connected()
  else if (data.startsWith(BATCH_PREFIX)) {
    client.batches++
    bytes += data.length
    if (client.batches === expected) {
      complete++
      lastMs = Date.now()
      check()
    }
  } else if (data.startsWith('43')) {
    const match = /^43(\d+)/.exec(data)
    const id = Number(match?.[1])
    client.acks.get(id)?.(data.slice(match?.[0].length ?? 2))
    client.acks.delete(id)
  }
}

/** Print `DONE` once every open client is complete (or when asked). */
function check (force = false): void {
  const open = clients.filter((c) => c.ws.readyState === WebSocket.OPEN).length
  if (!force && (reported || complete < open)) return
  reported = true
  process.stdout.write(`DONE ${JSON.stringify({ t: lastMs, complete, clients: open, bytes })}\n`)
}

/** Connect, then join `addr`; rejects on a refusal. */
async function joinOne (i: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false })
  const client: RawClient = { ws, acks: new Map(), batches: 0 }
  clients.push(client)
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (raw: Buffer) => onMessage(client, raw.toString(), resolve))
    ws.once('error', reject)
    ws.once('close', () => reject(new Error('closed')))
  })
  ws.on('close', () => { if (expected !== Infinity) check() }) // one fewer to wait for
  const reply = await ask(client, 1, 'ss-join', `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmRaw${tag}x${i}`)
  if (!reply.startsWith('[null')) throw new Error(`join refused: ${reply.slice(0, 80)}`)
}

const { joined, failed } = await joinAll(count, IN_FLIGHT, joinOne)
process.stdout.write(`READY ${JSON.stringify({ joined, failed })}\n`)

/** Every client's hello asking for batches, `IN_FLIGHT` at a time; settles with how many were answered. */
async function arm (): Promise<number> {
  let armed = 0
  for (let i = 0; i < clients.length; i += IN_FLIGHT) {
    await Promise.all(clients.slice(i, i + IN_FLIGHT).map(async (client) => {
      if (client.ws.readyState !== WebSocket.OPEN) return
      try {
        await ask(client, 2, 'starsock:hello', { peerEvents: true, peerBatch: true })
        armed++
      } catch {}
    }))
  }
  return armed
}

for await (const line of createInterface({ input: process.stdin })) {
  const [command, a] = line.split(' ')
  if (command === 'arm') process.stdout.write(`ARMED ${JSON.stringify({ armed: await arm() })}\n`)
  else if (command === 'expect') {
    for (const c of clients) c.batches = 0
    expected = Number(a)
    complete = 0
    bytes = 0
    lastMs = 0
    reported = false
  } else if (command === 'report') check(true)
  else if (command === 'stop') break
}
for (const c of clients) c.ws.terminate()
process.exit(0)
