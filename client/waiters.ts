/** Wait lists for the flow-control code. */
import { StarsockError } from '../shared/errors.ts'

/** Settles on the next `wake`, or rejects when `signal` aborts. */
export class Waiters {
  private list: Array<() => void> = []

  async wait (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
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
