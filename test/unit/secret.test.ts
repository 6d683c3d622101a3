import { describe, expect, it } from 'vitest'
import { sameSecret } from '../../server/secret.ts'

describe('sameSecret', () => {
  it.each([
    ['s3cret', 's3cret', true],
    ['s3cre', 's3cret', false],
    ['s3cret!', 's3cret', false],
    ['S3cret', 's3cret', false],
    ['', 's3cret', false],
    ['', '', false],
    [undefined, 's3cret', false],
    [['s3cret'], 's3cret', false],
    [42, '42', false],
    ['s3cret', undefined, false],
    ['pässwort', 'pässwort', true]
  ] as Array<[unknown, string | undefined, boolean]>)('sameSecret(%j, %j) is %s', (given, expected, same) => {
    expect(sameSecret(given, expected)).toBe(same)
  })
})
