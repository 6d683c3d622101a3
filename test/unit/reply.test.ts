/** The one reply helper of the server: wire strings for `StarsockError`, `E_INTERNAL` for bugs, one reply each. */
import { describe, expect, it } from 'vitest'
import { once, reply } from '../../server/reply.ts'
import { StarsockError } from '../../shared/errors.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'

/** A logger that keeps what was logged at `error`. */
function recordingLogger (): Logger & { errors: Array<Record<string, unknown>> } {
  const errors: Array<Record<string, unknown>> = []
  const log = { ...silentLogger, errors, error: (fields: unknown) => { errors.push(fields as Record<string, unknown>) }, child: () => log }
  return log
}

/** What `reply` answers for `call`, once it has answered. */
async function answer (call: () => readonly unknown[] | Promise<readonly unknown[]>, log: Logger = silentLogger): Promise<unknown[]> {
  return await new Promise((resolve) => { reply((...args) => { resolve(args) }, log, call) })
}

describe('reply', () => {
  it.each<[string, () => readonly unknown[] | Promise<readonly unknown[]>, unknown[]]>([
    ['a value', () => [null, 1], [null, 1]],
    ['a value, later', async () => [null, null, ['a']], [null, null, ['a']]],
    ['nothing (a dial)', async () => [], []],
    ['a legacy error', () => { throw new StarsockError('E_CRYPTO') }, ['Crypto error']],
    ['a newer error, later', async () => { throw new StarsockError('E_PEER_GONE', 'Peer disconnected during the dial') }, ['Peer disconnected during the dial [E_PEER_GONE]']],
    ['a bug', () => { throw new TypeError('x is undefined') }, ['internal error [E_INTERNAL]']],
    ['a bug, later', async () => { throw new Error('oops') }, ['internal error [E_INTERNAL]']]
  ])('answers %s', async (_, call, expected) => {
    expect(await answer(call)).toEqual(expected)
  })

  it('logs a bug with its stack and sends none of it', async () => {
    const log = recordingLogger()
    const sent = await answer(() => { throw new RangeError('secret detail') }, log)
    expect(JSON.stringify(sent)).not.toContain('secret detail')
    expect(log.errors).toHaveLength(1)
    expect(String(log.errors[0]?.err)).toMatch(/^RangeError: secret detail\n\s+at /)
  })

  it('answers a call that returns at once at once', () => {
    const got: unknown[][] = []
    reply((...args) => { got.push(args) }, silentLogger, () => [null])
    expect(got).toEqual([[null]])
  })

  it('once: only the first answer goes out', () => {
    const got: unknown[][] = []
    const ack = once((...args) => { got.push(args) })
    ack?.(null, 1)
    ack?.('late')
    expect(got).toEqual([[null, 1]])
    expect(once(undefined)).toBeUndefined()
  })
})
