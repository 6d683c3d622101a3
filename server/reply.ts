/**
 * Answers to requests, in one place: every request that carries an ack gets exactly one reply; a
 * `StarsockError` travels as its wire string; anything else is a bug here, answered `E_INTERNAL`
 * and logged with its stack (never sent: only `{ code, message }` or a legacy string crosses).
 */
import { StarsockError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import type { Ack } from '../shared/validate.ts'

/** `ack`, answering only its first call. */
export function once (ack: Ack | undefined): Ack | undefined {
  if (ack === undefined) return undefined
  let done = false
  return (...args) => {
    if (done) return
    done = true
    ack(...args)
  }
}

/** Answer a request that failed with `err` (see the module comment). */
export function replyError (ack: Ack | undefined, err: unknown, log: Logger): void {
  if (err instanceof StarsockError) {
    log.debug({ code: err.code }, 'refused')
    ack?.(err.toWire())
    return
  }
  log.error({ err: err instanceof Error ? err.stack : String(err) }, 'internal error')
  ack?.(new StarsockError('E_INTERNAL').toWire())
}

/**
 * Run `call` and answer `ack` with the arguments it returns, or settles with; a throw or a
 * rejection is answered by `replyError`. A call that returns at once is answered at once.
 */
export function reply (ack: Ack | undefined, log: Logger, call: () => readonly unknown[] | Promise<readonly unknown[]>): void {
  let result: readonly unknown[] | Promise<readonly unknown[]>
  try {
    result = call()
  } catch (err) {
    replyError(ack, err, log)
    return
  }
  if (result instanceof Promise) result.then((args) => ack?.(...args), (err: unknown) => { replyError(ack, err, log) })
  else ack?.(...result)
}
