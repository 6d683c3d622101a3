import { fileURLToPath } from 'node:url'
import { homedir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { canonicalEntry, ConfigError, loadConfig, parseConfig, parseMappingEntry } from '../../cli/up/config.ts'

const EXAMPLE = fileURLToPath(new URL('../../docs/agent.example.toml', import.meta.url))
const PEER = '12D3KooWBh5Yo5c1ZGFTkJXZgcmoDF7DPjJJQYHr7PytZGpmW3M6'
const OTHER = '12D3KooWGzBQxNcPz8uRuXQt9dUuXyqRgrN8iUiMmGqJbXRcZ5Ue'

/** The issue's own example, verbatim but for real peer ids. */
const ISSUE_EXAMPLE = `server = "http://127.0.0.1:9090"      # or env STARSOCK_SERVER
key = "./agent.key"                   # identity file
allow = ["connect/tcp:127.0.0.1:5432", "bind/tcp:*:8000-8100"]   # what peers may ask of this agent

[services]                            # names this agent offers; a peer asks by name, this side picks the target
web = "127.0.0.1:3000"
dns = "udp:127.0.0.1:53"

[[forward]]                           # a local port reaches something through a peer
peer = "${PEER}"
listen = "127.0.0.1:15432"
to = "127.0.0.1:5432"                 # or: service = "db"
allow_from = ["127.0.0.1/32"]         # who may connect to the local port (default: loopback only)

[[forward]]
peer = "${PEER}"
proto = "udp"                         # "tcp" (default) or "udp"
listen = "127.0.0.1:5353"
to = "127.0.0.1:53"

[[expose]]                            # a peer listens and hands each connection to us
peer = "${PEER}"
port = 8080
to = "127.0.0.1:3000"
allow_from = ["0.0.0.0/0"]            # checked on the binding peer: source-host allowlist

[[socks]]                             # dynamic forward: a SOCKS5 proxy whose CONNECTs the peer's rules decide
peer = "${PEER}"
listen = "127.0.0.1:1080"
`

/** The one-line error `text` gives. */
function errorOf (text: string, env: Record<string, string> = {}): string {
  try {
    parseConfig(text, 'agent.toml', env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    const message = (err as Error).message
    expect(message).not.toContain('\n')
    return message
  }
  throw new Error('expected a ConfigError')
}

const SERVER = 'server = "http://127.0.0.1:9090"\n'

describe('starsock up config', () => {
  it('loads the documented example (docs/agent.example.toml)', async () => {
    const c = await loadConfig(EXAMPLE)
    expect(c.server).toBe('http://127.0.0.1:9090')
    expect(c.key).toBe(path.join(path.dirname(EXAMPLE), 'agent.key'))
    expect(c.mappings.map((m) => m.kind)).toEqual(['forward', 'forward', 'expose', 'socks'])
    expect(c.mappings.map((m) => m.id)).toEqual(['forward/tcp:127.0.0.1:15432', 'dns', `expose/tcp:${PEER.slice(-8)}:0.0.0.0:8080`, 'socks:127.0.0.1:1080'])
    expect(c.services).toEqual({ web: { to: { ip: '127.0.0.1', port: 3000 }, proto: 'tcp', ask: false }, dns: { to: { ip: '127.0.0.1', port: 53 }, proto: 'udp', ask: false } })
    expect(c.rules.map((r) => r.text)).toEqual(['connect/tcp:127.0.0.1:5432', 'bind/tcp:*:8000-8100', 'service:web', 'service:dns'])
  })

  it('loads the issue\'s example with its defaults', () => {
    const c = parseConfig(ISSUE_EXAMPLE, '/etc/starsock/agent.toml')
    expect(c.key).toBe('/etc/starsock/agent.key')
    expect(c.timeoutMs).toBe(60_000)
    expect(c.leaseMs).toBe(30_000)
    expect(c.insecure).toBe(false)
    const [fwd, udp, expose, socks] = c.mappings
    expect(fwd).toMatchObject({ kind: 'forward', proto: 'tcp', listen: { ip: '127.0.0.1', port: 15432 }, to: { ip: '127.0.0.1', port: 5432 }, allowFrom: ['127.0.0.1/32'] })
    expect(udp).toMatchObject({ kind: 'forward', proto: 'udp', allowFrom: ['127.0.0.0/8', '::1/128'] })
    expect(expose).toMatchObject({ kind: 'expose', port: 8080, bindHost: '0.0.0.0', allowFrom: ['0.0.0.0/0'] })
    expect(socks).toMatchObject({ kind: 'socks', listen: { ip: '127.0.0.1', port: 1080 }, allowFrom: ['127.0.0.0/8', '::1/128'] })
  })

  it('takes server and token from the environment when the file has none', () => {
    const c = parseConfig(ISSUE_EXAMPLE.replace(/^server = .*\n/, ''), 'agent.toml', { STARSOCK_SERVER: 'http://10.0.0.1:9090', STARSOCK_TOKEN: 'sekrit' })
    expect(c.server).toBe('http://10.0.0.1:9090')
    expect(c.token).toBe('sekrit')
  })

  it('turns services into rules: everyone, listed peers only, or a person asked', () => {
    const c = parseConfig(SERVER + `[services]\nweb = "127.0.0.1:3000"\nadmin = { to = "127.0.0.1:9000", peers = ["${PEER}", "${OTHER}"] }\nshell = { to = "127.0.0.1:22", ask = true }\n`, 'agent.toml')
    expect(c.rules.map((r) => r.text)).toEqual(['service:web', `service:admin@${PEER}`, `service:admin@${OTHER}`])
    expect(c.services.shell).toEqual({ to: { ip: '127.0.0.1', port: 22 }, proto: 'tcp', ask: true })
  })

  it.each([
    ['a syntax error', SERVER + 'allow = [\n"connect/tcp:a:1"\nforward = 1\n', /^agent\.toml:4: syntax: not valid TOML/],
    ['an unknown top-level key', SERVER + 'timeout_ms = 5\nallwo = []\n', /^agent\.toml:3: allwo: unknown key: a typo\? known keys: server, /],
    ['an unknown key in a mapping', SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 1\nto = "a:1"\n\n[[forward]]\npeer = "${PEER}"\nlisten = 2\nto = "a:1"\nallow-from = []\n`, /^agent\.toml:11: forward\[1\]\.allow-from: unknown key: a typo\? known keys: name, peer, listen, to, service, proto, allow_from$/],
    ['a wrong type', SERVER + 'lease_ms = "30s"\n', /^agent\.toml:2: lease_ms: must be a number$/],
    ['a bad listen address', SERVER + `[[forward]]\npeer = "${PEER}"\nto = "a:1"\nlisten = "127.0.0.1:99999"\n`, /^agent\.toml:5: forward\[0\]\.listen: not \[HOST:\]PORT/],
    ['a bad peer id', SERVER + `\n[[expose]]\npeer = "12D3KooW0OIl"\nport = 80\nto = "127.0.0.1:80"\n`, /^agent\.toml:4: expose\[0\]\.peer: not a peer id/],
    ['both to and service', SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 1\nto = "a:1"\nservice = "web"\n`, /^agent\.toml:6: forward\[0\]\.service: give to or service, not both$/],
    ['neither to nor service', SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 1\n`, /^agent\.toml:2: forward\[0\]: needs to \(HOST:PORT\) or service/],
    ['an accept without a service', SERVER + `[[accept]]\npeer = "${PEER}"\nlisten = 1\n`, /^agent\.toml:2: accept\[0\]: needs service \(a name the peer offers\)$/],
    ['an accept to an address', SERVER + `[[accept]]\npeer = "${PEER}"\nlisten = 1\nto = "127.0.0.1:22"\n`, /^agent\.toml:5: accept\[0\]\.to: an accept reaches a service the peer names/],
    ['a bad CIDR', SERVER + `[[socks]]\npeer = "${PEER}"\nlisten = 1080\nallow_from = [\n  "10.0.0.0/8",\n  "10.0.0.0/33",\n]\n`, /^agent\.toml:7: socks\[0\]\.allow_from\[1\]: allow_from entry "10\.0\.0\.0\/33": prefix \/33 is over \/32$/],
    ['a duplicate listen address', SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 1080\nto = "a:1"\n\n[[socks]]\npeer = "${PEER}"\nlisten = "127.0.0.1:1080"\n`, /^agent\.toml:9: socks\[0\]\.listen: tcp 127\.0\.0\.1:1080 is already listened on by forward\[0\]$/],
    ['a duplicate name', SERVER + `[[forward]]\nname = "x"\npeer = "${PEER}"\nlisten = 1\nto = "a:1"\n[[expose]]\nname = "x"\npeer = "${PEER}"\nport = 1\nto = "a:1"\n`, /^agent\.toml:8: expose\[0\]\.name: id "x" is already used by forward\[0\]/],
    ['a missing server', 'key = "k"\n', /^agent\.toml:1: server: missing: set server = "http:\/\/HOST:PORT" here, or STARSOCK_SERVER$/],
    ['a missing field', SERVER + `[[expose]]\npeer = "${PEER}"\nto = "a:1"\n`, /^agent\.toml:2: expose\[0\]\.port: missing \(required\)$/],
    ['a bad rule', SERVER + 'allow = [\n  "connect/tcp:127.0.0.1:22",\n  "conect/tcp:x:1",\n]\n', /^agent\.toml:4: allow\[1\]: rule "conect\/tcp:x:1" is not KIND/],
    ['a bad service name', SERVER + '[services]\n"-web" = "127.0.0.1:1"\n', /^agent\.toml:3: services\.-web: name: not a service name/],
    ['a bad service target', SERVER + '[services]\nweb = "udp:127.0.0.1"\n', /^agent\.toml:3: services\.web: not \[udp:\]HOST:PORT/],
    ['a control API off loopback', SERVER + '[control]\nlisten = "0.0.0.0:4040"\n', /^agent\.toml:3: control\.listen: must be a loopback address/],
    ['a bad proto', SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 1\nto = "a:1"\nproto = "sctp"\n`, /^agent\.toml:6: forward\[0\]\.proto: must be "tcp" or "udp"$/]
  ])('gives one line with the line and the field for %s', (_what, text, expected) => {
    expect(errorOf(text)).toMatch(expected)
  })

  it('a UDP and a TCP mapping may share a port number', () => {
    const c = parseConfig(SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = 53\nto = "a:53"\n[[forward]]\npeer = "${PEER}"\nlisten = 53\nproto = "udp"\nto = "a:53"\n`, 'agent.toml')
    expect(c.mappings.map((m) => m.id)).toEqual(['forward/tcp:127.0.0.1:53', 'forward/udp:127.0.0.1:53'])
  })

  it('parseMappingEntry checks a JSON body with the same schema, one line per error', () => {
    const e = parseMappingEntry('forward', { peer: PEER, listen: '127.0.0.1:8080', service: 'web' })
    expect(e).toEqual({ kind: 'forward', id: 'forward/tcp:127.0.0.1:8080', peer: PEER, listen: { ip: '127.0.0.1', port: 8080 }, service: 'web', proto: 'tcp', allowFrom: ['127.0.0.0/8', '::1/128'] })
    expect(() => parseMappingEntry('forward', { peer: PEER, listen: 'x', to: 'a:1' })).toThrow(/^listen: not \[HOST:\]PORT/)
    expect(() => parseMappingEntry('socks', { peer: PEER, listen: 1, usres: [] })).toThrow(/^usres: unknown key/)
    expect(() => parseMappingEntry('socks', { peer: PEER, listen: 1, users: [{ user: 'a', pass: '' }] })).toThrow(/^users\[0\]\.pass: must be 1 to 255 characters$/)
    expect(() => parseMappingEntry('nope' as 'forward', {})).toThrow(/^kind: not one of forward, expose, socks, accept$/)
    expect(() => parseMappingEntry('expose', null)).toThrow(ConfigError)
    expect(() => parseMappingEntry('expose', { peer: PEER, port: 80, to: 'a:1', allow_from: Array.from({ length: 65 }, () => '10.0.0.1') })).toThrow(/^allow_from: allow_from has 65 entries; at most 64$/)
  })

  it('canonicalEntry is the same for the same entry, whatever the key order', () => {
    const a = parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a:1', allow_from: ['10.0.0.0/8'] })
    const b = parseMappingEntry('forward', { allow_from: ['10.0.0.0/8'], to: 'a:1', listen: '127.0.0.1:1', peer: PEER })
    expect(canonicalEntry(a)).toBe(canonicalEntry(b))
    expect(canonicalEntry(a)).not.toBe(canonicalEntry(parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a:2', allow_from: ['10.0.0.0/8'] })))
  })

  it('abuse is one line too: deep nesting, too many mappings, huge strings', () => {
    const deep = 100_000
    expect(errorOf(SERVER + 'a = ' + '['.repeat(deep) + ']'.repeat(deep) + '\n')).toMatch(/^agent\.toml:\d+: syntax: not valid TOML/)
    const many = SERVER + Array.from({ length: 257 }, (_, i) => `[[forward]]\npeer = "${PEER}"\nlisten = ${i + 1}\nto = "a:1"\n`).join('')
    expect(errorOf(many)).toBe('agent.toml:1: config: 257 mappings; at most 256')
    expect(() => parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a'.repeat(60_000) + ':1' })).toThrow(/^to: not HOST:PORT/)
    expect(() => parseMappingEntry('forward', { peer: PEER.repeat(100), listen: 1, to: 'a:1' })).toThrow(/^peer: not a peer id/)
  })

  it('timers are bounded (over 2^31-1 ms a timer fires at once) and say so in plain words', () => {
    expect(errorOf(SERVER + 'timeout_ms = 2147483648\n')).toBe('agent.toml:2: timeout_ms: must be a whole number of milliseconds, 1 to 2147483647 (about 24.8 days)')
    expect(errorOf(SERVER + 'lease_ms = 1e12\n')).toBe('agent.toml:2: lease_ms: must be a whole number of milliseconds, 0 to 2147483647 (about 24.8 days)')
    expect(errorOf(SERVER + 'ask_timeout_ms = 1500.5\n')).toBe('agent.toml:2: ask_timeout_ms: must be a whole number of milliseconds, 1000 to 2147483647 (about 24.8 days)')
    expect(parseConfig(SERVER + 'timeout_ms = 2147483647\n', 'agent.toml').timeoutMs).toBe(2_147_483_647)
  })

  it('an error line escapes control characters (a key cannot drive the terminal)', () => {
    const message = errorOf(SERVER + '"x\\u001b[2Jy" = 1\n')
    expect(message).not.toMatch(/[\u0000-\u001f]/)
    expect(message).toContain('x\\u001b[2Jy')
  })

  it('canonicalEntry ignores the order and spelling of allow_from and the order of users (no restart on reload)', () => {
    const a = parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a:1', allow_from: ['10.0.0.0/8', '127.0.0.1', '::1'] })
    const b = parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a:1', allow_from: ['0:0:0:0:0:0:0:1/128', '127.0.0.1/32', '10.0.0.0/8', '127.0.0.1'] })
    expect(canonicalEntry(a)).toBe(canonicalEntry(b))
    expect(canonicalEntry(a)).not.toBe(canonicalEntry(parseMappingEntry('forward', { peer: PEER, listen: 1, to: 'a:1', allow_from: ['10.0.0.0/16', '127.0.0.1', '::1'] })))
    const users = [{ user: 'a', pass: 'p1' }, { user: 'b', pass: 'p2' }]
    expect(canonicalEntry(parseMappingEntry('socks', { peer: PEER, listen: 1, users }))).toBe(canonicalEntry(parseMappingEntry('socks', { peer: PEER, listen: 1, users: [...users].reverse() })))
    expect(canonicalEntry(parseMappingEntry('socks', { peer: PEER, listen: 1, users }))).not.toBe(canonicalEntry(parseMappingEntry('socks', { peer: PEER, listen: 1, users: [{ user: 'a', pass: 'p3' }, users[1]] })))
  })

  it('a wildcard listen clashes with the addresses of its family on its port (:: with all); localhost is 127.0.0.1', () => {
    const two = (a: string, b: string): string => SERVER + `[[forward]]\npeer = "${PEER}"\nlisten = "${a}"\nto = "a:1"\n[[socks]]\npeer = "${PEER}"\nlisten = "${b}"\n`
    expect(errorOf(two('0.0.0.0:8080', '127.0.0.1:8080'))).toMatch(/^agent\.toml:\d+: socks\[0\]\.listen: tcp 127\.0\.0\.1:8080 is already listened on by forward\[0\]/)
    expect(errorOf(two('127.0.0.1:8080', '[::]:8080'))).toMatch(/socks\[0\]\.listen: tcp \[::\]:8080 is already listened on by forward\[0\] \(127\.0\.0\.1:8080: a wildcard address takes the port on every address\)$/)
    expect(errorOf(two('[::0]:8080', '0.0.0.0:8080'))).toMatch(/socks\[0\]\.listen: tcp 0\.0\.0\.0:8080 is already listened on by forward\[0\] \(\[::\]:8080: /)
    expect(errorOf(two('[0:0:0:0:0:0:0:1]:8080', '[::1]:8080'))).toMatch(/socks\[0\]\.listen: tcp \[::1\]:8080 is already listened on by forward\[0\]$/)
    expect(errorOf(two('[::1]:8080', '[0::0]:8080'))).toMatch(/socks\[0\]\.listen: tcp \[::\]:8080 is already listened on by forward\[0\] \(\[::1\]:8080: /)
    expect(errorOf(two('0.0.0.0:8080', '0.0.0.0:8080'))).toMatch(/socks\[0\]\.listen: tcp 0\.0\.0\.0:8080 is already listened on by forward\[0\]$/)
    // An IPv4 wildcard does not take IPv6 addresses (Linux).
    expect(parseConfig(two('0.0.0.0:8080', '[::1]:8080'), 'agent.toml').mappings).toHaveLength(2)
    expect(parseConfig(two('[fe80::1]:8080', '0.0.0.0:8080'), 'agent.toml').mappings).toHaveLength(2)
    expect(errorOf(two('localhost:8080', '127.0.0.1:8080'))).toMatch(/socks\[0\]\.listen: tcp 127\.0\.0\.1:8080 is already listened on/)
    expect(parseConfig(two('127.0.0.1:8080', '127.0.0.2:8080'), 'agent.toml').mappings).toHaveLength(2)
  })

  it('[udp_relay] relay_ips: IP addresses only, at most 16, as relayIps', () => {
    const c = parseConfig(SERVER + '[udp_relay]\nlocal = "127.0.0.1:40000"\nrelay_ips = ["192.0.2.7", "2001:db8::7"]\n', 'agent.toml')
    expect(c.udpRelay).toEqual({ local: { ip: '127.0.0.1', port: 40000 }, relayIps: ['192.0.2.7', '2001:db8::7'] })
    expect(parseConfig(SERVER + '[udp_relay]\nrelay_ips = ["192.0.2.7"]\n', 'agent.toml').udpRelay).toEqual({ relayIps: ['192.0.2.7'] })
    expect(errorOf(SERVER + '[udp_relay]\nrelay_ips = ["192.0.2.7", "relay.example.com"]\n')).toMatch(/^agent\.toml:3: udp_relay\.relay_ips\[1\]: not an IP address \(e\.g\. 192\.0\.2\.7 or 2001:db8::7\)$/)
    expect(errorOf(SERVER + '[udp_relay]\nrelay_ips = "192.0.2.7"\n')).toMatch(/^agent\.toml:3: udp_relay\.relay_ips: [^\n]+$/)
    const many = Array.from({ length: 17 }, (_, i) => `"10.0.0.${i}"`).join(', ')
    expect(errorOf(SERVER + `[udp_relay]\nrelay_ips = [${many}]\n`)).toMatch(/^agent\.toml:3: udp_relay\.relay_ips: at most 16 addresses$/)
  })

  it('key = "~/..." is in the home folder; a UTF-8 BOM at the start is skipped', () => {
    const c = parseConfig('\ufeff' + SERVER + 'key = "~/starsock/agent.key"\n', '/etc/starsock/agent.toml')
    expect(c.key).toBe(path.join(homedir(), 'starsock', 'agent.key'))
    expect(parseConfig(SERVER + 'key = "k"\n', '/etc/starsock/agent.toml').key).toBe('/etc/starsock/k')
  })

  it('a file that cannot be read is one line too', async () => {
    await expect(loadConfig('/nonexistent/agent.toml')).rejects.toThrow(/^\/nonexistent\/agent\.toml: cannot read it: ENOENT/)
  })
})
