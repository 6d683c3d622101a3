import { describe, expect, it } from 'vitest'
import { resolvePeerOptions } from '../../client/options.ts'
import type { PeerOptions } from '../../client/peer.ts'
import { silentLogger } from '../../shared/logger.ts'

const SERVER = 'http://127.0.0.1:9090'

describe('resolvePeerOptions', () => {
  it('fills every default', () => {
    const options: PeerOptions = { server: SERVER }
    expect(resolvePeerOptions(options)).toEqual({
      transports: ['websocket', 'polling'],
      wsMask: 'auto',
      requestTimeoutMs: 10_000,
      takeover: false,
      windowBytes: 4 * 1024 * 1024,
      chunkBytes: 512 * 1024,
      receiveLimitBytes: 16 * 1024 * 1024,
      heartbeatIntervalMs: 5000,
      heartbeatTimeoutMs: 5000,
      connectTimeoutMs: 5000,
      reconnectDelayMs: 500,
      reconnectDelayMaxMs: 5000,
      rawFrames: true,
      secure: true,
      profile: { kind: 'node' },
      logger: silentLogger
    })
  })

  it('keeps given values and ignores an explicit undefined', () => {
    const options: PeerOptions = { server: SERVER, windowBytes: 1024, takeover: true, transports: ['websocket'], chunkBytes: undefined }
    const o = resolvePeerOptions(options)
    expect(o.windowBytes).toBe(1024)
    expect(o.takeover).toBe(true)
    expect(o.transports).toEqual(['websocket'])
    expect(o.chunkBytes).toBe(512 * 1024)
  })

  it.each<[string, Partial<PeerOptions>, ErrorConstructor, string]>([
    ['a zero request timeout', { requestTimeoutMs: 0 }, RangeError, 'requestTimeoutMs must be a positive integer, got 0'],
    ['a negative window', { windowBytes: -1 }, RangeError, 'windowBytes must be a positive integer, got -1'],
    ['a fractional chunk', { chunkBytes: 1.5 }, RangeError, 'chunkBytes must be a positive integer, got 1.5'],
    ['a string receive limit', { receiveLimitBytes: '5' as never }, RangeError, 'receiveLimitBytes must be a positive integer, got 5'],
    ['a zero heartbeat', { heartbeatIntervalMs: 0 }, RangeError, 'heartbeatIntervalMs must be a positive integer, got 0'],
    ['a zero heartbeat timeout', { heartbeatTimeoutMs: 0 }, RangeError, 'heartbeatTimeoutMs must be a positive integer, got 0'],
    ['a NaN connect timeout', { connectTimeoutMs: NaN }, RangeError, 'connectTimeoutMs must be a positive integer, got NaN'],
    ['a zero reconnect delay', { reconnectDelayMs: 0 }, RangeError, 'reconnectDelayMs must be a positive integer, got 0'],
    ['a negative largest reconnect delay', { reconnectDelayMaxMs: -5 }, RangeError, 'reconnectDelayMaxMs must be a positive integer, got -5'],
    ['a non-boolean takeover', { takeover: 'yes' as never }, TypeError, 'takeover must be a boolean'],
    ['a non-boolean rawFrames', { rawFrames: 1 as never }, TypeError, 'rawFrames must be a boolean'],
    ['an unknown wsMask', { wsMask: 'none' as never }, TypeError, "wsMask must be 'auto', 'zero' or 'random', got none"]
  ])('refuses %s with an exact message', (_, options, type, message) => {
    let thrown: unknown
    try {
      const given: PeerOptions = { server: SERVER, ...options }
      resolvePeerOptions(given)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(type)
    expect((thrown as Error).message).toBe(message)
  })
})
