import { afterEach, describe, expect, it, vi } from 'vitest'
import { ServerMetrics } from '../../server/metrics.ts'
import { resolveServerOptions } from '../../server/options.ts'
import { Rendezvous } from '../../server/rendezvous.ts'
import type { Endpoint } from '../../server/session.ts'
import { silentLogger } from '../../shared/logger.ts'
import { BACKLOG_CHECK_MS } from '../../server/constants.ts'

function endpoint (backlog: () => number): Endpoint & { disconnects: number } {
  const e = {
    disconnects: 0,
    emit: () => {},
    request: async () => [],
    pendingWriteBytes: () => 0,
    pauseReading: () => true,
    resumeReading: () => {},
    backlogBytes: backlog,
    disconnect: () => { e.disconnects++ }
  }
  return e
}

describe('Rendezvous output backlog check', () => {
  afterEach(() => { vi.useRealTimers() })

  it('disconnects a socket whose backlog passes socketBufferBytes, and only that one', async () => {
    vi.useFakeTimers()
    const options = resolveServerOptions({ socketBufferBytes: 16 * 1024 * 1024 })
    const metrics = new ServerMetrics(false, () => 0)
    const rendezvous = new Rendezvous(options, metrics, 'test', silentLogger)
    let behind = 0
    const slow = endpoint(() => behind)
    const fine = endpoint(() => 1000)
    rendezvous.connect('slow', '127.0.0.1', slow)
    rendezvous.connect('fine', '127.0.0.1', fine)
    vi.advanceTimersByTime(BACKLOG_CHECK_MS * 2)
    expect(slow.disconnects).toBe(0)
    behind = 16 * 1024 * 1024 + 1
    vi.advanceTimersByTime(BACKLOG_CHECK_MS)
    expect(slow.disconnects).toBe(1)
    expect(fine.disconnects).toBe(0)
    expect(await metrics.registry.getSingleMetricAsString('starsock_limit_hits_total')).toContain('limit="E_LIMIT_BACKLOG"} 1')
    rendezvous.stop()
  })
})
