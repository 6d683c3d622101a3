/**
 * The physical-limit references: a plain `node:net` TCP relay and a plain `ws` relay, one process.
 * Two connections with the same pair id are joined, sender to receiver, and bytes (or messages)
 * are forwarded as they come, with the same backpressure a careful relay would use.
 *
 * TCP: a connection starts with one line `<pairId> send|recv\n`. WS: `/?pair=<id>&role=send|recv`.
 * Prints `READY {"tcp":port,"ws":port}` once both listen.
 */
import { createServer, type Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'

const tcpWaiting = new Map<string, { role: string, socket: Socket, rest: Buffer }>()

const tcp = createServer((socket) => {
  let head = Buffer.alloc(0)
  const onData = (d: Buffer): void => {
    head = Buffer.concat([head, d])
    const nl = head.indexOf(10)
    if (nl < 0) return
    socket.off('data', onData)
    socket.pause()
    const [pair = '', role = ''] = head.subarray(0, nl).toString().split(' ')
    const rest = head.subarray(nl + 1)
    const other = tcpWaiting.get(pair)
    if (other === undefined) return void tcpWaiting.set(pair, { role, socket, rest })
    tcpWaiting.delete(pair)
    const sender = role === 'send' ? { socket, rest } : other
    const receiver = role === 'send' ? other.socket : socket
    if (sender.rest.length > 0) receiver.write(sender.rest)
    sender.socket.pipe(receiver)
    receiver.resume()
    receiver.on('data', () => {}) // nothing comes back; keep it flowing
  }
  socket.on('data', onData)
  socket.on('error', () => {})
})

const wsWaiting = new Map<string, { role: string, ws: WebSocket }>()
const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: 64 * 1024 * 1024 })
wss.on('connection', (ws, req) => {
  const params = new URL(req.url ?? '/', 'http://x').searchParams
  const pair = params.get('pair') ?? ''
  const role = params.get('role') ?? ''
  const other = wsWaiting.get(pair)
  if (other === undefined) return void wsWaiting.set(pair, { role, ws })
  wsWaiting.delete(pair)
  const sender = role === 'send' ? ws : other.ws
  const receiver = role === 'send' ? other.ws : ws
  const HIGH = 4 * 1024 * 1024
  sender.on('message', (data, isBinary) => {
    receiver.send(data, { binary: isBinary })
    // Backpressure like a careful relay: stop reading the sender while the receiver lags.
    if (receiver.bufferedAmount > HIGH) {
      sender.pause()
      const wait = (): void => { if (receiver.bufferedAmount < HIGH / 2) sender.resume(); else setTimeout(wait, 1) }
      setTimeout(wait, 1)
    }
  })
  sender.on('close', () => receiver.close())
  sender.send('go')
})

await Promise.all([
  new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve)),
  new Promise<void>((resolve) => wss.once('listening', resolve))
])
const tcpPort = (tcp.address() as { port: number }).port
const wsPort = (wss.address() as { port: number }).port
process.stdout.write(`READY ${JSON.stringify({ tcp: tcpPort, ws: wsPort })}\n`)
