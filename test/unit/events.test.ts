import { describe, expect, it } from 'vitest'
import { STREAM_EVENT_TYPES, parseStreamEvent, streamEvent, type StreamEventType } from '../../shared/events.ts'

const UUID = '0b9d6f0e-3c1a-4c9e-9d55-7f1b2a3c4d5e'

describe('streamEvent / parseStreamEvent', () => {
  const ids = [`${UUID}.dialer`, `${UUID}.listener`, 'a', 'a.b.c.d', UUID]
  const cases: Array<[StreamEventType, string]> = STREAM_EVENT_TYPES.flatMap(type => ids.map(id => [type, id] as [StreamEventType, string]))

  it.each(cases)('round-trips %s with id %s', (type, streamId) => {
    const event = streamEvent(type, streamId)
    expect(event).toBe(`socket.io-pull-stream.${type}.${streamId}`)
    expect(parseStreamEvent(event)).toEqual({ type, streamId })
  })

  it.each<[string, string]>([
    ['another prefix', `socket.io-pull-streams.queue.${UUID}`],
    ['no prefix', `queue.${UUID}`],
    ['a prefix with other case', `Socket.io-pull-stream.queue.${UUID}`],
    ['an unknown type', `socket.io-pull-stream.data.${UUID}`],
    ['a type with other case', `socket.io-pull-stream.Queue.${UUID}`],
    ['an empty type', `socket.io-pull-stream..${UUID}`],
    ['an empty id', 'socket.io-pull-stream.queue.'],
    ['no id at all', 'socket.io-pull-stream.queue'],
    ['only the prefix', 'socket.io-pull-stream.'],
    ['a legacy protocol event', 'ss-dial'],
    ['the empty string', '']
  ])('rejects %s', (_, event) => {
    expect(parseStreamEvent(event)).toBeUndefined()
  })
})
