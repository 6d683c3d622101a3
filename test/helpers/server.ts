/** Start a real server on 127.0.0.1 port 0 for a test, and stop it after. */
import { createServer, type StarsockServer } from '../../server/server.ts'
import type { ServerOptions } from '../../server/options.ts'

/** A started server; `close` it in `afterEach`/`afterAll`. */
export async function startServer (options: ServerOptions = {}): Promise<StarsockServer & { port: number }> {
  const server = createServer({ shutdownGraceMs: 0, ...options })
  const addr = await server.listen(0, '127.0.0.1')
  return Object.assign(server, { port: addr.port })
}

/** Resolve when `check` is true, polling every 10 ms; reject after `ms` saying what it waited for. */
export async function waitFor (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** `waitFor` with a check that must ask something first (a metric over HTTP, Redis), polling every 20 ms. */
export async function waitForAsync (what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Settle with `promise`, or reject after `ms` saying what it waited for. */
export async function within<T> (what: string, promise: Promise<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Deterministic pseudo-random bytes (so a failure is reproducible). */
export function testBytes (size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** What `promise` rejected with (fails when it resolves). */
export async function rejected (promise: Promise<unknown>): Promise<unknown> {
  try { await promise } catch (err) { return err }
  throw new Error('expected a rejection')
}
