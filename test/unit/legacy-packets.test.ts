import { describe, expect, it } from 'vitest'
import { createRequire } from 'node:module'
import { legacyBinaryHead } from '../../server/legacy-packets.ts'

/** The frame `ws` itself makes for a binary message of the type byte 4 followed by `size` bytes. */
function wsFrame (size: number): Buffer {
  const payload = Buffer.concat([Buffer.from([4]), Buffer.alloc(size, 7)])
  const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame: (data: Buffer, o: object) => Buffer[] } }
  return Buffer.concat(Sender.frame(payload, { fin: true, rsv1: false, opcode: 2, mask: false, readOnly: false }))
}

describe('legacyBinaryHead', () => {
  // Around each WebSocket length encoding: 7 bits, 16 bits, 64 bits (the type byte counts).
  it.each([0, 1, 124, 125, 126, 65534, 65535, 65536, 1_000_000])('with a %d-byte chunk makes the frame ws makes for the type byte and the chunk', (size) => {
    const chunk = Buffer.alloc(size, 7)
    expect(Buffer.concat([legacyBinaryHead(size), chunk]).equals(wsFrame(size))).toBe(true)
  })
})
