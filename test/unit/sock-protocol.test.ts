import { describe, expect, it } from 'vitest'
import { MAX_ALLOW_FROM_ENTRIES, parseAllowFrom } from '../../client/sock/allow-from.node.ts'
import { ERROR_CODES, StarsockError } from '../../shared/errors.ts'
import {
  allowFromEntryProblem, checkAllowFromList,
  describeOffer,
  FEATURES,
  hasFeature,
  isAllowFromList,
  isHost,
  isPort,
  MAX_ASKING_TIMEOUT_MS,
  MAX_CHANNEL_TYPE_CHARS,
  MAX_HOST_CHARS,
  MAX_OFFER_ALLOW_FROM_ENTRIES,
  MAX_OFFER_NAME_CHARS,
  MAX_REPLY_ADDRESSES,
  MUX_PROTOCOL,
  OFFER_KINDS,
  MUX_VERSION,
  parseAsking,
  parseError,
  parseHello,
  parseOffer,
  parseOpenHeader,
  parseReply,
  understandsOffer,
  type Offer,
  type OfferKind,
  type OpenHeader,
  type Reply
} from '../../shared/sock-protocol.ts'

/** Assert `fn` throws a StarsockError E_CHANNEL_PROTOCOL with exactly `message`. */
function expectProtocolError (fn: () => unknown, message: string): void {
  let thrown: unknown
  try { fn() } catch (err) { thrown = err }
  expect(thrown).toBeInstanceOf(StarsockError)
  expect((thrown as StarsockError).code).toBe('E_CHANNEL_PROTOCOL')
  expect((thrown as StarsockError).message).toBe(message)
}

const LONG_HOST = 'a'.repeat(MAX_HOST_CHARS + 1)

describe('isPort', () => {
  it.each<[string, unknown]>([
    ['0', 0],
    ['1', 1],
    ['8080', 8080],
    ['65535', 65535]
  ])('accepts %s', (_, value) => {
    expect(isPort(value)).toBe(true)
  })

  it.each<[string, unknown]>([
    ['-1', -1],
    ['65536', 65536],
    ['a fraction', 80.5],
    ['NaN', Number.NaN],
    ['Infinity', Infinity],
    ['a numeric string', '80'],
    ['a bigint', 80n],
    ['null', null],
    ['undefined', undefined],
    ['an array', [80]]
  ])('refuses %s', (_, value) => {
    expect(isPort(value)).toBe(false)
  })
})

describe('isHost', () => {
  it.each<[string, string]>([
    ['an IPv4 address', '127.0.0.1'],
    ['an IPv6 address', '2001:db8::1'],
    ['an IPv6 address with a zone', 'fe80::1%eth0'],
    ['a bracketed IPv6 address', '[::1]'],
    ['a host name', 'my-host.example.com'],
    ['a name with an underscore', '_srv.example'],
    ['one character', 'h'],
    ['the longest host', 'a'.repeat(MAX_HOST_CHARS)]
  ])('accepts %s', (_, value) => {
    expect(isHost(value)).toBe(true)
  })

  it.each<[string, unknown]>([
    ['the empty string', ''],
    ['a host over the limit', LONG_HOST],
    ['a space', 'my host'],
    ['a trailing newline', 'host\n'],
    ['a control character', 'ho\u0000st'],
    ['a slash', 'host/path'],
    ['an at sign', 'user@host'],
    ['a number', 127001],
    ['null', null],
    ['an array', ['127.0.0.1']],
    ['an object', { ip: '127.0.0.1' }]
  ])('refuses %s', (_, value) => {
    expect(isHost(value)).toBe(false)
  })
})

describe('parseHello', () => {
  it.each<[string, number]>([
    ['the smallest window', 1024],
    ['a usual window', 256 * 1024],
    ['the largest window', 2 ** 31]
  ])('accepts %s', (_, window) => {
    expect(parseHello({ protocol: MUX_PROTOCOL, version: MUX_VERSION, window })).toEqual({ protocol: 'starsock-mux', version: 1, window })
  })

  it('drops unknown fields', () => {
    expect(parseHello({ protocol: 'starsock-mux', version: 1, window: 4096, extra: 'x' })).toEqual({ protocol: 'starsock-mux', version: 1, window: 4096 })
  })

  it.each<[string, unknown, boolean]>([
    ['interim: true', true, true],
    ['interim: false', false, false],
    ['interim: "yes"', 'yes', false],
    ['interim: 1', 1, false]
  ])('keeps %s only when it is exactly true', (_, interim, kept) => {
    const hello = parseHello({ protocol: 'starsock-mux', version: 1, window: 4096, interim })
    expect(hello.interim).toBe(kept ? true : undefined)
    expect(Object.hasOwn(hello, 'interim')).toBe(kept)
  })

  it('understandsOffer: a HELLO with interim but no offers (the build just before offers) takes file offers', () => {
    const hello = parseHello({ protocol: 'starsock-mux', version: 1, window: 4096, interim: true })
    expect(understandsOffer(hello, 'file')).toBe(true)
    expect(understandsOffer(hello, 'connect')).toBe(true)
  })

  it.each<[string, unknown, Array<[string, boolean]>]>([
    ['no offers (an older peer): connect, bind and accept, not file', undefined, [['connect', true], ['bind', true], ['accept', true], ['file', false]]],
    ['offers with file', ['connect', 'bind', 'accept', 'file'], [['connect', true], ['file', true]]],
    ['offers with an unknown kind (left out)', ['connect', 'teleport'], [['connect', true], ['bind', false], ['file', false]]],
    ['empty offers', [], [['connect', false], ['file', false]]]
  ])('understandsOffer with %s', (_, offers, expected) => {
    const hello = parseHello({ protocol: 'starsock-mux', version: 1, window: 4096, ...(offers === undefined ? {} : { offers }) })
    for (const [kind, yes] of expected) expect(understandsOffer(hello, kind as OfferKind), kind).toBe(yes)
  })

  it.each<[string, unknown]>([
    ['a string', 'file'],
    ['a list with a number', ['connect', 1]],
    ['a list too long', Array.from({ length: 33 }, () => 'connect')]
  ])('refuses offers that are %s', (_, offers) => {
    expect(() => parseHello({ protocol: 'starsock-mux', version: 1, window: 4096, offers })).toThrow('HELLO offers must be a list of at most 32 offer kinds')
  })

  const WINDOW = 'HELLO window must be an integer from 1024 to 2^31'
  it.each<[string, unknown, string]>([
    ['null', null, 'not a starsock-mux connection'],
    ['an array', ['starsock-mux', 1, 1024], 'not a starsock-mux connection'],
    ['a string', 'starsock-mux', 'not a starsock-mux connection'],
    ['another protocol', { protocol: 'yamux', version: 1, window: 1024 }, 'not a starsock-mux connection'],
    ['no protocol', { version: 1, window: 1024 }, 'not a starsock-mux connection'],
    ['version 2', { protocol: 'starsock-mux', version: 2, window: 1024 }, 'mux version 2 is not 1'],
    ['a string version', { protocol: 'starsock-mux', version: '1', window: 1024 }, 'mux version "1" is not 1'],
    ['no version', { protocol: 'starsock-mux', window: 1024 }, 'mux version undefined is not 1'],
    ['no window', { protocol: 'starsock-mux', version: 1 }, WINDOW],
    ['a string window', { protocol: 'starsock-mux', version: 1, window: '4096' }, WINDOW],
    ['a window under 1024', { protocol: 'starsock-mux', version: 1, window: 1023 }, WINDOW],
    ['a window over 2^31', { protocol: 'starsock-mux', version: 1, window: 2 ** 31 + 1 }, WINDOW],
    ['a fractional window', { protocol: 'starsock-mux', version: 1, window: 2048.5 }, WINDOW],
    ['a NaN window', { protocol: 'starsock-mux', version: 1, window: Number.NaN }, WINDOW],
    ['a null window', { protocol: 'starsock-mux', version: 1, window: null }, WINDOW]
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseHello(value), message)
  })
})

describe('parseAsking (interim OFFER_REPLY)', () => {
  it.each<[string, unknown, { timeoutMs: number } | undefined]>([
    ['a final grant', {}, undefined],
    ['a final refusal', { error: { code: 'E_DENIED', message: 'no' } }, undefined],
    ['not an object', 'asking', undefined],
    ['an interim answer', { asking: { timeoutMs: 60_000 } }, { timeoutMs: 60_000 }],
    ['no time at all', { asking: { timeoutMs: 0 } }, { timeoutMs: 0 }],
    ['the longest wait', { asking: { timeoutMs: MAX_ASKING_TIMEOUT_MS } }, { timeoutMs: MAX_ASKING_TIMEOUT_MS }],
    ['extra fields', { asking: { timeoutMs: 5, by: 'person' }, x: 1 }, { timeoutMs: 5 }]
  ])('reads %s', (_, value, expected) => {
    expect(parseAsking(value)).toEqual(expected)
  })

  const ASKING = `asking must be { timeoutMs } with an integer from 0 to ${MAX_ASKING_TIMEOUT_MS}`
  it.each<[string, unknown]>([
    ['null', { asking: null }],
    ['a number', { asking: 60_000 }],
    ['no timeoutMs', { asking: {} }],
    ['a string timeoutMs', { asking: { timeoutMs: '60000' } }],
    ['a negative timeoutMs', { asking: { timeoutMs: -1 } }],
    ['a fractional timeoutMs', { asking: { timeoutMs: 1.5 } }],
    ['a timeoutMs over a day', { asking: { timeoutMs: MAX_ASKING_TIMEOUT_MS + 1 } }],
    ['an infinite timeoutMs', { asking: { timeoutMs: Number.POSITIVE_INFINITY } }]
  ])('refuses %s', (_, value) => {
    expectProtocolError(() => parseAsking(value), ASKING)
  })
})

describe('parseOffer', () => {
  const OFFER: Offer = { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 8080, name: 'web' }

  it.each<[string, Offer]>([
    ['a connect offer', OFFER],
    ['a bind offer on any port', { kind: 'bind', proto: 'udp', host: '0.0.0.0', port: 0, name: '' }],
    ['an accept offer', { kind: 'accept', proto: 'tcp', host: '::1', port: 65535, name: 'ssh' }],
    ['the longest name and host', { ...OFFER, host: 'h'.repeat(MAX_HOST_CHARS), name: 'n'.repeat(MAX_OFFER_NAME_CHARS) }],
    ['a name in ordinary unicode', { ...OFFER, name: 'café ☕' }],
    ['a name with astral characters and a joiner', { ...OFFER, name: 'team 👩\u200d💻 👍🏽' }],
    ['a name in a right-to-left script', { ...OFFER, name: 'שלום مرحبا' }],
    ['a name with punctuation and quotes', { ...OFFER, name: 'my "web" app: v1.2 (test) <3 \\ ~' }],
    ['a name with a no-break space, just past C1', { ...OFFER, name: 'a\u00a0b' }],
    ['a name with an Arabic semicolon, just before U+061C', { ...OFFER, name: 'a\u061bb' }],
    ['a name with a zero-width joiner, just before U+200E', { ...OFFER, name: 'a\u200db' }],
    ['a name with a per-mille sign, just past U+2029', { ...OFFER, name: '5\u2030' }],
    ['a name with a narrow no-break space, just past U+202E', { ...OFFER, name: 'a\u202fb' }],
    ['a name with a superscript zero, just past U+2069', { ...OFFER, name: 'x\u2070' }]
  ])('accepts %s', (_, offer) => {
    expect(parseOffer(offer)).toEqual(offer)
  })

  it('drops unknown fields', () => {
    expect(parseOffer({ ...OFFER, token: 'secret' })).toEqual(OFFER)
  })

  it.each<[string, unknown, Offer]>([
    ['a file offer', { kind: 'file', name: 'a.txt', size: 10 }, { kind: 'file', proto: 'tcp', host: '', port: 0, name: 'a.txt', size: 10 }],
    ['an empty file, host and port ignored', { kind: 'file', proto: 'udp', host: 'x', port: 9, name: 'e', size: 0 }, { kind: 'file', proto: 'tcp', host: '', port: 0, name: 'e', size: 0 }],
    ['the largest safe size', { kind: 'file', name: 'big', size: Number.MAX_SAFE_INTEGER }, { kind: 'file', proto: 'tcp', host: '', port: 0, name: 'big', size: Number.MAX_SAFE_INTEGER }]
  ])('accepts %s', (_, value, expected) => {
    expect(parseOffer(value)).toEqual(expected)
  })

  it.each<[string, unknown, string]>([
    ['a file offer without a size', { kind: 'file', name: 'a' }, 'a file offer needs a size in bytes (a non-negative integer)'],
    ['a negative size', { kind: 'file', name: 'a', size: -1 }, 'a file offer needs a size in bytes (a non-negative integer)'],
    ['a fractional size', { kind: 'file', name: 'a', size: 1.5 }, 'a file offer needs a size in bytes (a non-negative integer)'],
    ['a size past 2^53', { kind: 'file', name: 'a', size: 2 ** 53 }, 'a file offer needs a size in bytes (a non-negative integer)'],
    ['a string size', { kind: 'file', name: 'a', size: '10' }, 'a file offer needs a size in bytes (a non-negative integer)'],
    ['a file offer without a name', { kind: 'file', name: '', size: 1 }, 'a file offer needs a name'],
    ['a file name with a newline', { kind: 'file', name: 'a\nAllow? [y/N] y', size: 1 }, 'offer name must not hold control or direction characters'],
    ['a file name with a right-to-left override', { kind: 'file', name: 'txt.\u202eexe', size: 1 }, 'offer name must not hold control or direction characters']
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseOffer(value), message)
  })

  const KIND = 'offer kind must be connect, bind, accept, file or service'
  const PROTO = 'offer proto must be tcp or udp'
  const HOST = 'offer host must be a host name or address'
  const PORT = 'offer port must be 0 to 65535'
  const NAME = `offer name must be a string of at most ${MAX_OFFER_NAME_CHARS} characters`
  const UNPRINTABLE = 'offer name must not hold control or direction characters'
  it.each<[string, unknown, string]>([
    ['null', null, 'offer must be an object'],
    ['an array', [OFFER], 'offer must be an object'],
    ['a string', 'connect/tcp:127.0.0.1:8080', 'offer must be an object'],
    ['no kind', { ...OFFER, kind: undefined }, KIND],
    ['an unknown kind', { ...OFFER, kind: 'listen' }, KIND],
    ['an upper-case kind', { ...OFFER, kind: 'CONNECT' }, KIND],
    ['a number kind', { ...OFFER, kind: 1 }, KIND],
    ['an unknown proto', { ...OFFER, proto: 'sctp' }, PROTO],
    ['no proto', { ...OFFER, proto: undefined }, PROTO],
    ['an empty host', { ...OFFER, host: '' }, HOST],
    ['an over-long host', { ...OFFER, host: LONG_HOST }, HOST],
    ['a host with a space', { ...OFFER, host: 'my host' }, HOST],
    ['a number host', { ...OFFER, host: 2130706433 }, HOST],
    ['a port over 65535', { ...OFFER, port: 65536 }, PORT],
    ['a negative port', { ...OFFER, port: -1 }, PORT],
    ['a fractional port', { ...OFFER, port: 80.5 }, PORT],
    ['a string port', { ...OFFER, port: '8080' }, PORT],
    ['no port', { ...OFFER, port: undefined }, PORT],
    ['no name', { ...OFFER, name: undefined }, NAME],
    ['a number name', { ...OFFER, name: 42 }, NAME],
    ['an over-long name', { ...OFFER, name: 'n'.repeat(MAX_OFFER_NAME_CHARS + 1) }, NAME],
    ['an over-long name with control characters (the length first)', { ...OFFER, name: '\n'.repeat(MAX_OFFER_NAME_CHARS + 1) }, NAME],
    ['a name that rewrites the terminal line', { ...OFFER, name: '\r\x1b[2K fake prompt' }, UNPRINTABLE],
    ['a name with a newline', { ...OFFER, name: 'a\nb' }, UNPRINTABLE],
    ['a name with a right-to-left override', { ...OFFER, name: '\u202Eevil' }, UNPRINTABLE],
    ['a name with a control character at the end of the longest name', { ...OFFER, name: 'n'.repeat(MAX_OFFER_NAME_CHARS - 1) + '\t' }, UNPRINTABLE]
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseOffer(value), message)
  })

  it.each<[string, number]>([
    ['NUL', 0x00],
    ['tab', 0x09],
    ['carriage return', 0x0d],
    ['escape', 0x1b],
    ['unit separator (last C0)', 0x1f],
    ['DEL', 0x7f],
    ['first C1', 0x80],
    ['next line (NEL)', 0x85],
    ['CSI (C1)', 0x9b],
    ['last C1', 0x9f],
    ['Arabic letter mark', 0x061c],
    ['left-to-right mark', 0x200e],
    ['right-to-left mark', 0x200f],
    ['line separator', 0x2028],
    ['paragraph separator', 0x2029],
    ['left-to-right embedding', 0x202a],
    ['right-to-left embedding', 0x202b],
    ['pop directional formatting', 0x202c],
    ['left-to-right override', 0x202d],
    ['right-to-left override', 0x202e],
    ['left-to-right isolate', 0x2066],
    ['right-to-left isolate', 0x2067],
    ['first strong isolate', 0x2068],
    ['pop directional isolate', 0x2069]
  ])('refuses a name holding %s', (_, code) => {
    const char = String.fromCharCode(code)
    for (const name of [char, `web${char}`, `${char}web`, `w${char}eb`]) {
      expectProtocolError(() => parseOffer({ ...OFFER, name }), UNPRINTABLE)
    }
  })
})

describe('parseOpenHeader', () => {
  const SOCK = { type: 'sock', sock: 'connect', dst: { ip: '127.0.0.1', port: 80 }, reliable: true, mapping: 1 }

  it.each<[string, unknown, OpenHeader]>([
    ['a sock connect header', SOCK, { type: 'sock', sock: 'connect', src: undefined, dst: { ip: '127.0.0.1', port: 80 }, reliable: true, mapping: 1, lease: undefined }],
    ['an accept with src and dst', { type: 'sock', sock: 'accept', src: { ip: '::1', port: 5000 }, dst: { ip: '0.0.0.0', port: 8080 }, reliable: false, mapping: 0xffffffff },
      { type: 'sock', sock: 'accept', src: { ip: '::1', port: 5000 }, dst: { ip: '0.0.0.0', port: 8080 }, reliable: false, mapping: 0xffffffff, lease: undefined }],
    ['a bind without addresses', { type: 'sock', sock: 'bind', reliable: false, mapping: 7 },
      { type: 'sock', sock: 'bind', src: undefined, dst: undefined, reliable: false, mapping: 7, lease: undefined }],
    ['a bind with a lease', { type: 'sock', sock: 'bind', reliable: true, mapping: 3, lease: 40000 },
      { type: 'sock', sock: 'bind', src: undefined, dst: undefined, reliable: true, mapping: 3, lease: 40000 }],
    ['a lease of port 1', { type: 'sock', sock: 'bind', reliable: false, lease: 1 },
      { type: 'sock', sock: 'bind', src: undefined, dst: undefined, reliable: false, mapping: undefined, lease: 1 }],
    ['a lease of port 65535', { type: 'sock', sock: 'bind', reliable: false, lease: 65535 },
      { type: 'sock', sock: 'bind', src: undefined, dst: undefined, reliable: false, mapping: undefined, lease: 65535 }],
    ['an application channel', { type: 'chat', reliable: true },
      { type: 'chat', sock: undefined, src: undefined, dst: undefined, reliable: true, mapping: undefined, lease: undefined }],
    ['the longest type', { type: 't'.repeat(MAX_CHANNEL_TYPE_CHARS), reliable: false },
      { type: 't'.repeat(MAX_CHANNEL_TYPE_CHARS), sock: undefined, src: undefined, dst: undefined, reliable: false, mapping: undefined, lease: undefined }],
    ['addresses with extra fields', { type: 'sock', sock: 'connect', dst: { ip: 'h', port: 1, family: 4 }, reliable: true, extra: 1 },
      { type: 'sock', sock: 'connect', src: undefined, dst: { ip: 'h', port: 1 }, reliable: true, mapping: undefined, lease: undefined }]
  ])('accepts %s', (_, value, expected) => {
    const header = parseOpenHeader(value)
    expect(header).toStrictEqual(expected)
    expect(Object.keys(header).sort()).toEqual(['dst', 'lease', 'mapping', 'reliable', 'sock', 'src', 'type'])
  })

  const TYPE = 'open header type must be a short string'
  const RELIABLE = 'open header reliable must be a boolean'
  const SOCK_KIND = 'open header sock must be connect, bind or accept'
  const MAPPING = 'open header mapping must be a mapping id'
  const LEASE = 'open header lease must be a port from 1 to 65535'
  it.each<[string, unknown, string]>([
    ['null', null, 'open header must be an object'],
    ['an array', [SOCK], 'open header must be an object'],
    ['a number', 1, 'open header must be an object'],
    ['no type', { ...SOCK, type: undefined }, TYPE],
    ['an empty type', { ...SOCK, type: '' }, TYPE],
    ['an over-long type', { ...SOCK, type: 't'.repeat(MAX_CHANNEL_TYPE_CHARS + 1) }, TYPE],
    ['a number type', { ...SOCK, type: 1 }, TYPE],
    ['no reliable', { ...SOCK, reliable: undefined }, RELIABLE],
    ['a string reliable', { ...SOCK, reliable: 'true' }, RELIABLE],
    ['a number reliable', { ...SOCK, reliable: 1 }, RELIABLE],
    ['an unknown sock kind', { ...SOCK, sock: 'listen' }, SOCK_KIND],
    ['a null sock kind', { ...SOCK, sock: null }, SOCK_KIND],
    ['a sock channel without a sock kind', { ...SOCK, sock: undefined }, 'a sock channel needs sock: connect, bind or accept'],
    ['mapping 0', { ...SOCK, mapping: 0 }, MAPPING],
    ['a negative mapping', { ...SOCK, mapping: -1 }, MAPPING],
    ['a mapping over u32', { ...SOCK, mapping: 2 ** 32 }, MAPPING],
    ['a fractional mapping', { ...SOCK, mapping: 1.5 }, MAPPING],
    ['a string mapping', { ...SOCK, mapping: '1' }, MAPPING],
    ['a null mapping', { ...SOCK, mapping: null }, MAPPING],
    ['lease 0', { ...SOCK, lease: 0 }, LEASE],
    ['a negative lease', { ...SOCK, lease: -1 }, LEASE],
    ['a lease over 65535', { ...SOCK, lease: 65536 }, LEASE],
    ['a fractional lease', { ...SOCK, lease: 80.5 }, LEASE],
    ['a NaN lease', { ...SOCK, lease: Number.NaN }, LEASE],
    ['an infinite lease', { ...SOCK, lease: Infinity }, LEASE],
    ['a string lease', { ...SOCK, lease: '8080' }, LEASE],
    ['a null lease', { ...SOCK, lease: null }, LEASE],
    ['a boolean lease', { ...SOCK, lease: true }, LEASE],
    ['an address as lease', { ...SOCK, lease: { ip: '0.0.0.0', port: 8080 } }, LEASE],
    ['a dst that is a string', { ...SOCK, dst: '127.0.0.1:80' }, 'dst must be { ip, port }'],
    ['a dst that is null', { ...SOCK, dst: null }, 'dst must be { ip, port }'],
    ['a dst that is an array', { ...SOCK, dst: ['127.0.0.1', 80] }, 'dst must be { ip, port }'],
    ['a dst port over 65535', { ...SOCK, dst: { ip: '127.0.0.1', port: 70000 } }, 'dst must be { ip, port }'],
    ['a dst without a port', { ...SOCK, dst: { ip: '127.0.0.1' } }, 'dst must be { ip, port }'],
    ['a dst with an over-long ip', { ...SOCK, dst: { ip: LONG_HOST, port: 80 } }, 'dst must be { ip, port }'],
    ['a src with a bad ip', { ...SOCK, src: { ip: 'a b', port: 80 } }, 'src must be { ip, port }'],
    ['a src with a string port', { ...SOCK, src: { ip: '::1', port: '80' } }, 'src must be { ip, port }']
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseOpenHeader(value), message)
  })
})

describe('parseReply', () => {
  it.each<[string, unknown, Reply]>([
    ['an empty reply', {}, { bound: undefined }],
    ['a bound address', { bound: { ip: '0.0.0.0', port: 40000 } }, { bound: { ip: '0.0.0.0', port: 40000 } }],
    ['an error', { error: { code: 'E_DENIED', message: 'no' } }, { error: { code: 'E_DENIED', message: 'no' } }],
    ['an error and a bound address (the error wins)', { error: { code: 'E_BIND_FAILED', message: 'in use' }, bound: { ip: 'h', port: 1 } },
      { error: { code: 'E_BIND_FAILED', message: 'in use' } }],
    ['an error with an unknown code', { error: { code: 'E_NOPE', message: 'x' } }, { error: { code: 'E_CHANNEL_PROTOCOL', message: 'x' } }],
    ['an error that is not an object', { error: 'denied' }, { error: { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' } }],
    ['an error that is null', { error: null }, { error: { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' } }]
  ])('reads %s', (_, value, expected) => {
    expect(parseReply(value)).toEqual(expected)
  })

  it.each<[string, unknown, string]>([
    ['null', null, 'reply must be an object'],
    ['an array', [{}], 'reply must be an object'],
    ['a string', 'ok', 'reply must be an object'],
    ['a bound address that is a string', { bound: '0.0.0.0:1' }, 'bound must be { ip, port }'],
    ['a bound address with port -1', { bound: { ip: '0.0.0.0', port: -1 } }, 'bound must be { ip, port }'],
    ['a bound address with an empty ip', { bound: { ip: '', port: 1 } }, 'bound must be { ip, port }']
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseReply(value), message)
  })
})

describe('parseError', () => {
  it.each<[string, unknown, { code: string, message: string }]>([
    ['a known code and message', { code: 'E_KILLED', message: 'killed by A' }, { code: 'E_KILLED', message: 'killed by A' }],
    ['a known code without a message', { code: 'E_CONNECT_REFUSED' }, { code: 'E_CONNECT_REFUSED', message: ERROR_CODES.E_CONNECT_REFUSED }],
    ['a known code with a number message', { code: 'E_DENIED', message: 42 }, { code: 'E_DENIED', message: ERROR_CODES.E_DENIED }],
    ['an unknown code', { code: 'E_WHATEVER', message: 'm' }, { code: 'E_CHANNEL_PROTOCOL', message: 'm' }],
    ['a lower-case code', { code: 'e_denied', message: 'm' }, { code: 'E_CHANNEL_PROTOCOL', message: 'm' }],
    ['a number code', { code: 7, message: 'm' }, { code: 'E_CHANNEL_PROTOCOL', message: 'm' }],
    ['no code and no message', {}, { code: 'E_CHANNEL_PROTOCOL', message: ERROR_CODES.E_CHANNEL_PROTOCOL }],
    ['a message over 500 characters', { code: 'E_DENIED', message: 'm'.repeat(501) }, { code: 'E_DENIED', message: 'm'.repeat(500) }],
    ['null', null, { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' }],
    ['a string', 'E_DENIED', { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' }],
    ['an array', [{ code: 'E_DENIED' }], { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' }],
    ['an inherited property name as code', { code: 'toString', message: 'x' }, { code: 'E_CHANNEL_PROTOCOL', message: 'x' }],
    ['constructor as code', { code: 'constructor' }, { code: 'E_CHANNEL_PROTOCOL', message: ERROR_CODES.E_CHANNEL_PROTOCOL }]
  ])('reads %s', (_, value, expected) => {
    expect(parseError(value)).toEqual(expected)
  })
})

describe('describeOffer', () => {
  it.each<[Offer, string]>([
    [{ kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 8080, name: 'web' }, 'connect/tcp 127.0.0.1:8080 "web"'],
    [{ kind: 'bind', proto: 'udp', host: '0.0.0.0', port: 0, name: '' }, 'bind/udp 0.0.0.0:0'],
    [{ kind: 'accept', proto: 'tcp', host: 'example.com', port: 22, name: 'ssh box' }, 'accept/tcp example.com:22 "ssh box"'],
    [{ kind: 'connect', proto: 'udp', host: '::1', port: 53, name: 'dns' }, 'connect/udp [::1]:53 "dns"'],
    [{ kind: 'connect', proto: 'tcp', host: 'fe80::1%eth0', port: 80, name: '' }, 'connect/tcp [fe80::1%eth0]:80'],
    [{ kind: 'bind', proto: 'tcp', host: '2001:db8:0:0:0:0:0:1', port: 8080, name: '' }, 'bind/tcp [2001:db8:0:0:0:0:0:1]:8080'],
    [{ kind: 'file', proto: 'tcp', host: '', port: 0, name: 'a.txt', size: 512 }, 'file "a.txt", 512 bytes'],
    [{ kind: 'file', proto: 'tcp', host: '', port: 0, name: 'big.iso', size: 2 * 1024 * 1024 }, 'file "big.iso", 2.0 MiB (2097152 bytes)'],
    [{ kind: 'service', proto: 'tcp', host: '', port: 0, name: '', service: 'web' }, 'service/tcp web'],
    [{ kind: 'service', proto: 'udp', host: '', port: 0, name: 'my dns', service: 'dns' }, 'service/udp dns "my dns"'],
    [{ kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 8080, name: '', allowFrom: ['10.0.0.0/8'] }, 'bind/tcp 0.0.0.0:8080 from 10.0.0.0/8'],
    [{ kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 8080, name: 'web', allowFrom: ['10.0.0.0/8', '::1/128'] }, 'bind/tcp 0.0.0.0:8080 from 10.0.0.0/8, ::1/128 "web"'],
    [{ kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 8080, name: '', allowFrom: [] }, 'bind/tcp 0.0.0.0:8080 from nobody'],
    [{ kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 2222, name: '', service: 'ssh' }, 'accept/tcp 127.0.0.1:2222 to service ssh']
  ])('describes %o as %s', (offer, expected) => {
    expect(describeOffer(offer)).toBe(expected)
  })
})

describe('HELLO features', () => {
  const HELLO = { protocol: 'starsock-mux', version: 1, window: 4096 }

  it('this version has ack and allow-from, and takes service offers', () => {
    expect(FEATURES).toEqual(['ack', 'allow-from'])
    expect(OFFER_KINDS).toContain('service')
  })

  it.each<[string, unknown, string[] | undefined]>([
    ['none (an older peer)', undefined, undefined],
    ['both', ['ack', 'allow-from'], ['ack', 'allow-from']],
    ['unknown ones (left out)', ['ack', 'teleport', 'x'.repeat(100)], ['ack']],
    ['an empty list', [], []]
  ])('reads %s', (_, features, expected) => {
    const hello = parseHello({ ...HELLO, ...(features === undefined ? {} : { features }) })
    expect(hello.features).toEqual(expected)
    expect(hasFeature(hello, 'ack')).toBe(expected?.includes('ack') === true)
  })

  it.each<[string, unknown]>([
    ['a string', 'ack'],
    ['a list with a number', ['ack', 1]],
    ['a list with null', [null]],
    ['a list too long', Array.from({ length: 33 }, () => 'ack')]
  ])('refuses features that are %s', (_, features) => {
    expectProtocolError(() => parseHello({ ...HELLO, features }), 'HELLO features must be a list of at most 32 strings')
  })

  it('an older peer (no offers) does not take service offers', () => {
    expect(understandsOffer(parseHello(HELLO), 'service')).toBe(false)
    expect(understandsOffer(parseHello({ ...HELLO, interim: true }), 'service')).toBe(false)
    expect(understandsOffer(parseHello({ ...HELLO, offers: OFFER_KINDS }), 'service')).toBe(true)
  })
})

describe('service offers, accept for a service, allowFrom', () => {
  const SERVICE = 'offer service must be a name of letters, digits, _ . - (at most 64, a letter or digit first)'
  const ALLOW = `offer allowFrom must be a list of at most ${MAX_OFFER_ALLOW_FROM_ENTRIES} addresses or CIDRs`

  it('the offer allowlist bound is the allowlist parser\'s', () => {
    expect(MAX_OFFER_ALLOW_FROM_ENTRIES).toBe(MAX_ALLOW_FROM_ENTRIES)
  })

  it.each<[string, unknown, Offer]>([
    ['a service offer (host and port ignored)', { kind: 'service', proto: 'tcp', host: '10.0.0.1', port: 22, name: 'n', service: 'web' }, { kind: 'service', proto: 'tcp', host: '', port: 0, name: 'n', service: 'web' }],
    ['a UDP service of the longest name', { kind: 'service', proto: 'udp', name: '', service: 'a'.repeat(64) }, { kind: 'service', proto: 'udp', host: '', port: 0, name: '', service: 'a'.repeat(64) }],
    ['an accept for a service', { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 2222, name: '', service: 'ssh' }, { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 2222, name: '', service: 'ssh' }],
    ['a bind with allowFrom', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: ['10.0.0.0/8', '::1', '::ffff:127.0.0.1/128'] },
      { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: ['10.0.0.0/8', '::1', '::ffff:127.0.0.1/128'] }],
    ['a bind with an empty allowFrom (nobody)', { kind: 'bind', proto: 'udp', host: '0.0.0.0', port: 0, name: '', allowFrom: [] }, { kind: 'bind', proto: 'udp', host: '0.0.0.0', port: 0, name: '', allowFrom: [] }],
    ['a bind with the most allowFrom entries', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: Array.from({ length: 64 }, (_, i) => `10.0.0.${i}`) },
      { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: Array.from({ length: 64 }, (_, i) => `10.0.0.${i}`) }]
  ])('accepts %s', (_, value, expected) => {
    expect(parseOffer(value)).toEqual(expected)
  })

  it.each<[string, unknown, string]>([
    ['a service offer without a service', { kind: 'service', proto: 'tcp', name: '' }, SERVICE],
    ['a service name with a space', { kind: 'service', proto: 'tcp', name: '', service: 'my web' }, SERVICE],
    ['a service name starting with a dot', { kind: 'service', proto: 'tcp', name: '', service: '.web' }, SERVICE],
    ['a service name of 65 characters', { kind: 'service', proto: 'tcp', name: '', service: 'a'.repeat(65) }, SERVICE],
    ['a service name with a newline', { kind: 'service', proto: 'tcp', name: '', service: 'web\nAllow? y' }, SERVICE],
    ['a number service', { kind: 'service', proto: 'tcp', name: '', service: 80 }, SERVICE],
    ['a service offer without a proto', { kind: 'service', name: '', service: 'web' }, 'offer proto must be tcp or udp'],
    ['a service offer with a control character in its name', { kind: 'service', proto: 'tcp', name: 'a\u001b[2J', service: 'web' }, 'offer name must not hold control or direction characters'],
    ['a connect naming a service', { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 1, name: '', service: 'web' }, 'only service and accept offers name a service'],
    ['an accept with a bad service', { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 1, name: '', service: '' }, SERVICE],
    ['a connect with allowFrom', { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 1, name: '', allowFrom: [] }, 'only bind offers carry allowFrom'],
    ['too many allowFrom entries', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: Array.from({ length: 65 }, () => '10.0.0.1') }, ALLOW],
    ['an allowFrom that is a string', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: '10.0.0.0/8' }, ALLOW],
    ['an allowFrom with a host name', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: ['example.com'] }, ALLOW],
    ['an allowFrom with a number', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: [10] }, ALLOW],
    ['an allowFrom with a space', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: ['10.0.0.0 /8'] }, ALLOW],
    ['an allowFrom entry of 4000 characters', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '', allowFrom: ['1'.repeat(4000)] }, ALLOW]
  ])('refuses %s', (_, value, message) => {
    expectProtocolError(() => parseOffer(value), message)
  })

  it('isAllowFromList checks only the shape (the binding peer parses for real)', () => {
    expect(isAllowFromList(['999.1.2.3/99'])).toBe(true)
    expect(isAllowFromList(['10.0.0.0/8', 'fe80::1'])).toBe(true)
    expect(isAllowFromList(['*'])).toBe(false)
    expect(isAllowFromList(null)).toBe(false)
  })
})

describe('parseReply addresses', () => {
  it('reads the addresses of a wildcard bind', () => {
    const addresses = [{ ip: '192.168.1.5', port: 8080 }, { ip: '127.0.0.1', port: 8080 }]
    expect(parseReply({ bound: { ip: '0.0.0.0', port: 8080 }, addresses })).toEqual({ bound: { ip: '0.0.0.0', port: 8080 }, addresses })
  })

  it.each<[string, unknown]>([
    ['a string', '127.0.0.1:1'],
    ['too many', Array.from({ length: 65 }, () => ({ ip: '127.0.0.1', port: 1 }))]
  ])('refuses addresses that are %s', (_, addresses) => {
    expectProtocolError(() => parseReply({ addresses }), `addresses must be a list of at most ${MAX_REPLY_ADDRESSES} { ip, port }`)
  })

  it('refuses an address that is not { ip, port }', () => {
    expectProtocolError(() => parseReply({ addresses: [{ ip: 'a b', port: 1 }] }), 'an address must be { ip, port }')
  })
})

describe('allowFrom entries checked before they are offered (browser-safe)', () => {
  const good = ['127.0.0.1', '0.0.0.0/0', '10.0.0.0/8', '255.255.255.255/32', '::', '::1', '::1/128', '::/0', 'fe80::1/10', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '::ffff:127.0.0.1', '::ffff:10.0.0.0/104', '64:ff9b::192.0.2.33', 'ABCD:ef01::', '::1.2.3.4', '1::1.2.3.4']
  const bad = ['999.1.2.3/8', '256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '10.0.0.0/33', '::1/129', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', ':::', '1:2:3:4:5:6:7:1.2.3.4', '::ffff:1.2.3', 'g::1', '', '/8', '127.0.0.1/', 'example.com', ' 127.0.0.1', '1.2.3.4::', '1:2:1.2.3.4::', '1.2.3.4::/96']

  it('agrees with the binding peer\'s parser (Node\'s) on every entry', () => {
    for (const entry of good) {
      expect([entry, allowFromEntryProblem(entry)]).toEqual([entry, undefined])
      expect(() => parseAllowFrom([entry])).not.toThrow()
    }
    for (const entry of bad) {
      expect([entry, typeof allowFromEntryProblem(entry)]).toEqual([entry, 'string'])
      expect(() => parseAllowFrom([entry])).toThrow(TypeError)
    }
    // A zone id: Node would take it, the wire never carries it (isAllowFromList), so it fails here.
    expect(allowFromEntryProblem('::1%eth0')).toBeDefined()
    expect(isAllowFromList(['::1%eth0'])).toBe(false)
  })

  it('checkAllowFromList names the bad entry, counts entries, and copies the list', () => {
    expect(() => checkAllowFromList(['10.0.0.0/8', '999.1.2.3/8'])).toThrow(/allowFrom entry "999\.1\.2\.3\/8" is not an IPv4 or IPv6 address/)
    expect(() => checkAllowFromList(['10.0.0.0/33'])).toThrow('allowFrom entry "10.0.0.0/33" has prefix /33, over /32')
    expect(() => checkAllowFromList(Array.from({ length: 65 }, () => '10.0.0.1'))).toThrow('allowFrom has 65 entries; at most 64')
    expect(() => checkAllowFromList('10.0.0.1')).toThrow(TypeError)
    expect(() => checkAllowFromList([7])).toThrow(TypeError)
    const list = ['::1']
    expect(checkAllowFromList(list)).not.toBe(list)
  })
})
