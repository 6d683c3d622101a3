import { describe, expect, it } from 'vitest'
import { MAX_ADDRESS_CHARS, MAX_DIAL_ID_CHARS, MAX_KEY_HEX_CHARS } from '../../shared/constants.ts'
import { StarsockError } from '../../shared/errors.ts'
import {
  checkDial,
  checkHello,
  checkJoin,
  checkLeave,
  checkPeersCursor,
  checkUdpAllocate,
  isHex,
  readPeerBatch,
  splitAck
} from '../../shared/validate.ts'

const ADDR = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star'
const OTHER = '/dns4/example.com/wss/p2p-websocket-star'
const UUID = '0b9d6f0e-3c1a-4c9e-9d55-7f1b2a3c4d5e'
const LONG_ADDR = 'a'.repeat(MAX_ADDRESS_CHARS + 1)

/** Assert `result` is an `E_BAD_REQUEST` whose message names the event and contains `what`. */
function expectBad (result: unknown, event: string, what: string): void {
  expect(result).toBeInstanceOf(StarsockError)
  const error = result as StarsockError
  expect(error.code).toBe('E_BAD_REQUEST')
  expect(error.message).toBe(`${event}: ${what}`)
}

describe('splitAck', () => {
  const ack = (): void => {}

  it('splits off a trailing function', () => {
    const result = splitAck([ADDR, 'beef', ack])
    expect(result.args).toEqual([ADDR, 'beef'])
    expect(result.ack).toBe(ack)
  })

  it.each<[string, unknown[]]>([
    ['no arguments', []],
    ['no function', [ADDR, 'beef']],
    ['a function that is not last', [ack, ADDR]]
  ])('gives no ack for %s', (_, args) => {
    const result = splitAck(args)
    expect(result.ack).toBeUndefined()
    expect(result.args).toEqual(args)
    expect(result.args).not.toBe(args)
  })

  it('takes only the last function as the ack', () => {
    const first = (): void => {}
    const result = splitAck([first, ack])
    expect(result.args).toEqual([first])
    expect(result.ack).toBe(ack)
  })
})

describe('checkJoin', () => {
  it.each<[string, unknown[], { addr: string, proof: string }]>([
    ['an address and a key', [ADDR, 'abcd'], { addr: ADDR, proof: 'abcd' }],
    ['an address alone', [ADDR], { addr: ADDR, proof: '' }],
    ['an address and undefined', [ADDR, undefined], { addr: ADDR, proof: '' }],
    ['an address and null', [ADDR, null], { addr: ADDR, proof: '' }],
    ['a longest address and key', ['a'.repeat(MAX_ADDRESS_CHARS), 'f'.repeat(MAX_KEY_HEX_CHARS)],
      { addr: 'a'.repeat(MAX_ADDRESS_CHARS), proof: 'f'.repeat(MAX_KEY_HEX_CHARS) }]
  ])('accepts %s', (_, args, expected) => {
    expect(checkJoin(args)).toEqual(expected)
  })

  it.each<[string, unknown[], string]>([
    ['no address', [], 'address must be a string'],
    ['a number address', [42, 'abcd'], 'address must be a string'],
    ['an object address', [{ addr: ADDR }], 'address must be a string'],
    ['an overlong address', [LONG_ADDR], `address is longer than ${MAX_ADDRESS_CHARS} characters`],
    ['a number key', [ADDR, 1234], 'key or signature must be a string'],
    ['a bytes key', [ADDR, new Uint8Array(4)], 'key or signature must be a string'],
    ['an overlong key', [ADDR, 'f'.repeat(MAX_KEY_HEX_CHARS + 1)], `key or signature is longer than ${MAX_KEY_HEX_CHARS} characters`]
  ])('rejects %s', (_, args, what) => {
    expectBad(checkJoin(args), 'ss-join', what)
  })
})

describe('checkLeave', () => {
  it('accepts an address', () => {
    expect(checkLeave([ADDR])).toEqual({ addr: ADDR })
  })

  it.each<[string, unknown[], string]>([
    ['no address', [], 'address must be a string'],
    ['a boolean address', [true], 'address must be a string'],
    ['an overlong address', [LONG_ADDR], `address is longer than ${MAX_ADDRESS_CHARS} characters`]
  ])('rejects %s', (_, args, what) => {
    expectBad(checkLeave(args), 'ss-leave', what)
  })
})

describe('checkDial', () => {
  it.each<[string, string]>([
    ['a uuid', UUID],
    ['a single character', 'x'],
    ['underscores, dots and dashes', 'a_b.c-d'],
    ['the longest id', 'a'.repeat(MAX_DIAL_ID_CHARS)]
  ])('accepts %s as a dial id', (_, dialId) => {
    expect(checkDial([ADDR, OTHER, dialId])).toEqual({ from: ADDR, to: OTHER, dialId, secure: false })
  })

  it.each<[string, unknown, boolean]>([
    ['{ secure: true }', { secure: true }, true],
    ['{ secure: false }', { secure: false }, false],
    ['a truthy non-boolean', { secure: 'yes' }, false],
    ['not an object', 'secure', false]
  ])('reads a starsock dialer\'s fourth argument %s as a hint only', (_, options, secure) => {
    expect(checkDial([ADDR, OTHER, 'd1', options])).toEqual({ from: ADDR, to: OTHER, dialId: 'd1', secure })
  })

  it.each<[string, unknown[], string]>([
    ['no arguments', [], 'from address must be a string'],
    ['a number from', [1, OTHER, UUID], 'from address must be a string'],
    ['an overlong from', [LONG_ADDR, OTHER, UUID], `from address is longer than ${MAX_ADDRESS_CHARS} characters`],
    ['no to', [ADDR], 'to address must be a string'],
    ['a null to', [ADDR, null, UUID], 'to address must be a string'],
    ['an overlong to', [ADDR, LONG_ADDR, UUID], `to address is longer than ${MAX_ADDRESS_CHARS} characters`],
    ['no dial id', [ADDR, OTHER], 'dial id must be a string'],
    ['a number dial id', [ADDR, OTHER, 7], 'dial id must be a string'],
    ['an overlong dial id', [ADDR, OTHER, 'a'.repeat(MAX_DIAL_ID_CHARS + 1)], `dial id is longer than ${MAX_DIAL_ID_CHARS} characters`]
  ])('rejects %s', (_, args, what) => {
    expectBad(checkDial(args), 'ss-dial', what)
  })

  it.each<[string, string]>([
    ['an empty dial id', ''],
    ['a space', 'a b'],
    ['a slash', 'a/b'],
    ['a socket.io event separator', `${UUID}:x`],
    ['a newline', `${UUID}\n`],
    ['a non-ASCII letter', 'ü'],
    ['brackets', '[E_LIMIT_BYTES]']
  ])('rejects a dial id with %s', (_, dialId) => {
    expectBad(checkDial([ADDR, OTHER, dialId]), 'ss-dial', 'dial id must be letters, digits, "_", "-" or "."')
  })
})

describe('checkHello', () => {
  it.each<[string, unknown[], boolean]>([
    ['no request', [], false],
    ['an empty object', [{}], false],
    ['peerEvents true', [{ peerEvents: true }], true],
    ['peerEvents false', [{ peerEvents: false }], false],
    ['peerEvents undefined', [{ peerEvents: undefined }], false],
    ['null (read as no request)', [null], false],
    ['unknown fields', [{ other: 1 }], false]
  ])('accepts %s', (_, args, peerEvents) => {
    expect(checkHello(args)).toEqual({ peerEvents, takeover: false })
  })

  it.each<[string, unknown[], string]>([
    ['a string request', ['hi'], 'request must be an object'],
    ['a number request', [1], 'request must be an object'],
    ['an array request', [[true]], 'request must be an object'],
    ['a string peerEvents', [{ peerEvents: 'true' }], 'peerEvents must be a boolean'],
    ['a number peerEvents', [{ peerEvents: 1 }], 'peerEvents must be a boolean'],
    ['a null peerEvents', [{ peerEvents: null }], 'peerEvents must be a boolean'],
    ['a string peerBatch', [{ peerEvents: true, peerBatch: 'yes' }], 'peerBatch must be a boolean']
  ])('rejects %s', (_, args, what) => {
    expectBad(checkHello(args), 'starsock:hello', what)
  })

  it('keeps peerBatch only when true', () => {
    expect(checkHello([{ peerEvents: true, peerBatch: true }])).toEqual({ peerEvents: true, peerBatch: true, takeover: false })
    expect(checkHello([{ peerEvents: true, peerBatch: false }])).toEqual({ peerEvents: true, takeover: false })
  })
})

describe('readPeerBatch', () => {
  const named = { kind: 'node', name: 'n' }
  it.each<[string, unknown, unknown]>([
    ['not an array', { join: ADDR }, undefined],
    ['an empty batch', [], []],
    ['every kind, in order', [['join', ADDR], ['join', OTHER, named], ['leave', ADDR], ['profile', OTHER, named]], [['join', ADDR], ['join', OTHER, named], ['leave', ADDR], ['profile', OTHER, named]]],
    ['a bad profile on a join is none', [['join', ADDR, { kind: 'toaster' }]], [['join', ADDR]]],
    ['a profile entry without a valid profile is skipped', [['profile', ADDR, 5], ['profile', ADDR]], []],
    ['malformed entries are skipped', [null, 'join', ['join'], ['join', 5], ['jump', ADDR], ['leave', LONG_ADDR], ['leave', OTHER]], [['leave', OTHER]]]
  ])('%s', (_, value, expected) => {
    expect(readPeerBatch(value)).toEqual(expected)
  })
})

describe('checkPeersCursor', () => {
  it.each<[string, unknown[], number]>([
    ['no cursor', [], 0],
    ['0', [0], 0],
    ['a positive integer', [128], 128],
    ['the largest safe integer', [Number.MAX_SAFE_INTEGER], Number.MAX_SAFE_INTEGER]
  ])('accepts %s', (_, args, cursor) => {
    expect(checkPeersCursor(args)).toBe(cursor)
  })

  it.each<[string, unknown]>([
    ['a negative number', -1],
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['an unsafe integer', Number.MAX_SAFE_INTEGER + 1],
    ['a numeric string', '3'],
    ['a boolean', true],
    ['an object', { cursor: 0 }]
  ])('rejects %s', (_, cursor) => {
    expectBad(checkPeersCursor([cursor]), 'starsock:peers', 'cursor must be a non-negative integer')
  })
})

describe('isHex', () => {
  it.each<[string, boolean]>([
    ['', true],
    ['00', true],
    ['0a1B2c3D', true],
    ['abc', false],
    ['0g', false],
    ['0x00', false],
    [' 00', false]
  ])('%j is %s', (text, expected) => {
    expect(isHex(text)).toBe(expected)
  })
})

describe('checkUdpAllocate', () => {
  it.each<[string, unknown[], unknown]>([
    ['no request', [], { mode: 'token', addresses: [] }],
    ['a non-object request', ['open'], { mode: 'token', addresses: [] }],
    ['an empty request', [{}], { mode: 'token', addresses: [] }],
    ['open mode', [{ mode: 'open' }], { mode: 'open', addresses: [] }],
    ['address mode with addresses', [{ mode: 'address', addresses: ['10.0.0.1', '::1'] }], { mode: 'address', addresses: ['10.0.0.1', '::1'] }],
    ['token mode with addresses', [{ addresses: ['10.0.0.1'] }], { mode: 'token', addresses: ['10.0.0.1'] }]
  ])('accepts %s', (_, args, expected) => {
    expect(checkUdpAllocate(args)).toEqual(expected)
  })

  it.each<[string, unknown, string]>([
    ['an unknown mode', { mode: 'tcp' }, 'mode must be token, address or open [E_BAD_REQUEST]'],
    ['a non-string mode', { mode: 1 }, 'mode must be token, address or open [E_BAD_REQUEST]'],
    ['addresses that are no array', { addresses: '10.0.0.1' }, 'addresses must be at most 16 IP addresses [E_BAD_REQUEST]'],
    ['an address that is no string', { addresses: [10] }, 'addresses must be at most 16 IP addresses [E_BAD_REQUEST]'],
    ['17 addresses', { addresses: Array.from({ length: 17 }, () => '10.0.0.1') }, 'addresses must be at most 16 IP addresses [E_BAD_REQUEST]'],
    ['address mode without addresses', { mode: 'address' }, 'address mode needs the addresses that may register [E_BAD_REQUEST]']
  ])('refuses %s', (_, request, wire) => {
    const result = checkUdpAllocate([request])
    expect(result).toBeInstanceOf(StarsockError)
    expect((result as StarsockError).toWire()).toBe(wire)
  })
})
