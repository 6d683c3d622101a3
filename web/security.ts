/**
 * What the page says about the security of a connection: a badge per peer and per session
 * ("end-to-end encrypted · verified", or "plaintext · unverified id"), the plaintext-mode switch,
 * and the secure channel's failures in words a person can act on.
 */
import type { Muxer } from '../client/mux/muxer.ts'
import { StarsockError } from '../shared/errors.ts'
import { el } from './dom.ts'

/** The secure channel's codes in words: short for a badge, long for a message. */
const SECURE_WORDS: Record<string, { short: string, long: string }> = {
  E_SECURE_REQUIRED: {
    short: 'the peer does not encrypt',
    long: 'the other side did not set up end-to-end encryption (a legacy websocket-star peer, or a page or program in plaintext mode), and this side requires it'
  },
  E_PEER_ID_MISMATCH: {
    short: 'another identity answered',
    long: 'the other side proved a different identity than the peer picked (the relay may have swapped it)'
  },
  E_SECURE_HANDSHAKE: {
    short: 'handshake failed',
    long: 'the encrypted channel could not be set up (its handshake failed, was tampered with, or got no answer)'
  },
  E_SECURE_AUTH: {
    short: 'tampered with on the way',
    long: 'an encrypted message failed its check (changed or cut short on the way), so the connection was closed'
  }
}

/**
 * `?insecure=1` in the page's URL: plaintext mode, for measurement only. The page's peer dials
 * without the secure channel and its agent takes plaintext connections; peer ids are then the
 * server's word. Anything else (no parameter, `?insecure=0`) is the default: encrypted.
 */
export function plaintextModeOf (search: string): boolean {
  return new URLSearchParams(search).get('insecure') === '1'
}

/** `href` without plaintext mode. */
export function encryptedUrl (href: string): string {
  const url = new URL(href)
  url.searchParams.delete('insecure')
  return url.href
}

/** What a badge shows: a connection's state, or the code of why the page could not secure one. */
export type Security = { secure: boolean } | { failed: string }

/** A badge element: its text, a title that says what it means, and `data-security` (`secure`, `plaintext` or `failed`). */
export function badge (security: Security): HTMLSpanElement {
  let state: string, text: string, title: string
  if ('failed' in security) {
    const words = SECURE_WORDS[security.failed]
    state = 'failed'
    text = `not secured: ${words?.short ?? 'failed'} (${security.failed})`
    title = `Not connected: ${words?.long ?? security.failed}. The page never falls back to plaintext on its own.`
  } else if (security.secure) {
    state = 'secure'
    text = 'end-to-end encrypted · verified'
    title = 'Only you and this peer can read what you send, and the peer proved this id with its key.'
  } else {
    state = 'plaintext'
    text = 'plaintext · unverified id'
    title = 'The relay can read and change everything on this connection, and the peer id is only the server\'s word.'
  }
  return el('span', { class: 'badge', 'data-security': state, title }, text)
}

/** The secure channel's code of `err` (its own, or one its message names), or undefined. */
export function secureFailureOf (err: unknown): string | undefined {
  if (err instanceof StarsockError && err.code in SECURE_WORDS) return err.code
  const named = /\b(E_SECURE_REQUIRED|E_PEER_ID_MISMATCH|E_SECURE_HANDSHAKE|E_SECURE_AUTH)\b/.exec(String((err as Error | undefined)?.message ?? ''))
  return named?.[1]
}

/** `err` for a person: the secure channel's failures in words, then the code; other errors as `message (CODE)`. */
export function describeError (err: unknown): string {
  const code = secureFailureOf(err)
  if (code !== undefined) return `Not connected securely: ${SECURE_WORDS[code]?.long ?? code} (${code})`
  return err instanceof StarsockError ? `${err.message} (${err.code})` : `Error: ${(err as Error).message}`
}

/**
 * Per peer, what the page knows of its security: the live session's (secure or plaintext), or
 * else the secure channel's last failure with that peer (a dial it could not secure, a plaintext
 * connection refused, a message that failed its check). `onChange` runs after every change.
 */
export class SecurityBook {
  private readonly live = new Map<string, Muxer>()
  private readonly failures = new Map<string, string>()

  constructor (private readonly onChange: () => void) {}

  /** A session came up (dialed or incoming). */
  session (mux: Muxer): void {
    this.live.set(mux.remotePeer, mux)
    this.failures.delete(mux.remotePeer)
    mux.on('close', () => {
      if (this.live.get(mux.remotePeer) !== mux) return
      this.live.delete(mux.remotePeer)
      this.onChange()
    })
    this.onChange()
  }

  /** Something with `peerId` failed with `err`: kept when it is the secure channel's failure (a live session still shows first). */
  failed (peerId: string, err: unknown): void {
    const code = secureFailureOf(err)
    if (code === undefined) return
    this.failures.set(peerId, code)
    this.onChange()
  }

  /** What the page knows of `peerId`'s security; undefined with no session and no failure. */
  of (peerId: string): Security | undefined {
    const mux = this.live.get(peerId)
    if (mux !== undefined && !mux.closed) return { secure: mux.conn.secure }
    const failed = this.failures.get(peerId)
    return failed === undefined ? undefined : { failed }
  }

  /** Forget a peer that left, and every session (the page's peer closed). */
  forget (peerId?: string): void {
    if (peerId === undefined) {
      this.live.clear()
      this.failures.clear()
    } else {
      this.failures.delete(peerId)
    }
    this.onChange()
  }
}
