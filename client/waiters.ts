/** Wait lists for the flow-control code. */
import { StarsockError } from '../shared/errors.ts'

/** Throw `E_ABORTED` (not the signal's own DOMException) when `signal` has aborted already. */
export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) throw new StarsockError('E_ABORTED', 'Aborted by the caller', { cause: signal.reason })
}

/** Settles on the next `wake`, or rejects when `signal` aborts. */
export class Waiters {
  private list: Array<() => void> = []

  async wait (signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal)
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => { signal?.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        this.list = this.list.filter((fn) => fn !== wake) // an aborted wait leaves nothing behind
        reject(new StarsockError('E_ABORTED', 'Aborted by the caller', { cause: signal?.reason }))
      }
      this.list.push(wake)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  wake (): void {
    const list = this.list
    this.list = []
    for (const fn of list) fn()
  }
}

/**
 * Settle with `promise`, or reject with `E_ABORTED` when `signal` aborts and with `E_TIMEOUT`
 * after `ms` (no timeout when `ms` is undefined).
 */
export async function bounded<T> (what: string, promise: Promise<T>, ms: number | undefined, signal?: AbortSignal): Promise<T> {
  throwIfAborted(signal)
  if (ms === undefined && signal === undefined) return await promise
  let timer: ReturnType<typeof setTimeout> | undefined
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      if (ms !== undefined) timer = setTimeout(() => reject(new StarsockError('E_TIMEOUT', `${what}: no answer within ${ms} ms`)), ms)
      onAbort = () => reject(new StarsockError('E_ABORTED', `${what}: aborted`, { cause: signal?.reason }))
      signal?.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
  }
}
