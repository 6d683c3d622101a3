/** Comparing a secret a client sent (the server token) with the expected one. */
import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Whether `given` is the string `expected`. Compared as SHA-256 digests in constant time: the
 * digests have one length, so neither where the strings differ nor the expected length leaks
 * through timing. Anything but a string, and an empty or missing `expected`, is `false`.
 */
export function sameSecret (given: unknown, expected: string | undefined): boolean {
  if (typeof given !== 'string' || expected === undefined || expected === '') return false
  const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()
  return timingSafeEqual(digest(given), digest(expected))
}
