import { describe, expect, it } from 'vitest'
import { createIdentity } from '../../client/identity.ts'
import { inviteLink, isPeerId, pageAddress, splitDial } from '../../web/invite.ts'
import { splitToken } from '../../web/token.ts'

describe('invite links (web/invite.ts)', () => {
  it('the page address drops query and fragment and keeps the folder', () => {
    expect(pageAddress('http://h:1/?slot=x#token=t')).toBe('http://h:1/')
    expect(pageAddress('https://h/starsock/index.html?insecure=1')).toBe('https://h/starsock/')
  })

  it('links: the page, dial me, with the token only when given; token.ts takes the token back out intact', async () => {
    const { peerId } = await createIdentity()
    const token = 'a+b/c=d&e %'
    expect(inviteLink('http://h:1/x/?slot=2', 'page', peerId, undefined)).toBe('http://h:1/x/')
    expect(inviteLink('http://h:1/', 'dial', peerId, undefined)).toBe(`http://h:1/#dial=${peerId}`)
    expect(inviteLink('http://h:1/', 'dial', undefined, undefined)).toBe('http://h:1/')
    const link = inviteLink('http://h:1/', 'dial', peerId, token)
    const taken = splitToken(link)
    expect(taken.token).toBe(token)
    expect(splitDial(new URL(taken.href).hash)).toEqual({ request: { kind: 'peer', peerId }, rest: '' })
  })

  it('#dial= is read only when it is a peer id', async () => {
    const { peerId } = await createIdentity()
    const rsa = (await createIdentity('RSA')).peerId
    const cases: Array<[string, string, string]> = [
      ['', 'none', ''],
      ['#token=x', 'none', '#token=x'],
      [`#dial=${peerId}`, 'peer', ''],
      [`#dial=${rsa}&x=1`, 'peer', 'x=1'],
      ['#dial=', 'invalid', ''],
      ['#dial', 'invalid', ''],
      ['#dial=nope&token=t', 'invalid', 'token=t'],
      ['#dial=%3Cimg%20src%3Dx%3E', 'invalid', ''],
      ['#dial=%E0%A4%A', 'invalid', ''],
      [`#dial=${peerId}x`, 'invalid', ''],
      [`#dial=${'Qm' + '1'.repeat(5000)}`, 'invalid', '']
    ]
    for (const [hash, kind, rest] of cases) {
      const got = splitDial(hash)
      expect(got.request.kind, hash.slice(0, 60)).toBe(kind)
      expect(got.rest, hash.slice(0, 60)).toBe(rest)
    }
    expect(isPeerId(peerId.toLowerCase())).toBe(false)
  })
})
