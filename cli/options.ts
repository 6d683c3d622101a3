/** Parsers for command-line values: each throws commander's `InvalidArgumentError` with one readable line. */
import { InvalidArgumentError } from 'commander'
import { parseRule, type SockRule } from '../shared/sock-rules.ts'
import { PEER_ID_TEXT } from '../shared/validate.ts'

/** A parser for an integer of at least `min`. */
export function integer (min: number): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (value.trim() === '' || !Number.isSafeInteger(n)) throw new InvalidArgumentError('Not an integer.')
    if (n < min) throw new InvalidArgumentError(`Must be at least ${min}.`)
    return n
  }
}

/** The longest time a `--*-ms` flag takes: what a Node timer holds (longer ones fire at once). */
export const MAX_MS = 2_147_483_647

/** A parser for a duration in milliseconds of at least `min` and at most `MAX_MS` (about 24.8 days). */
export function milliseconds (min: number): (value: string) => number {
  return (value) => {
    const n = integer(min)(value)
    if (n > MAX_MS) throw new InvalidArgumentError(`Must be at most ${MAX_MS} (about 24.8 days).`)
    return n
  }
}

/** A TCP or UDP port number (0 picks a free one). */
export const port = (value: string): number => {
  const n = integer(0)(value)
  if (n > 65535) throw new InvalidArgumentError('Must be at most 65535.')
  return n
}

/** A port range `low-high` (low < high). */
export const portRange = (value: string): [number, number] => {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(value)
  const low = Number(m?.[1])
  const high = Number(m?.[2])
  if (m === null || low < 1 || high > 65535 || low >= high) throw new InvalidArgumentError('Not a port range low-high within 1-65535.')
  return [low, high]
}

/** A `--peer`-like value: a peer id (base58). */
export function peerId (value: string): string {
  if (!PEER_ID_TEXT.test(value)) throw new InvalidArgumentError('Not a peer id.')
  return value
}

/** Collect a repeatable option into a list. */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Parse a repeatable `--allow RULE` into rules. */
export function ruleList (value: string, previous: SockRule[] = []): SockRule[] {
  try {
    return [...previous, parseRule(value)]
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}
