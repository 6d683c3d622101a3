/** The page's flush scheduler: a task per call, in order, never inline and never a timer. */
import { describe, expect, it, vi } from 'vitest'
import { postTask } from '../../client/mux/muxer.ts'

describe('postTask', () => {
  it('runs each function later, once, in the order given, without a timer', async () => {
    const post = postTask()
    const timer = vi.spyOn(globalThis, 'setTimeout')
    const ran: number[] = []
    post(() => ran.push(1))
    post(() => ran.push(2))
    post(() => ran.push(3))
    expect(ran).toEqual([])
    await new Promise((resolve) => post(() => resolve(undefined)))
    expect(ran).toEqual([1, 2, 3])
    expect(timer).not.toHaveBeenCalled()
    timer.mockRestore()
  })
})
