import { describe, expect, it } from 'vitest'
import { TokenBucket, WindowCounter } from '../../server/rate-limit.ts'

/** A clock the test moves by hand. */
function fakeClock (start = 1_000_000): { now: () => number, advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => { t += ms } }
}

/** Call `fn` `n` times and collect the results. */
function times<T> (n: number, fn: () => T): T[] {
  return Array.from({ length: n }, fn)
}

describe('TokenBucket', () => {
  it('starts full: a burst of `burst` takes succeeds, the next fails', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(2, 4, clock.now)
    expect(times(5, () => bucket.take())).toEqual([true, true, true, true, false])
  })

  // [ratePerSecond, burst, ms waited after emptying it, takes that then succeed]
  it.each<[number, number, number, number]>([
    [2, 4, 0, 0],
    [2, 4, 499, 0],
    [2, 4, 500, 1],
    [2, 4, 1000, 2],
    [2, 4, 1999, 3],
    [2, 4, 60_000, 4], // never more than the burst
    [100, 200, 10, 1],
    [100, 200, 1000, 100],
    [0.5, 1, 1999, 0],
    [0.5, 1, 2000, 1]
  ])('at %d/s with burst %d, %d ms after emptying allows %d takes', (rate, burst, waitMs, allowed) => {
    const clock = fakeClock()
    const bucket = new TokenBucket(rate, burst, clock.now)
    while (bucket.take()) { /* empty it */ }
    clock.advance(waitMs)
    const results = times(burst + 1, () => bucket.take())
    expect(results.filter(Boolean)).toHaveLength(allowed)
    expect(results.slice(0, allowed).every(Boolean)).toBe(true)
  })

  it('sustains its rate: one take every 1/rate seconds always succeeds', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(10, 1, clock.now)
    const results = times(50, () => { const ok = bucket.take(); clock.advance(100); return ok })
    expect(results.every(Boolean)).toBe(true)
    expect(bucket.take()).toBe(true)
    expect(bucket.take()).toBe(false)
  })

  it('keeps partial tokens between takes', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(1, 1, clock.now)
    expect(bucket.take()).toBe(true)
    clock.advance(600)
    expect(bucket.take()).toBe(false)
    clock.advance(400)
    expect(bucket.take()).toBe(true)
  })
})

describe('WindowCounter', () => {
  it('allows `limit` hits per key in a window and refuses the rest', () => {
    const clock = fakeClock()
    const counter = new WindowCounter(3, 60_000, clock.now)
    expect(times(5, () => counter.hit('1.2.3.4'))).toEqual([true, true, true, false, false])
  })

  it('counts keys apart', () => {
    const clock = fakeClock()
    const counter = new WindowCounter(2, 60_000, clock.now)
    expect(times(3, () => counter.hit('a'))).toEqual([true, true, false])
    expect(times(3, () => counter.hit('b'))).toEqual([true, true, false])
  })

  // [ms after the first window began, whether a full key may hit again]
  it.each<[number, boolean]>([
    [0, false],
    [59_999, false],
    [60_000, true],
    [90_000, true]
  ])('a key full at the start is %s ms later allowed again: %s', (waitMs, allowed) => {
    const clock = fakeClock()
    const counter = new WindowCounter(1, 60_000, clock.now)
    expect(counter.hit('k')).toBe(true)
    clock.advance(waitMs)
    expect(counter.hit('k')).toBe(allowed)
  })

  it('uses fixed windows: a new window starts at the first hit after the old one ended', () => {
    const clock = fakeClock()
    const counter = new WindowCounter(1, 1000, clock.now)
    clock.advance(1500)
    expect(counter.hit('k')).toBe(true) // new window from t+1500
    clock.advance(900)
    expect(counter.hit('k')).toBe(false) // t+2400 is inside it
    clock.advance(100)
    expect(counter.hit('k')).toBe(true) // t+2500 opens the next
  })

  it('refused hits still count within the window', () => {
    const clock = fakeClock()
    const counter = new WindowCounter(2, 1000, clock.now)
    expect(times(10, () => counter.hit('k')).filter(Boolean)).toHaveLength(2)
    clock.advance(1000)
    expect(times(3, () => counter.hit('k'))).toEqual([true, true, false])
  })
})
