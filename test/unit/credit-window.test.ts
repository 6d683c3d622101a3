import { describe, expect, it } from 'vitest'
import { CreditWindow } from '../../client/credit-window.ts'

/** A step: bytes arrive, bytes are read, or credit is asked for (with the credit and window expected after). */
type Step = ['hold', number] | ['read', number] | ['grant', number, number] | ['fits', number, boolean] | ['clear']

/** Run `steps` on a window; `budget` is what `reserve` may hand out (growth), `undefined` for a window that is not offered growth. */
function run (window: CreditWindow, steps: Step[], budget?: number): { reserved: number[] } {
  const reserved: number[] = []
  let left = budget ?? 0
  const reserve = (bytes: number): boolean => {
    if (bytes > left) return false
    left -= bytes
    reserved.push(bytes)
    return true
  }
  for (const [i, step] of steps.entries()) {
    switch (step[0]) {
      case 'hold': window.hold(step[1]); break
      case 'read': window.read(step[1]); break
      case 'clear': window.clear(); break
      case 'fits': expect(window.fits(step[1]), `step ${i}: fits(${step[1]})`).toBe(step[2]); break
      case 'grant':
        expect(window.grant(budget === undefined ? undefined : reserve), `step ${i}: credit`).toBe(step[1])
        expect(window.windowBytes, `step ${i}: window`).toBe(step[2])
        break
    }
  }
  return { reserved }
}

describe('CreditWindow', () => {
  // [what, window, largest window, budget for growth, steps, growth reserved, held at the end]
  it.each<[string, number, number | undefined, number | undefined, Step[], number[], number]>([
    ['owes nothing back under half a window', 1000, undefined, undefined,
      [['hold', 499], ['read', 499], ['grant', 0, 1000]], [], 0],
    ['grants all that is owed at half a window', 1000, undefined, undefined,
      [['hold', 700], ['read', 300], ['grant', 0, 1000], ['read', 200], ['grant', 500, 1000], ['read', 200], ['grant', 0, 1000]], [], 0],
    ['fits exactly the window, not a byte more', 1000, undefined, undefined,
      [['hold', 600], ['fits', 400, true], ['fits', 401, false], ['clear'], ['fits', 1000, true]], [], 0],
    ['never grows without a largest window over it', 1000, undefined, 1_000_000,
      [['hold', 1000], ['read', 1000], ['grant', 1000, 1000]], [], 0],
    ['doubles when the reader has read everything, and grants the growth', 1000, 4000, 1_000_000,
      [['hold', 500], ['read', 500], ['grant', 1500, 2000], ['hold', 1000], ['read', 1000], ['grant', 3000, 4000], ['hold', 2000], ['read', 2000], ['grant', 2000, 4000]], [1000, 2000], 0],
    ['does not grow while bytes are held (a slow reader)', 1000, 4000, 1_000_000,
      [['hold', 800], ['read', 500], ['grant', 500, 1000]], [], 300],
    ['grows when the reader caught up since the last grant, though bytes arrived again before it', 1000, 4000, 1_000_000,
      [['hold', 300], ['read', 300], ['hold', 400], ['read', 200], ['grant', 1500, 2000]], [1000], 200],
    ['does not grow when the reader never caught up since the last grant', 1000, 4000, 1_000_000,
      [['hold', 1000], ['read', 500], ['grant', 500, 1000], ['hold', 500], ['read', 500], ['grant', 500, 1000], ['hold', 500], ['read', 500], ['grant', 500, 1000]], [], 500],
    ['does not grow past the budget', 1000, 8000, 1500,
      [['hold', 500], ['read', 500], ['grant', 1500, 2000], ['hold', 1000], ['read', 1000], ['grant', 1000, 2000]], [1000], 0],
    ['grows only to the largest window', 1000, 3000, 1_000_000,
      [['hold', 500], ['read', 500], ['grant', 1500, 2000], ['hold', 1000], ['read', 1000], ['grant', 1000, 2000]], [1000], 0]
  ])('%s', (_, windowBytes, maxWindowBytes, budget, steps, reserved, held) => {
    const window = new CreditWindow(windowBytes, maxWindowBytes)
    expect(run(window, steps, budget).reserved).toEqual(reserved)
    expect(window.bufferedBytes).toBe(held)
    expect(window.takeGrown(), 'growth given back').toBe(reserved.reduce((a, b) => a + b, 0))
    expect(window.takeGrown(), 'growth given back only once').toBe(0)
  })
})
