/** `cappedLogger`: a token bucket of lines shared with its children, and a count of what it dropped. */
import { afterEach, describe, expect, it, vi } from 'vitest'
import { cappedLogger, withFields, type Logger } from '../../shared/logger.ts'
import { shortPeer } from '../../server/peer-log.ts'

/** A logger that records `[level, fields, msg]`, with the levels from `enabled` on. */
function recorder (enabled = ['debug', 'info', 'warn', 'error']): { logger: Logger, lines: Array<[string, unknown, unknown]> } {
  const lines: Array<[string, unknown, unknown]> = []
  const make = (bindings: Record<string, unknown>): Logger => {
    const at = (level: string) => (a: unknown, msg?: unknown): void => { lines.push([level, typeof a === 'string' ? { ...bindings } : { ...bindings, ...(a as object) }, typeof a === 'string' ? a : msg]) }
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (b) => make({ ...bindings, ...b }), isLevelEnabled: (l) => enabled.includes(l) }
  }
  return { logger: make({}), lines }
}

describe('cappedLogger', () => {
  afterEach(() => { vi.useRealTimers() })

  it('lets the burst through, then linesPerSecond, and reports what it dropped a second after the first drop', () => {
    vi.useFakeTimers()
    let now = 0
    const { logger, lines } = recorder()
    const capped = cappedLogger(logger, { linesPerSecond: 10, burstLines: 5 }, () => now)
    for (let i = 0; i < 20; i++) capped.info({ i }, 'line')
    expect(lines.filter(([, , m]) => m === 'line')).toHaveLength(5)
    now = 500 // half a second: 5 more tokens
    for (let i = 0; i < 20; i++) capped.info({ i }, 'line')
    expect(lines.filter(([, , m]) => m === 'line')).toHaveLength(10)
    vi.advanceTimersByTime(1000)
    const summary = lines.filter(([level]) => level === 'warn')
    expect(summary).toEqual([['warn', { suppressed: 30, linesPerSecond: 10 }, 'log lines suppressed (over the log cap)']])
    vi.advanceTimersByTime(5000)
    expect(lines.filter(([level]) => level === 'warn')).toHaveLength(1) // nothing more dropped: no more reports
  })

  it('children share the budget and keep their bindings; a string message stays a message', () => {
    const { logger, lines } = recorder()
    const capped = cappedLogger(logger, { linesPerSecond: 1, burstLines: 2 }, () => 0)
    const child = capped.child({ ns: 'x' })
    child.info('one')
    capped.warn({ a: 1 }, 'two')
    child.error('three')
    expect(lines).toEqual([['info', { ns: 'x' }, 'one'], ['warn', { a: 1 }, 'two']])
  })

  it('a line the level drops anyway spends nothing', () => {
    const { logger, lines } = recorder(['info', 'warn', 'error'])
    const capped = cappedLogger(logger, { linesPerSecond: 1, burstLines: 1 }, () => 0)
    for (let i = 0; i < 100; i++) capped.debug('noise')
    capped.info('kept')
    expect(lines).toEqual([['info', {}, 'kept']])
  })

  it('refuses a cap that lets nothing through', () => {
    const { logger } = recorder()
    expect(() => cappedLogger(logger, { linesPerSecond: 0, burstLines: 1 })).toThrow(RangeError)
    expect(() => cappedLogger(logger, { linesPerSecond: 1, burstLines: 0 })).toThrow(RangeError)
    expect(() => cappedLogger(logger, { linesPerSecond: Number.NaN, burstLines: 1 })).toThrow(RangeError)
  })
})

describe('shortPeer', () => {
  it.each([
    ['/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/p2p/12D3KooWNKmG8qm4bLBZZDfhepBfkzmTk7q8qsp6LHdFVPhRVPoN', '12D3Ko…hRVPoN'],
    ['/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/ipfs/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', 'QmYyQS…Wjhx5N'],
    ['/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star', '/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star'],
    ['x'.repeat(500), 'x'.repeat(63) + '…'],
    [42, 'number'],
    [undefined, 'undefined']
  ])('%s -> %s', (addr, short) => {
    expect(shortPeer(addr)).toBe(short)
  })
})

describe('withFields', () => {
  it('adds its fields to every line, and hands on nothing the parent\'s level drops (no fields merged for a socket\'s debug line)', () => {
    const { logger, lines } = recorder(['warn', 'error'])
    const log = withFields(logger, { session: 's1' })
    const fields = { get ip (): string { throw new Error('fields of a dropped line were read') } }
    log.debug(fields, 'connected')
    log.info('quiet')
    log.warn({ reason: 'x' }, 'dropped')
    log.error('gone')
    expect(lines).toEqual([['warn', { session: 's1', reason: 'x' }, 'dropped'], ['error', { session: 's1' }, 'gone']])
    expect(log.isLevelEnabled?.('debug')).toBe(false)
  })
})
