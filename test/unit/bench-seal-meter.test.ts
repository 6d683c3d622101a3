import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { installSealMeter, takeSeals, uninstallSealMeter } from '../../bench/seal-meter.ts'
import { aead } from '../../client/noise/aead.node.ts'

// The bench's count of what the Node cipher writes: the encrypted tunnel's copies rows show it as
// `cipher output`, so it must see every sealed and opened byte, and charge it to the caller.
describe('bench seal meter', () => {
  afterEach(() => { uninstallSealMeter() })

  it('counts every byte the Noise AEAD seals and opens, by the function that asked', () => {
    installSealMeter()
    const key = randomBytes(32)
    const plaintext = randomBytes(65_519)
    const sealed = aead.seal(key, 7, new Uint8Array(0), plaintext)
    const opened = aead.open(key, 7, new Uint8Array(0), sealed)
    expect(Buffer.from(opened).equals(plaintext)).toBe(true)
    // Charged to the AEAD's own function (its name is the core's: `seal`, `sealInto`, ...).
    const seals = Object.entries(takeSeals())
    const total = (what: string): number => seals.filter(([where]) => where.startsWith(`cipher output, ${what}: client/noise/aead.node.ts `)).reduce((sum, [, n]) => sum + n, 0)
    expect(seals).toHaveLength(2)
    expect(total('sealing')).toBe(65_519)
    expect(total('opening')).toBe(65_519)
    expect(takeSeals()).toEqual({}) // counting starts afresh
  })

  it('counts nothing once uninstalled, and the cipher still works', () => {
    installSealMeter()
    uninstallSealMeter()
    const key = randomBytes(32)
    const iv = randomBytes(12)
    const cipher = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 })
    const ciphertext = Buffer.concat([cipher.update(Buffer.from('hello')), cipher.final()])
    const decipher = createDecipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 })
    decipher.setAuthTag(cipher.getAuthTag())
    expect(Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString()).toBe('hello')
    expect(takeSeals()).toEqual({})
  })
})
