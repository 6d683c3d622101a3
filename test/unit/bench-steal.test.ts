import { describe, expect, it } from 'vitest'
import { parseProcStat, StealTally, stealShare } from '../../bench/steal.ts'

// /proc/stat as Linux writes it (two samples a few seconds apart on a 2-core VM; the rest of the file trimmed).
const BEFORE = `cpu  1135480 10034 199979 635798 1645 0 8775 9989 0 0
cpu0 562449 4861 99089 324648 428 0 4155 4990 0 0
cpu1 573030 5173 100889 311150 1217 0 4619 4998 0 0
intr 98765432 0 9 0 0 0 0 0 0 0 0
ctxt 123456789
btime 1764600000
`
const AFTER = `cpu  1135580 10034 200029 635848 1645 0 8785 10089 0 0
cpu0 562499 4861 99114 324673 428 0 4160 5040 0 0
cpu1 573081 5173 100915 311175 1217 0 4625 5049 0 0
intr 98770000 0 9 0 0 0 0 0 0 0 0
ctxt 123460000
btime 1764600000
`

describe('steal from /proc/stat', () => {
  it('reads the steal and the sum of the first eight numbers of the cpu line', () => {
    expect(parseProcStat(BEFORE)).toEqual({ steal: 9989, total: 1135480 + 10034 + 199979 + 635798 + 1645 + 0 + 8775 + 9989 })
  })

  it('gives the steal between two samples as a share of all jiffies', () => {
    // user +100, system +50, idle +50, softirq +10, steal +100: 100 of 310
    expect(stealShare(parseProcStat(BEFORE), parseProcStat(AFTER))).toBeCloseTo(100 / 310, 10)
  })

  it('does not count guest time twice (it is in user already)', () => {
    const a = parseProcStat('cpu  100 0 0 100 0 0 0 0 50 0\n')
    const b = parseProcStat('cpu  200 0 0 100 0 0 0 100 150 0\n')
    expect(stealShare(a, b)).toBeCloseTo(0.5, 10)
  })

  it('has no figure without a cpu line, without a steal field, or without time passing', () => {
    expect(parseProcStat('cpu0 1 2 3 4 5 6 7 8 0 0\n')).toBeUndefined()
    expect(parseProcStat('cpu  1 2 3 4 5 6 7\n')).toBeUndefined() // a kernel before 2.6.11
    expect(parseProcStat('')).toBeUndefined()
    expect(stealShare(undefined, parseProcStat(AFTER))).toBeNaN()
    expect(stealShare(parseProcStat(AFTER), parseProcStat(AFTER))).toBeNaN()
  })

  it('adds up steal over several intervals', () => {
    const tally = new StealTally()
    expect(tally.share()).toBeNaN()
    tally.add(parseProcStat(BEFORE), parseProcStat(AFTER))
    tally.add(parseProcStat('cpu  0 0 0 0 0 0 0 0 0 0\n'), parseProcStat('cpu  0 0 0 90 0 0 0 0 0 0\n'))
    expect(tally.share()).toBeCloseTo(100 / 400, 10)
    tally.add(undefined, parseProcStat(AFTER))
    expect(tally.share()).toBeNaN()
  })
})
