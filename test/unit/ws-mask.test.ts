/** What `wsMask: 'auto'` comes to for a server URL: a zero key only where no intermediary can read the frames. */
import { describe, expect, it } from 'vitest'
import { maskFor } from '../../client/ws-mask.ts'

describe('maskFor', () => {
  it.each([
    ['https://relay.example:443', 'zero'],
    ['wss://relay.example', 'zero'],
    ['http://127.0.0.1:9090', 'zero'],
    ['http://127.8.9.10:9090', 'zero'],
    ['http://localhost:9090', 'zero'],
    ['http://[::1]:9090', 'zero'],
    ['http://relay.example:9090', 'random'],
    ['http://192.0.2.7:9090', 'random'],
    ['ws://[2001:db8::1]:9090', 'random'],
    ['http://127.0.0.1.example:9090', 'random'],
    ['not a url', 'random']
  ])("'auto' for %s is %s", (url, key) => {
    expect(maskFor('auto', url)).toBe(key)
  })

  it('an explicit choice wins over the URL', () => {
    expect(maskFor('random', 'http://127.0.0.1:1')).toBe('random')
    expect(maskFor('zero', 'http://192.0.2.7:1')).toBe('zero')
  })
})
