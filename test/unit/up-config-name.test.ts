import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../cli/up/config.ts'

const SERVER = 'server = "http://127.0.0.1:9090"\n'

describe('starsock up: the display name in the config', () => {
  it('takes a name, normalised (NFC, trimmed); none when absent or empty', () => {
    expect(parseConfig(SERVER + `name = "  ${'Caf\u0065\u0301'} box "\n`, 'agent.toml').name).toBe('Caf\u00e9 box')
    expect(parseConfig(SERVER, 'agent.toml').name).toBeUndefined()
    expect(parseConfig(SERVER + 'name = "  "\n', 'agent.toml').name).toBeUndefined()
  })

  it.each([
    ['too long', `name = "${'x'.repeat(41)}"\n`, /^agent\.toml:2: name: is longer than 40 characters$/],
    ['a bidi override', 'name = "a\\u202Eb"\n', /^agent\.toml:2: name: holds a control, separator or bidi formatting character$/],
    ['not a string', 'name = 7\n', /^agent\.toml:2: name: /]
  ])('refuses a name %s, with its line', (_what, text, message) => {
    expect(() => parseConfig(SERVER + text, 'agent.toml')).toThrow(message)
  })
})
