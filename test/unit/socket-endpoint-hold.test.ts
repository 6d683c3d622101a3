/** `SocketEndpoint.holdReading` (a socket past its stray budget) and the relay's own pause, on a fake socket.io socket. */
import type { Socket } from 'socket.io'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createSocketEndpoint } from '../../server/socket-endpoint.ts'

/** A socket on `transport` whose WebSocket records whether it reads. */
function fakeSocket (transport: 'websocket' | 'polling'): { socket: Socket, reading: () => boolean } {
  let reading = true
  const ws = { pause: () => { reading = false }, resume: () => { reading = true } }
  const conn = {
    transport: { name: transport, on: () => {}, off: () => {}, socket: transport === 'websocket' ? ws : undefined },
    writeBuffer: [],
    on: () => {},
    send: () => {},
    readyState: 'open'
  }
  return { socket: { conn } as unknown as Socket, reading: () => reading }
}

describe('holding a socket\'s reading', () => {
  afterEach(() => { vi.useRealTimers() })

  it('ends after its time; a second hold meanwhile changes nothing', () => {
    vi.useFakeTimers()
    const { socket, reading } = fakeSocket('websocket')
    const endpoint = createSocketEndpoint(socket, () => {}, 100)
    expect(endpoint.holdReading?.(1000)).toBe('started')
    expect(reading()).toBe(false)
    vi.advanceTimersByTime(500)
    expect(endpoint.holdReading?.(1000)).toBe('held')
    vi.advanceTimersByTime(500)
    expect(reading()).toBe(true)
    expect(endpoint.holdReading?.(1000)).toBe('started')
  })

  it('is not ended by the relay resuming, and does not resume what the relay paused', () => {
    vi.useFakeTimers()
    const { socket, reading } = fakeSocket('websocket')
    const endpoint = createSocketEndpoint(socket, () => {}, 100)
    endpoint.holdReading?.(1000)
    expect(endpoint.pauseReading()).toBe(true)
    endpoint.resumeReading()
    expect(reading(), 'the relay resumed during the hold').toBe(false)
    vi.advanceTimersByTime(1000)
    expect(reading(), 'the hold ended, the relay had resumed').toBe(true)

    expect(endpoint.pauseReading()).toBe(true)
    endpoint.holdReading?.(1000)
    vi.advanceTimersByTime(1000)
    expect(reading(), 'the hold ended while the relay pauses').toBe(false)
    endpoint.resumeReading()
    expect(reading()).toBe(true)
  })

  it('is lifted when the socket goes, so its closing handshake is read; long-polling cannot be held', () => {
    vi.useFakeTimers()
    const { socket, reading } = fakeSocket('websocket')
    const endpoint = createSocketEndpoint(socket, () => {}, 100)
    endpoint.holdReading?.(1000)
    endpoint.dispose()
    expect(reading()).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
    const polling = createSocketEndpoint(fakeSocket('polling').socket, () => {}, 100)
    expect(polling.holdReading?.(1000)).toBe('unable')
    expect(polling.pauseReading()).toBe(false)
  })
})
