/**
 * What the page says about the security of a connection: a badge per peer and per session
 * ("end-to-end encrypted · verified", or "plaintext · unverified id"), the plaintext-mode switch,
 * and the secure channel's failures in words a person can act on.
 */
import { StarsockError } from '../shared/errors.ts'
import { el } from './dom.ts'

/**
 * The secure channel's codes in words, as decided by this page (its own dial, its own check):
 * short for a badge, long for a message. A code another side sent is only its word (the relay can
 * write any code in a stream's error frame): `describeError` says so, and the book never keeps it.
 */
const SECURE_WORDS: Record<string, { short: string, long: string }> = {
  E_SECURE_REQUIRED: {
    short: 'the peer does not encrypt',
    long: 'the other side cannot set up end-to-end encryption (a legacy websocket-star peer, the server says), and this page requires it'
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

/** What this page's agent did with a plaintext connection that claimed an id (its `refused` event), in words. */
const REFUSED_WORDS = {
  short: 'refused a plaintext connection claiming this id',
  long: 'a connection that claimed this peer id came without end-to-end encryption, and this page requires it, so it was refused; the id is only the server\'s word, so it may not have been this peer'
}

/** Whether the page is in plaintext mode (`setPlaintextMode`), for the words of a refusal another side sent. */
let plaintextMode = false

/** Tell the words which mode the page is in. */
export function setPlaintextMode (on: boolean): void {
  plaintextMode = on
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

/**
 * What a badge shows: a connection's state; `mixed` when a peer has live sessions of both kinds
 * (shown as the weaker, plaintext); or why the page could not secure one (`refused`: it refused a
 * plaintext connection that claimed the id).
 */
export type Security = { secure: boolean } | { mixed: true } | { failed: string, refused?: boolean }

/** A badge element: its text, a title that says what it means, and `data-security` (`secure`, `plaintext` or `failed`). */
export function badge (security: Security): HTMLSpanElement {
  let state: string, text: string, title: string
  if ('failed' in security) {
    const words = security.refused === true ? REFUSED_WORDS : SECURE_WORDS[security.failed]
    state = 'failed'
    text = security.refused === true ? `${REFUSED_WORDS.short} (${security.failed})` : `not secured: ${words?.short ?? 'failed'} (${security.failed})`
    title = security.refused === true ? `Refused: ${REFUSED_WORDS.long}.` : `Not connected: ${words?.long ?? security.failed}. The page never falls back to plaintext on its own.`
  } else if ('mixed' in security) {
    state = 'plaintext'
    text = 'mixed: a plaintext session too · unverified id'
    title = 'One session with this id is end-to-end encrypted and verified, another is plaintext: on that one the relay can read and change everything, and the id is only the server\'s word. Each message, file and offer shows the badge of its own session.'
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

/** The secure channel's code of `err` when this side decided it (not a code from the wire), or undefined. */
export function secureFailureOf (err: unknown): string | undefined {
  return err instanceof StarsockError && !err.remote && err.code in SECURE_WORDS ? err.code : undefined
}

/** `err` for a person: the secure channel's failures in words (by where they were decided), then the code; other errors as `message (CODE)`. */
export function describeError (err: unknown): string {
  const code = secureFailureOf(err)
  if (code !== undefined) return `Not connected securely: ${SECURE_WORDS[code]?.long ?? code} (${code})`
  if (err instanceof StarsockError && err.remote && err.code === 'E_SECURE_REQUIRED') {
    return plaintextMode
      ? 'Not connected: the peer requires end-to-end encryption; this page is in plaintext mode (E_SECURE_REQUIRED)'
      : `Not connected: the other side says this connection is not end-to-end encrypted (its word only): ${err.message} (E_SECURE_REQUIRED)`
  }
  if (err instanceof StarsockError) return `${err.message} (${err.code})`
  // Anything may be thrown (a string, nothing): words for it, never a TypeError here.
  return `Error: ${err instanceof Error ? err.message : String(err)}`
}

/** What the book needs of a session (a `Muxer`). */
export interface BookSession {
  readonly remotePeer: string
  readonly secure: boolean
  readonly closed: boolean
  on: (event: 'close', listener: (err: StarsockError) => void) => unknown
}

/**
 * Per peer, a summary for the peer list: its live sessions' security (`mixed` when both kinds are
 * live), or else the last secure-channel failure this page decided itself with that id (its own
 * dial or check, or a plaintext connection it refused, worded as a claim). Messages, files and
 * offers show their own session's badge, not this summary. `onChange` runs after every change.
 */
export class SecurityBook {
  private readonly live = new Map<string, Set<BookSession>>()
  private readonly failures = new Map<string, Security & { failed: string }>()

  constructor (private readonly onChange: () => void) {}

  /** A session came up (dialed or incoming). */
  session (mux: BookSession): void {
    const peerId = mux.remotePeer
    let set = this.live.get(peerId)
    if (set === undefined) this.live.set(peerId, set = new Set())
    set.add(mux)
    this.failures.delete(peerId)
    mux.on('close', (err) => {
      set.delete(mux)
      if (set.size === 0 && this.live.get(peerId) === set) this.live.delete(peerId)
      // A failure this side found ends the session: kept. A normal end clears what came before.
      const code = secureFailureOf(err)
      if (code !== undefined) this.failures.set(peerId, { failed: code })
      else this.failures.delete(peerId)
      this.onChange()
    })
    this.onChange()
  }

  /** Something with `peerId` failed with `err`: kept only when this side decided it was the secure channel's failure. */
  failed (peerId: string, err: unknown): void {
    const code = secureFailureOf(err)
    if (code === undefined) return
    this.failures.set(peerId, { failed: code })
    this.onChange()
  }

  /** This page's agent refused a plaintext connection that claimed `peerId` (its `refused` event). */
  refused (peerId: string, err: StarsockError): void {
    this.failures.set(peerId, { failed: err.code, refused: true })
    this.onChange()
  }

  /** The summary of `peerId` for the peer list; undefined with no session and no failure. */
  of (peerId: string): Security | undefined {
    const sessions = [...this.live.get(peerId) ?? []].filter((m) => !m.closed)
    if (sessions.length > 0) {
      const secure = sessions.filter((m) => m.secure).length
      return secure === sessions.length ? { secure: true } : secure === 0 ? { secure: false } : { mixed: true }
    }
    return this.failures.get(peerId)
  }

  /** Forget a peer that left, and every session (the page's peer closed). */
  forget (peerId?: string): void {
    if (peerId === undefined) {
      this.live.clear()
      this.failures.clear()
    } else if (!this.failures.delete(peerId)) {
      return // nothing known of it: nothing to show anew
    }
    this.onChange()
  }
}
