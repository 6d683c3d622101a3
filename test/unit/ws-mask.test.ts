/**
 * What `wsMask: 'auto'` comes to for a server URL: a zero key only where no intermediary can read
 * the frames; and the frame header a gathered message is written with, against `ws`'s own.
 */
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { maskFor, zeroMaskedBinaryHeader } from '../../client/ws-mask.ts'

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

describe('zeroMaskedBinaryHeader', () => {
  // The `ws` engine.io-client runs on in Node, as the peer's frames are made by it.
  const clientRequire = createRequire(createRequire(import.meta.url).resolve('engine.io-client'))
  const { Sender } = clientRequire('ws') as { Sender: { frame: (data: Buffer, o: object) => Buffer[] } }
  const zero = (mask: Uint8Array): void => { mask.fill(0) }

  // Around each WebSocket length encoding: 7 bits, 16 bits, 64 bits.
  it.each([0, 1, 125, 126, 127, 65535, 65536, 524_293, 16 * 1024 * 1024])('for %d bytes is the header ws writes before a binary message it sends with the key 0', (size) => {
    const payload = Buffer.alloc(size, 7)
    const list = Sender.frame(payload, { fin: true, rsv1: false, opcode: 2, mask: true, generateMask: zero, readOnly: false })
    expect(list).toHaveLength(2) // the header, then the payload itself: no masking pass with the key 0
    expect(list[1]).toBe(payload)
    expect(Buffer.from(zeroMaskedBinaryHeader(size)).equals(list[0] as Buffer)).toBe(true)
  })
})
