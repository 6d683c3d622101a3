/** How a TCP connection ended, as the application on it saw it: a reset or a clean end. */
import { createHash } from 'node:crypto'
import type net from 'node:net'

/** How a TCP connection ended, as the application on it saw it. */
export interface Outcome {
  bytes: number
  /** `end` fired: a FIN, or (see `afterEnd`) a reset that Node read as the end. */
  ended: boolean
  /** The error code, if the connection failed before any end (ECONNRESET for a reset). */
  error: string | undefined
  /**
   * After `end`, a zero-length write is made: it fails at once (EPIPE) when the connection is
   * already gone, and goes through when the other side only half-closed (a FIN). Needed because
   * libuv reports a reset that arrives behind unread bytes as a plain end (its POLLHUP shortcut),
   * while the kernel and other programs see ECONNRESET.
   */
  afterEnd: string | undefined
  sha256: string
}

/** Whether the application saw its connection reset (not a clean end). */
export function wasReset (o: Outcome): boolean {
  return o.error === 'ECONNRESET' || (o.ended && (o.afterEnd === 'EPIPE' || o.afterEnd === 'ECONNRESET'))
}

/** Watch a socket: count and hash what it reads, pause at `pauseAt` bytes; settles on `close`. */
export function watch (socket: net.Socket, pauseAt = Infinity): { outcome: Promise<Outcome>, paused: Promise<void>, resume: () => void } {
  let bytes = 0
  let ended = false
  let error: string | undefined
  let afterEnd: string | undefined
  const hash = createHash('sha256')
  let onPaused!: () => void
  let pausedOnce = false
  const paused = new Promise<void>((resolve) => { onPaused = resolve })
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.byteLength
    hash.update(chunk)
    if (bytes >= pauseAt && !pausedOnce) { pausedOnce = true; socket.pause(); onPaused() }
  })
  socket.on('end', () => {
    ended = true
    // Probe, then end our side too so the connection closes.
    socket.write(new Uint8Array(0), (err) => { // zero bytes: nothing injected into the stream
      if (err !== undefined && err !== null) afterEnd = (err as NodeJS.ErrnoException).code ?? err.message
      socket.end()
    })
  })
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (ended) afterEnd ??= err.code ?? err.message
    else error ??= err.code ?? err.message
  })
  const outcome = new Promise<Outcome>((resolve) => socket.once('close', () => resolve({ bytes, ended, error, afterEnd, sha256: hash.digest('hex') })))
  return { outcome, paused, resume: () => socket.resume() }
}

