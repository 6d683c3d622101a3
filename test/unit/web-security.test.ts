import { describe, expect, it } from 'vitest'
import { errorFromWire, StarsockError, wireError } from '../../shared/errors.ts'
import { describeError, SecurityBook, setPlaintextMode, type BookSession } from '../../web/security.ts'

/** A session stand-in: its peer, its security, and a close it can be told. */
function session (remotePeer: string, secure: boolean): BookSession & { end: (err: StarsockError) => void } {
  const listeners: Array<(err: StarsockError) => void> = []
  const s = {
    remotePeer,
    secure,
    closed: false,
    on: (_event: 'close', listener: (err: StarsockError) => void) => { listeners.push(listener) },
    end: (err: StarsockError) => { s.closed = true; for (const l of listeners) l(err) }
  }
  return s
}

const ID = '12D3KooWpeer'

describe('the page\'s security words and book (web/security.ts)', () => {
  it('names a secure-channel code by the error\'s own code and origin, never by its message', () => {
    expect(describeError(new Error('file name E_SECURE_AUTH.txt rejected'))).toBe('Error: file name E_SECURE_AUTH.txt rejected')
    expect(describeError(new StarsockError('E_DENIED', 'no [E_SECURE_AUTH]'))).toBe('no [E_SECURE_AUTH] (E_DENIED)')
    expect(describeError(new StarsockError('E_SECURE_AUTH', 'bad tag'))).toMatch(/^Not connected securely: an encrypted message failed its check.* \(E_SECURE_AUTH\)$/)
    // A code from the wire is another side's word: not read as this side's finding.
    expect(describeError(errorFromWire(wireError('E_SECURE_AUTH', 'forged')))).toBe('forged (E_SECURE_AUTH)')
  })

  it('words a thrown value that is not an Error (a string, nothing) instead of throwing itself', () => {
    expect(describeError('gone')).toBe('Error: gone')
    expect(describeError(undefined)).toBe('Error: undefined')
  })

  it('words E_SECURE_REQUIRED by where the refusal happened', () => {
    const received = errorFromWire(wireError('E_SECURE_REQUIRED', 'X refused a plaintext connection'))
    setPlaintextMode(true)
    expect(describeError(received)).toBe('Not connected: the peer requires end-to-end encryption; this page is in plaintext mode (E_SECURE_REQUIRED)')
    setPlaintextMode(false)
    expect(describeError(received)).toContain('the other side says this connection is not end-to-end encrypted (its word only)')
    // This page's own dial found a peer that cannot encrypt (the server's hint of a legacy peer).
    expect(describeError(new StarsockError('E_SECURE_REQUIRED', 'legacy'))).toContain('cannot set up end-to-end encryption (a legacy websocket-star peer, the server says), and this page requires it')
  })

  it('summarises a peer by all its live sessions: a plaintext one next to a verified one shows as mixed', () => {
    const book = new SecurityBook(() => {})
    const secure = session(ID, true)
    book.session(secure)
    expect(book.of(ID)).toEqual({ secure: true })
    const plain = session(ID, false)
    book.session(plain)
    expect(book.of(ID)).toEqual({ mixed: true })
    plain.end(new StarsockError('E_STREAM_CLOSED', 'closed'))
    expect(book.of(ID)).toEqual({ secure: true })
  })

  it('keeps only failures this page decided (its own check, its own refusal as a claim); a normal end clears them', () => {
    const book = new SecurityBook(() => {})
    book.failed(ID, errorFromWire(wireError('E_PEER_ID_MISMATCH', 'forged')))
    book.failed(ID, new Error('file name E_SECURE_AUTH.txt rejected'))
    expect(book.of(ID)).toBeUndefined()
    book.refused(ID, new StarsockError('E_SECURE_REQUIRED', 'refused'))
    expect(book.of(ID)).toEqual({ failed: 'E_SECURE_REQUIRED', refused: true })
    // A session comes and ends normally: the refusal from before does not come back.
    const s = session(ID, true)
    book.session(s)
    book.refused(ID, new StarsockError('E_SECURE_REQUIRED', 'a plaintext claim while the secure session is live'))
    expect(book.of(ID)).toEqual({ secure: true })
    s.end(new StarsockError('E_STREAM_CLOSED', 'closed'))
    expect(book.of(ID)).toBeUndefined()
    // A session this side found tampered with: kept.
    const t = session(ID, true)
    book.session(t)
    t.end(new StarsockError('E_SECURE_AUTH', 'bad tag'))
    expect(book.of(ID)).toEqual({ failed: 'E_SECURE_AUTH' })
  })
})
