import { describe, expect, it } from 'vitest'
import { StarsockError } from '../../shared/errors.ts'
import {
  decodeDatagram,
  decodeJson,
  decodeOpen,
  decodeWindow,
  encodeDatagramFrame,
  encodeFrame,
  encodeFrameHeader,
  encodeJsonFrame,
  encodeOpenFrame,
  encodeWindowFrame,
  FRAME,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  MAX_CONTROL_JSON_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_FRAME_PAYLOAD_BYTES,
  type Frame,
  type FrameType,
  type SockAddress
} from '../../shared/mux-frame.ts'

const text = new TextEncoder()

/** `n` bytes counting up from `seed` (mod 256), so misplaced bytes show. */
function pattern (n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (seed + i * 7) & 0xff
  return out
}

/** Bytes as hex: compared as a string, fast even for the largest payloads. */
const hex = (bytes: Uint8Array | readonly number[]): string => Buffer.from(bytes).toString('hex')

/** A frame as plain values, so `toEqual` compares bytes and not views. */
interface PlainFrame { type: number, id: number, payload: string }
const plain = (f: Frame): PlainFrame => ({ type: f.type, id: f.id, payload: hex(f.payload) })

function concat (parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/**
 * The reference: the frame layout read by hand from one complete buffer, byte by byte with
 * shifts (no DataView, no chunks), so it shares nothing with `FrameDecoder`.
 */
function referenceDecode (bytes: Uint8Array): PlainFrame[] {
  const u32 = (at: number): number => ((bytes[at] ?? 0) * 2 ** 24) + ((bytes[at + 1] ?? 0) << 16) + ((bytes[at + 2] ?? 0) << 8) + (bytes[at + 3] ?? 0)
  const frames: PlainFrame[] = []
  let at = 0
  while (at < bytes.length) {
    const length = u32(at + 5)
    frames.push({ type: bytes[at] ?? -1, id: u32(at + 1), payload: hex(bytes.slice(at + 9, at + 9 + length)) })
    at += 9 + length
  }
  expect(at, 'reference: the buffer ends on a frame boundary').toBe(bytes.length)
  return frames
}

/** mulberry32: a small seeded PRNG, so a failing split can be replayed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Push `chunks` through one decoder and collect every frame. */
function decodeChunks (chunks: readonly Uint8Array[]): { frames: PlainFrame[], buffered: number } {
  const decoder = new FrameDecoder()
  const frames: PlainFrame[] = []
  for (const c of chunks) frames.push(...decoder.push(c).map(plain))
  return { frames, buffered: decoder.bufferedBytes }
}

/** Assert `fn` throws a StarsockError E_CHANNEL_PROTOCOL whose message contains `what`. */
function expectProtocolError (fn: () => unknown, what: string): void {
  let thrown: unknown
  try { fn() } catch (err) { thrown = err }
  expect(thrown).toBeInstanceOf(StarsockError)
  expect((thrown as StarsockError).code).toBe('E_CHANNEL_PROTOCOL')
  expect((thrown as StarsockError).message).toContain(what)
}

const frame = (type: FrameType, payload: Uint8Array, id = 1): Frame => ({ type, id, payload })

// One of every frame type, with ids at both ends of u32, empty and large payloads.
const SAMPLE: Array<[string, Uint8Array]> = [
  ['HELLO', encodeJsonFrame(FRAME.HELLO, 0, { protocol: 'starsock-mux', version: 1, window: 262144 })],
  ['OPEN with a body', encodeOpenFrame(1, { type: 'sock', sock: 'connect', reliable: true }, pattern(40, 3))],
  ['OPEN without a body', encodeOpenFrame(3, { type: 'chat', reliable: false })],
  ['REPLY', encodeJsonFrame(FRAME.REPLY, 1, { bound: { ip: '127.0.0.1', port: 4000 } })],
  ['empty DATA', encodeFrame(FRAME.DATA, 1)],
  ['1-byte DATA', encodeFrame(FRAME.DATA, 1, Uint8Array.of(0xff))],
  ['300-byte DATA', encodeFrame(FRAME.DATA, 5, pattern(300, 11))],
  ['DATAGRAM with IPv6', encodeDatagramFrame(7, pattern(20, 5), { ip: '::1', port: 53 })],
  ['empty DATAGRAM', encodeDatagramFrame(7, new Uint8Array(0))],
  ['WINDOW', encodeWindowFrame(0xffffffff, 0x01020304)],
  ['FIN', encodeFrame(FRAME.FIN, 0xfffffffe)],
  ['RESET', encodeJsonFrame(FRAME.RESET, 2, { code: 'E_STREAM_CLOSED', message: 'bye' })],
  ['OFFER', encodeJsonFrame(FRAME.OFFER, 9, { kind: 'bind', proto: 'udp', host: '*', port: 0, name: 'x' })],
  ['OFFER_REPLY', encodeJsonFrame(FRAME.OFFER_REPLY, 9, {})],
  ['KILL', encodeJsonFrame(FRAME.KILL, 9, { code: 'E_KILLED', message: 'k' })]
]
const STREAM = concat(SAMPLE.map(([, f]) => f))
const EXPECTED = referenceDecode(STREAM)
/** Byte offset where each sample frame ends in STREAM. */
const ENDS = SAMPLE.reduce<number[]>((ends, [, f]) => [...ends, (ends.at(-1) ?? 0) + f.byteLength], [])

describe('FRAME', () => {
  it('keeps the wire numbers of every frame type', () => {
    expect(FRAME).toEqual({ HELLO: 0, OPEN: 1, REPLY: 2, DATA: 3, DATAGRAM: 4, WINDOW: 5, FIN: 6, RESET: 7, OFFER: 8, OFFER_REPLY: 9, KILL: 10, ACK: 11 })
    expect(FRAME_HEADER_BYTES).toBe(9)
  })
})

/** Frames to encode: what, type, id, payload. */
const ENCODE_CASES: Array<[string, FrameType, number, Uint8Array]> = [
  ['an empty FIN on id 0', FRAME.FIN, 0, new Uint8Array(0)],
  ['DATA on the largest id', FRAME.DATA, 0xffffffff, pattern(17)],
  ['DATA with a length over 16 bits', FRAME.DATA, 0x80000001, pattern(70_000)],
  ['DATA of the largest payload', FRAME.DATA, 42, pattern(MAX_FRAME_PAYLOAD_BYTES)],
  ['a payload that is a view into a larger buffer', FRAME.DATA, 8, pattern(100).subarray(10, 30)]
]

describe('encodeFrame', () => {
  it('lays out type u8, id u32 big-endian, length u32 big-endian, payload', () => {
    expect(Array.from(encodeFrame(FRAME.DATA, 0x01020304, Uint8Array.of(0xaa, 0xbb, 0xcc)))).toEqual([
      0x03, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc
    ])
    expect(Array.from(encodeFrame(FRAME.KILL, 0xfffffffe, pattern(0x0102)).subarray(0, 9))).toEqual([
      0x0a, 0xff, 0xff, 0xff, 0xfe, 0x00, 0x00, 0x01, 0x02
    ])
  })

  it.each(ENCODE_CASES)('encodes %s', (_, type, id, payload) => {
    const bytes = encodeFrame(type, id, payload)
    expect(bytes.byteLength).toBe(FRAME_HEADER_BYTES + payload.byteLength)
    expect(referenceDecode(bytes)).toEqual([{ type, id, payload: hex(payload) }])
  })

  it('refuses a payload over MAX_FRAME_PAYLOAD_BYTES', () => {
    expect(() => encodeFrame(FRAME.DATA, 1, new Uint8Array(MAX_FRAME_PAYLOAD_BYTES + 1)))
      .toThrow(new RangeError(`frame payload of ${MAX_FRAME_PAYLOAD_BYTES + 1} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`))
  })
})

describe('encodeFrameHeader', () => {
  it.each(ENCODE_CASES)('followed by the payload, is encodeFrame of %s', (_, type, id, payload) => {
    const head = encodeFrameHeader(type, id, payload.byteLength)
    expect(head.byteLength).toBe(FRAME_HEADER_BYTES)
    expect(hex(concat([head, payload]))).toBe(hex(encodeFrame(type, id, payload)))
  })

  it('refuses a length over MAX_FRAME_PAYLOAD_BYTES and an id that is not a u32', () => {
    expect(() => encodeFrameHeader(FRAME.DATA, 1, MAX_FRAME_PAYLOAD_BYTES + 1))
      .toThrow(new RangeError(`frame payload of ${MAX_FRAME_PAYLOAD_BYTES + 1} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`))
    expect(() => encodeFrameHeader(FRAME.DATA, 2 ** 32, 0)).toThrow(new RangeError(`frame id ${2 ** 32} is not a u32`))
  })
})

describe('encodeJsonFrame / decodeJson', () => {
  it.each<[string, unknown]>([
    ['an object', { protocol: 'starsock-mux', version: 1, window: 1024 }],
    ['an empty object', {}],
    ['a nested error', { error: { code: 'E_DENIED', message: 'no «thanks» ✓' } }],
    ['an array', [1, 'two', null]],
    ['null', null],
    ['a number', 7],
    ['a string', 'hello']
  ])('round-trips %s', (_, value) => {
    const bytes = encodeJsonFrame(FRAME.RESET, 12, value)
    const [decoded] = referenceDecode(bytes)
    expect(decoded?.type).toBe(FRAME.RESET)
    expect(decoded?.id).toBe(12)
    expect(decoded?.payload).toBe(hex(text.encode(JSON.stringify(value))))
    expect(decodeJson(new FrameDecoder().push(bytes)[0] as Frame)).toEqual(value)
  })

  it('accepts a control payload of exactly MAX_CONTROL_JSON_BYTES', () => {
    const value = 'x'.repeat(MAX_CONTROL_JSON_BYTES - 2) // two quotes
    expect(decodeJson(frame(FRAME.RESET, text.encode(JSON.stringify(value))))).toBe(value)
  })

  it.each<[string, Uint8Array, string]>([
    ['an empty payload', new Uint8Array(0), 'does not carry JSON'],
    ['plain text', text.encode('not json'), 'does not carry JSON'],
    ['truncated JSON', text.encode('{"code":'), 'does not carry JSON'],
    ['two JSON values', text.encode('{}{}'), 'does not carry JSON'],
    ['bytes that are not UTF-8', Uint8Array.of(0xff, 0xfe, 0x00), 'does not carry JSON'],
    ['valid JSON over MAX_CONTROL_JSON_BYTES', text.encode(JSON.stringify('x'.repeat(MAX_CONTROL_JSON_BYTES - 1))), `control frame of ${MAX_CONTROL_JSON_BYTES + 1} bytes`]
  ])('refuses %s', (_, payload, what) => {
    expectProtocolError(() => decodeJson(frame(FRAME.REPLY, payload)), what)
  })
})

describe('encodeOpenFrame / decodeOpen', () => {
  it('lays out u16 header length, JSON header, body', () => {
    const json = text.encode('{"type":"sock","reliable":true}')
    const bytes = encodeOpenFrame(0x0102, { type: 'sock', reliable: true }, Uint8Array.of(9, 8))
    expect(Array.from(bytes.subarray(0, 9))).toEqual([0x01, 0, 0, 0x01, 0x02, 0, 0, 0, 2 + json.byteLength + 2])
    expect(Array.from(bytes.subarray(9, 11))).toEqual([json.byteLength >> 8, json.byteLength & 0xff])
    expect(Array.from(bytes.subarray(11, 11 + json.byteLength))).toEqual(Array.from(json))
    expect(Array.from(bytes.subarray(11 + json.byteLength))).toEqual([9, 8])
  })

  it.each<[string, unknown, Uint8Array | undefined]>([
    ['a sock header and a body', { type: 'sock', sock: 'connect', dst: { ip: '127.0.0.1', port: 80 }, reliable: true }, pattern(500, 1)],
    ['a header and no body', { type: 'chat', reliable: false }, undefined],
    ['a header and an empty body', { type: 'chat', reliable: false }, new Uint8Array(0)],
    ['a header over 255 bytes', { type: 'sock', pad: 'p'.repeat(300), reliable: true }, pattern(3)],
    ['a header of exactly MAX_CONTROL_JSON_BYTES', 'h'.repeat(MAX_CONTROL_JSON_BYTES - 2), pattern(2)]
  ])('round-trips %s', (_, openHeader, body) => {
    const decoded = new FrameDecoder().push(concat([encodeFrame(FRAME.FIN, 1), encodeOpenFrame(11, openHeader, body)]))
    const open = decoded[1] as Frame
    expect(open.type).toBe(FRAME.OPEN)
    expect(open.id).toBe(11)
    const result = decodeOpen(open)
    expect(result.header).toEqual(openHeader)
    expect(hex(result.body)).toBe(hex(body ?? []))
  })

  it('refuses a header over MAX_CONTROL_JSON_BYTES', () => {
    expect(() => encodeOpenFrame(1, 'h'.repeat(MAX_CONTROL_JSON_BYTES - 1), undefined))
      .toThrow(new RangeError(`open header of ${MAX_CONTROL_JSON_BYTES + 1} bytes is over ${MAX_CONTROL_JSON_BYTES}`))
  })

  it.each<[string, number[], string]>([
    ['an empty payload', [], 'OPEN frame without a header'],
    ['one byte of header length', [0], 'OPEN frame without a header'],
    ['a header length past the frame', [0, 10, ...text.encode('{"a":1}')], 'OPEN header runs past the frame'],
    ['a header length one past the frame', [0, 3, ...text.encode('12')], 'OPEN header runs past the frame'],
    ['a header length of 0xffff', [0xff, 0xff, 1, 2, 3], 'OPEN header runs past the frame'],
    ['an empty header', [0, 0, 1, 2], 'does not carry JSON'],
    ['a header that is not JSON', [0, 3, ...text.encode('abc')], 'does not carry JSON']
  ])('refuses %s', (_, payload, what) => {
    expectProtocolError(() => decodeOpen(frame(FRAME.OPEN, Uint8Array.from(payload))), what)
  })
})

describe('encodeWindowFrame / decodeWindow', () => {
  it.each<[number, number[]]>([
    [0, [0, 0, 0, 0]],
    [1, [0, 0, 0, 1]],
    [65_536, [0, 1, 0, 0]],
    [0x01020304, [1, 2, 3, 4]],
    [2 ** 31, [0x80, 0, 0, 0]],
    [0xffffffff, [0xff, 0xff, 0xff, 0xff]]
  ])('carries %i as u32 big-endian', (credit, payload) => {
    const bytes = encodeWindowFrame(6, credit)
    expect(referenceDecode(bytes)).toEqual([{ type: FRAME.WINDOW, id: 6, payload: hex(payload) }])
    const decoded = new FrameDecoder().push(concat([encodeFrame(FRAME.DATA, 1, pattern(3)), bytes]))[1] as Frame
    expect(decodeWindow(decoded)).toBe(credit)
  })

  it.each<[string, number]>([
    ['no bytes', 0],
    ['3 bytes', 3],
    ['5 bytes', 5],
    ['8 bytes', 8]
  ])('refuses a WINDOW payload of %s', (_, n) => {
    expectProtocolError(() => decodeWindow(frame(FRAME.WINDOW, new Uint8Array(n))), 'WINDOW frame is not 4 bytes')
  })
})

describe('encodeDatagramFrame / decodeDatagram', () => {
  it('lays out u8 ip length, ip, u16 port big-endian, data', () => {
    const bytes = encodeDatagramFrame(4, Uint8Array.of(0xde, 0xad), { ip: '10.0.0.1', port: 0x1f90 })
    expect(Array.from(bytes.subarray(0, 9))).toEqual([0x04, 0, 0, 0, 4, 0, 0, 0, 1 + 8 + 2 + 2])
    expect(Array.from(bytes.subarray(9))).toEqual([8, ...text.encode('10.0.0.1'), 0x1f, 0x90, 0xde, 0xad])
    expect(Array.from(encodeDatagramFrame(4, Uint8Array.of(7)).subarray(9))).toEqual([0, 0, 0, 7])
  })

  it.each<[string, Uint8Array, SockAddress | undefined]>([
    ['IPv4', pattern(100), { ip: '192.168.1.20', port: 40_000 }],
    ['IPv6', pattern(100, 9), { ip: '2001:db8::8a2e:370:7334', port: 443 }],
    ['IPv6 with a zone', pattern(10), { ip: 'fe80::1%eth0', port: 5353 }],
    ['a host name', pattern(10), { ip: 'example.com', port: 1 }],
    ['port 0', pattern(5), { ip: '127.0.0.1', port: 0 }],
    ['port 65535', pattern(5), { ip: '127.0.0.1', port: 65_535 }],
    ['an address of 255 bytes', pattern(5), { ip: 'a'.repeat(255), port: 9 }],
    ['no address', pattern(100), undefined],
    ['a zero-length datagram with an address', new Uint8Array(0), { ip: '::', port: 7 }],
    ['a zero-length datagram without an address', new Uint8Array(0), undefined],
    ['the largest datagram', pattern(MAX_DATAGRAM_BYTES), { ip: '255.255.255.255', port: 65_535 }]
  ])('round-trips %s', (_, data, addr) => {
    const decoded = new FrameDecoder().push(concat([encodeFrame(FRAME.FIN, 3), encodeDatagramFrame(77, data, addr)]))[1] as Frame
    expect(decoded.type).toBe(FRAME.DATAGRAM)
    expect(decoded.id).toBe(77)
    const result = decodeDatagram(decoded)
    expect(result.addr).toEqual(addr)
    expect(hex(result.data)).toBe(hex(data))
  })

  it('refuses an address over 255 bytes', () => {
    expect(() => encodeDatagramFrame(1, pattern(1), { ip: 'a'.repeat(256), port: 1 }))
      .toThrow(new RangeError('datagram address is longer than 255 bytes'))
  })

  it.each<[string, number[]]>([
    ['an empty payload', []],
    ['only the ip length', [0]],
    ['half a port', [0, 1]],
    ['an ip shorter than its length', [4, 127, 0, 0]],
    ['an ip and no port', [4, 127, 0, 0, 1]],
    ['an ip and half a port', [4, 127, 0, 0, 1, 0]],
    ['an ip length of 255 and little else', [255, 1, 2, 3]]
  ])('refuses %s', (_, payload) => {
    expectProtocolError(() => decodeDatagram(frame(FRAME.DATAGRAM, Uint8Array.from(payload))), 'DATAGRAM frame too short')
  })
})

describe('FrameDecoder', () => {
  it('the sample stream is what the reference reads', () => {
    expect(EXPECTED).toHaveLength(SAMPLE.length)
    expect(EXPECTED.map((f) => f.type)).toEqual([0, 1, 1, 2, 3, 3, 3, 4, 4, 5, 6, 7, 8, 9, 10])
  })

  it('decodes the stream as one chunk', () => {
    expect(decodeChunks([STREAM])).toEqual({ frames: EXPECTED, buffered: 0 })
  })

  it('decodes the stream one byte at a time', () => {
    const decoder = new FrameDecoder()
    const frames: PlainFrame[] = []
    for (let i = 0; i < STREAM.length; i++) {
      frames.push(...decoder.push(STREAM.subarray(i, i + 1)).map(plain))
      // A frame comes out on the push of its last byte, never before or after.
      expect(frames.length).toBe(ENDS.filter((end) => end <= i + 1).length)
    }
    expect(frames).toEqual(EXPECTED)
    expect(decoder.bufferedBytes).toBe(0)
  })

  it('decodes the stream split in two at every byte boundary', () => {
    for (let k = 0; k <= STREAM.length; k++) {
      const decoder = new FrameDecoder()
      const first = decoder.push(STREAM.subarray(0, k)).map(plain)
      const complete = ENDS.filter((end) => end <= k).length
      expect(first, `split at ${k}`).toEqual(EXPECTED.slice(0, complete))
      expect(decoder.bufferedBytes, `buffered after a split at ${k}`).toBe(k - (ENDS[complete - 1] ?? 0))
      const second = decoder.push(STREAM.subarray(k)).map(plain)
      expect(second, `split at ${k}`).toEqual(EXPECTED.slice(complete))
      expect(decoder.bufferedBytes).toBe(0)
    }
  })

  it('decodes a short stream split in three at every pair of boundaries', () => {
    const short = concat([encodeWindowFrame(1, 5), encodeFrame(FRAME.DATA, 3, pattern(13)), encodeFrame(FRAME.FIN, 3), encodeDatagramFrame(5, pattern(4), { ip: '::1', port: 2 })])
    const expected = referenceDecode(short)
    for (let a = 0; a <= short.length; a++) {
      for (let b = a; b <= short.length; b++) {
        const result = decodeChunks([short.subarray(0, a), short.subarray(a, b), short.subarray(b)])
        expect(result, `split at ${a} and ${b}`).toEqual({ frames: expected, buffered: 0 })
      }
    }
  })

  it.each([1, 2, 3, 42, 1234])('decodes the stream at random split points (seed %i)', (seed) => {
    const random = prng(seed)
    for (let trial = 0; trial < 50; trial++) {
      const chunks: Uint8Array[] = []
      let at = 0
      while (at < STREAM.length) {
        // Mostly small chunks (inside headers), sometimes empty ones, sometimes large ones.
        const r = random()
        const n = r < 0.1 ? 0 : r < 0.7 ? Math.floor(random() * 12) + 1 : Math.floor(random() * 600) + 1
        chunks.push(STREAM.subarray(at, at + n))
        at += n
      }
      expect(decodeChunks(chunks), `seed ${seed} trial ${trial}: ${chunks.map((c) => c.byteLength).join(',')}`).toEqual({ frames: EXPECTED, buffered: 0 })
    }
  })

  it('decodes frames of the largest payload split across chunks', () => {
    const big = concat([encodeFrame(FRAME.DATA, 1, pattern(MAX_FRAME_PAYLOAD_BYTES, 1)), encodeFrame(FRAME.DATA, 3, pattern(MAX_FRAME_PAYLOAD_BYTES, 2)), encodeFrame(FRAME.FIN, 1)])
    const expected = referenceDecode(big)
    const random = prng(7)
    const chunks: Uint8Array[] = []
    for (let at = 0; at < big.length;) {
      const n = Math.floor(random() * 70_000) + 1
      chunks.push(big.subarray(at, at + n))
      at += n
    }
    expect(decodeChunks(chunks)).toEqual({ frames: expected, buffered: 0 })
    expect(decodeChunks([big])).toEqual({ frames: expected, buffered: 0 })
  })

  it('keeps decoded payloads intact when later chunks arrive', () => {
    const decoder = new FrameDecoder()
    const [a] = decoder.push(concat([encodeFrame(FRAME.DATA, 1, pattern(5, 1)), encodeFrame(FRAME.DATA, 1, pattern(5, 2)).subarray(0, 4)]))
    decoder.push(encodeFrame(FRAME.DATA, 1, pattern(5, 2)).subarray(4))
    expect(Array.from((a as Frame).payload)).toEqual(Array.from(pattern(5, 1)))
  })

  it.each<[string, number, number]>([
    ['type 12', 12, 0],
    ['type 255', 255, 0],
    ['type 12 with a payload', 12, 4]
  ])('refuses unknown frame %s as soon as the header is in', (_, type, length) => {
    const head = Uint8Array.of(type, 0, 0, 0, 1, 0, 0, 0, length)
    const decoder = new FrameDecoder()
    expect(decoder.push(head.subarray(0, 8))).toEqual([])
    expectProtocolError(() => decoder.push(head.subarray(8)), `unknown frame type ${type}`)
  })

  it.each<[string, number]>([
    ['one byte over', MAX_FRAME_PAYLOAD_BYTES + 1],
    ['the largest u32', 0xffffffff]
  ])('refuses a length %s MAX_FRAME_PAYLOAD_BYTES without waiting for the payload', (_, length) => {
    const head = new Uint8Array(9)
    new DataView(head.buffer).setUint8(0, FRAME.DATA)
    new DataView(head.buffer).setUint32(5, length)
    expectProtocolError(() => new FrameDecoder().push(head), `frame of ${length} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`)
  })

  it('refuses a bad frame that follows good ones in the same chunk', () => {
    expectProtocolError(() => new FrameDecoder().push(concat([encodeFrame(FRAME.FIN, 1), Uint8Array.of(42, 0, 0, 0, 0, 0, 0, 0, 0)])), 'unknown frame type 42')
  })
})

describe('FrameDecoder with splitData (the multiplexer\'s)', () => {
  /** Frames with each run of DATA pieces of one id merged back into one frame: what the bytes say, whatever the chunking. */
  function mergeData (frames: readonly PlainFrame[]): PlainFrame[] {
    const out: PlainFrame[] = []
    for (const f of frames) {
      const last = out.at(-1)
      if (f.type === FRAME.DATA && last?.type === FRAME.DATA && last.id === f.id) last.payload += f.payload
      else out.push({ ...f })
    }
    return out
  }

  /** Push copies of `chunks` (each its own memory) through a splitting decoder; checks every DATA piece is a view into the chunk it came in. */
  function decodeSplit (chunks: readonly Uint8Array[]): { frames: PlainFrame[], buffered: number, pieces: number } {
    const decoder = new FrameDecoder({ splitData: true })
    const frames: PlainFrame[] = []
    let pieces = 0
    for (const c of chunks) {
      const own = c.slice()
      for (const f of decoder.push(own)) {
        if (f.type === FRAME.DATA && f.payload.byteLength > 0) {
          pieces++
          expect(f.payload.buffer, 'a DATA piece is a view into the chunk just pushed, never a copy').toBe(own.buffer)
        }
        frames.push(plain(f))
      }
    }
    return { frames, buffered: decoder.bufferedBytes, pieces }
  }

  const BIG = concat([encodeFrame(FRAME.DATA, 1, pattern(MAX_FRAME_PAYLOAD_BYTES, 1)), encodeJsonFrame(FRAME.RESET, 2, { code: 'E_X', message: 'x'.repeat(500) }), encodeFrame(FRAME.DATA, 3, pattern(70_000, 2)), encodeDatagramFrame(5, pattern(3000, 3), { ip: '::1', port: 9 }), encodeFrame(FRAME.FIN, 1), STREAM])

  it.each([1, 2, 3])('reads the same bytes and frames as the reference at random split points, DATA as views (seed %i)', (seed) => {
    const expected = mergeData(referenceDecode(BIG))
    const random = prng(seed)
    for (let trial = 0; trial < 20; trial++) {
      const chunks: Uint8Array[] = []
      for (let at = 0; at < BIG.length;) {
        const r = random()
        const n = r < 0.1 ? 0 : r < 0.4 ? Math.floor(random() * 12) + 1 : Math.floor(random() * 70_000) + 1
        chunks.push(BIG.subarray(at, at + n))
        at += n
      }
      const got = decodeSplit(chunks)
      expect({ frames: mergeData(got.frames), buffered: got.buffered }, `seed ${seed} trial ${trial}`).toEqual({ frames: expected, buffered: 0 })
      expect(got.pieces, 'DATA frames came in pieces: more than the four with a payload').toBeGreaterThan(4)
    }
  })

  it('hands on a DATA frame split across Noise-sized chunks as two views, holding none of it; other frames come whole', () => {
    const data = pattern(64 * 1024, 4)
    const dgram = encodeDatagramFrame(7, pattern(100, 5), { ip: '127.0.0.1', port: 53 })
    const stream = concat([encodeFrame(FRAME.DATA, 9, data), dgram])
    const cut = 65_519
    const decoder = new FrameDecoder({ splitData: true })
    const first = decoder.push(stream.subarray(0, cut))
    expect(first.map((f) => [f.type, f.id, f.payload.byteLength])).toEqual([[FRAME.DATA, 9, cut - FRAME_HEADER_BYTES]])
    expect(decoder.bufferedBytes, 'nothing of the DATA frame is held').toBe(0)
    const rest = stream.subarray(cut, cut + 40) // the rest of the DATA, and the DATAGRAM's first bytes
    const second = decoder.push(rest)
    expect(second.map((f) => [f.type, f.id, f.payload.byteLength])).toEqual([[FRAME.DATA, 9, FRAME_HEADER_BYTES + data.byteLength - cut]])
    expect(hex(concat([(first[0] as Frame).payload, (second[0] as Frame).payload]))).toBe(hex(data))
    const third = decoder.push(stream.subarray(cut + 40))
    expect(third.map(plain)).toEqual(referenceDecode(dgram))
    expect(decoder.bufferedBytes).toBe(0)
  })

  it('a DATA header cut anywhere: the payload still comes as views, and an empty DATA frame comes whole', () => {
    const stream = concat([encodeFrame(FRAME.DATA, 1), encodeFrame(FRAME.DATA, 2, pattern(30, 6)), encodeFrame(FRAME.FIN, 2)])
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const got = decodeSplit([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)])
        expect({ frames: mergeData(got.frames), buffered: got.buffered }, `split at ${a} and ${b}`).toEqual({ frames: mergeData(referenceDecode(stream)), buffered: 0 })
        expect(got.frames.filter((f) => f.type === FRAME.DATA && f.id === 1), 'the empty frame, once').toEqual([{ type: FRAME.DATA, id: 1, payload: '' }])
      }
    }
  })

  it('still refuses a bad header or an oversized length as soon as the header is in', () => {
    expectProtocolError(() => new FrameDecoder({ splitData: true }).push(Uint8Array.of(42, 0, 0, 0, 1, 0, 0, 0, 0)), 'unknown frame type 42')
    const head = encodeFrameHeader(FRAME.DATA, 1, 0)
    new DataView(head.buffer, head.byteOffset).setUint32(5, MAX_FRAME_PAYLOAD_BYTES + 1)
    expectProtocolError(() => new FrameDecoder({ splitData: true }).push(head), `frame of ${MAX_FRAME_PAYLOAD_BYTES + 1} bytes is over`)
  })
})
