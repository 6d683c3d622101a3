import { describe, expect, it } from 'vitest'
import { RateMeter } from '../../web/rate.ts'

describe('RateMeter (web/rate.ts)', () => {
  const cases: Array<{ what: string, windowMs: number, samples: Array<[number, number]>, at?: number, rate: number }> = [
    { what: 'no sample', windowMs: 2000, samples: [], rate: 0 },
    { what: 'one sample', windowMs: 2000, samples: [[0, 5000]], rate: 0 },
    { what: 'two samples a second apart', windowMs: 2000, samples: [[0, 0], [1000, 1000]], rate: 1000 },
    { what: 'a steady 1 MiB/s sampled every 100 ms', windowMs: 2000, samples: Array.from({ length: 51 }, (_, i) => [i * 100, i * 104_857.6] as [number, number]), rate: 1_048_576 },
    { what: 'only the last window counts', windowMs: 2000, samples: [[0, 0], [1000, 10_000_000], [2000, 10_000_000], [3000, 10_000_000], [4000, 10_001_000]], rate: 500 },
    { what: 'a window of 1 ms: since the sample before', windowMs: 1, samples: [[0, 0], [1000, 4000], [2000, 5000]], rate: 1000 },
    { what: 'two samples further apart than the window', windowMs: 2000, samples: [[0, 0], [10_000, 10_000]], rate: 1000 },
    { what: 'a total that went down (a new session) is 0, not negative', windowMs: 2000, samples: [[0, 5000], [1000, 10]], rate: 0 },
    { what: 'stalled: asked later with no new sample, over the window', windowMs: 2000, samples: [[0, 0], [1000, 1000], [2000, 2000]], at: 4000, rate: 0 },
    { what: 'stalled half the window', windowMs: 2000, samples: [[0, 0], [1000, 1000], [2000, 2000]], at: 3000, rate: 500 },
    { what: 'asked at an earlier time: the rate at the last sample', windowMs: 2000, samples: [[0, 0], [1000, 1000]], at: 500, rate: 1000 }
  ]
  for (const c of cases) {
    it(c.what, () => {
      const meter = new RateMeter(c.windowMs)
      for (const [at, total] of c.samples) meter.sample(total, at)
      expect(meter.rate(c.at)).toBeCloseTo(c.rate, 3)
    })
  }

  it('sample() answers the rate now', () => {
    const meter = new RateMeter(1000)
    meter.sample(0, 0)
    expect(meter.sample(2048, 1000)).toBe(2048)
  })

  it('refuses a window that is not a positive number', () => {
    expect(() => new RateMeter(0)).toThrow(new RangeError('windowMs must be a positive number of milliseconds'))
    expect(() => new RateMeter(Number.NaN)).toThrow(RangeError)
  })
})
