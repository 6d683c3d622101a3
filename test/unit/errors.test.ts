import { describe, expect, it } from 'vitest'
import {
  ERROR_CODES,
  LEGACY_ERROR_STRINGS,
  StarsockError,
  errorCodeOf,
  errorFromWire,
  wireError,
  type ErrorCode
} from '../../shared/errors.ts'

const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[]
const NEW_CODES = ALL_CODES.filter(code => !(code in LEGACY_ERROR_STRINGS))

// Written out by hand: these strings are what legacy clients match on, so they must never drift.
const LEGACY: Array<[ErrorCode, string]> = [
  ['E_INVALID_ADDRESS', 'Invalid multiaddr'],
  ['E_SIGNATURE_INVALID', 'Signature Invalid'],
  ['E_PEER_NOT_FOUND', 'Peer not found'],
  ['E_NOT_AUTHORIZED', 'Not authorized for this address'],
  ['E_CRYPTO', 'Crypto error'],
  ['E_ID_MISMATCH', 'Id is not matching'],
  ['E_CHALLENGE_REQUIRED', 'Crypto Challenge required but no Id provided']
]

describe('wireError', () => {
  it.each(LEGACY)('%s is the legacy string %j', (code, text) => {
    expect(wireError(code)).toBe(text)
  })

  it.each(LEGACY)('%s ignores a detail and keeps the legacy string', (code, text) => {
    expect(wireError(code, 'some detail')).toBe(text)
  })

  it('has exactly the seven legacy codes', () => {
    expect(Object.keys(LEGACY_ERROR_STRINGS).sort()).toEqual(LEGACY.map(([code]) => code).sort())
  })

  it.each(NEW_CODES)('%s ends with its code in brackets', (code) => {
    expect(wireError(code)).toBe(`${ERROR_CODES[code]} [${code}]`)
    expect(wireError(code, 'Stream buffer full')).toBe(`Stream buffer full [${code}]`)
  })

  it('cuts a long text, never the code: the server keeps 256 characters of a stream error', () => {
    const wire = wireError('E_SECURE_REQUIRED', 'x'.repeat(400))
    expect(wire.length).toBeLessThanOrEqual(256)
    expect(wire.endsWith('… [E_SECURE_REQUIRED]')).toBe(true)
    expect(errorCodeOf(wire.slice(0, 256))).toBe('E_SECURE_REQUIRED')
    expect(wireError('E_SECURE_AUTH', 'y'.repeat(200))).toBe(`${'y'.repeat(200)} [E_SECURE_AUTH]`)
  })

  it('StarsockError.toWire uses the message for new codes and the legacy string for old ones', () => {
    expect(new StarsockError('E_LIMIT_BYTES', 'too many').toWire()).toBe('too many [E_LIMIT_BYTES]')
    expect(new StarsockError('E_PEER_NOT_FOUND', 'nobody there').toWire()).toBe('Peer not found')
    expect(new StarsockError('E_SHUTDOWN').toWire()).toBe(`${ERROR_CODES.E_SHUTDOWN} [E_SHUTDOWN]`)
  })
})

describe('errorCodeOf / errorFromWire', () => {
  it.each(ALL_CODES)('%s round-trips through its wire string', (code) => {
    const wire = wireError(code)
    expect(errorCodeOf(wire)).toBe(code)
    const error = errorFromWire(wire)
    expect(error).toBeInstanceOf(StarsockError)
    expect(error.code).toBe(code)
  })

  it.each(NEW_CODES)('%s round-trips with a custom detail, which becomes the message', (code) => {
    const error = errorFromWire(wireError(code, 'custom detail'))
    expect(error.code).toBe(code)
    expect(error.message).toBe('custom detail')
  })

  it.each(LEGACY)('%s keeps the legacy string as its message', (_code, text) => {
    expect(errorFromWire(text).message).toBe(text)
  })

  it.each<[string, string]>([
    ['an unrelated string', 'something went wrong'],
    ['an unknown code', 'oops [E_NOT_A_CODE]'],
    ['a code not at the end', '[E_LIMIT_BYTES] and more'],
    ['a lower-case code', 'oops [e_limit_bytes]'],
    ['the empty string', ''],
    ['a legacy string with different case', 'peer not found']
  ])('errorCodeOf gives undefined for %s', (_, wire) => {
    expect(errorCodeOf(wire)).toBeUndefined()
  })

  it.each<[string, unknown]>([
    ['a number', 42],
    ['undefined', undefined],
    ['null', null],
    ['an object', { code: 'E_LIMIT_BYTES' }]
  ])('errorFromWire turns %s into E_BAD_REQUEST "Unknown error"', (_, wire) => {
    const error = errorFromWire(wire)
    expect(error.code).toBe('E_BAD_REQUEST')
    expect(error.message).toBe('Unknown error')
  })

  it('errorFromWire gives E_BAD_REQUEST with the text for a string without a code', () => {
    const error = errorFromWire('socket hang up')
    expect(error.code).toBe('E_BAD_REQUEST')
    expect(error.message).toBe('socket hang up')
  })
})
