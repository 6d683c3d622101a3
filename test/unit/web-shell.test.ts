/**
 * The page shell's pure parts, table-driven: the token taken out of a link (`splitToken`), and
 * why a `[data-needs]` control cannot work yet (`whyNot`).
 */
import { describe, expect, it } from 'vitest'
import { whyNot } from '../../web/enable.ts'
import { splitToken } from '../../web/token.ts'

describe('splitToken', () => {
  const cases: Array<[string, string | undefined, string]> = [
    ['http://h/', undefined, 'http://h/'],
    ['http://h/#token=abc', 'abc', 'http://h/'],
    ['http://h/?slot=a#token=ab+c/d==', 'ab+c/d==', 'http://h/?slot=a'],
    ['http://h/#x=1&token=t%20u&y=2', 't u', 'http://h/#x=1&y=2'],
    ['http://h/?token=q&slot=b', 'q', 'http://h/?slot=b'],
    // `#token=` wins over `?token=`, and both leave the address.
    ['http://h/?token=q#token=f', 'f', 'http://h/'],
    // An empty token is none, and still leaves the address.
    ['http://h/#token=', undefined, 'http://h/'],
    // A stray % is kept as typed.
    ['http://h/#token=a%zz', 'a%zz', 'http://h/'],
    // Only the parameter named token: not tokens=, not xtoken=.
    ['http://h/#tokens=1&xtoken=2', undefined, 'http://h/#tokens=1&xtoken=2']
  ]
  for (const [href, token, rest] of cases) {
    it(`${href} -> ${String(token)}, ${rest}`, () => {
      expect(splitToken(href)).toEqual({ token, href: rest })
    })
  }
})

describe('whyNot', () => {
  const nameOf = (id: string): string => `name of ${id}`
  const cases: Array<[string, { joined: boolean, picked: string | undefined, online: boolean }, string | undefined]> = [
    ['joined', { joined: false, picked: undefined, online: false }, 'Not joined to the server yet'],
    ['joined', { joined: true, picked: undefined, online: false }, undefined],
    ['peer', { joined: false, picked: 'p', online: true }, 'Not joined to the server yet'],
    ['peer', { joined: true, picked: undefined, online: false }, 'Pick a peer first'],
    ['peer', { joined: true, picked: 'p', online: false }, 'name of p is offline: pick a peer online'],
    ['peer', { joined: true, picked: 'p', online: true }, undefined]
  ]
  for (const [need, state, why] of cases) {
    it(`${need} with ${JSON.stringify(state)}: ${String(why)}`, () => {
      expect(whyNot(need, { ...state, nameOf })).toBe(why)
    })
  }
})
