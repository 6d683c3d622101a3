/**
 * Chat threads, one per peer, and their unread counts: what `chat.ts` shows and `peers.ts` counts
 * in the list. Bounded, since other peers write as much and as fast as they like, and can come
 * back under as many new ids: lines per thread, characters per thread, and threads.
 */
import { Emitter } from '../client/emitter.ts'
import type { Security } from './security.ts'

/** Lines a thread keeps (the oldest go first). */
export const MAX_LINES_PER_THREAD = 500
/** Characters a thread keeps in all (the oldest lines go first). */
export const MAX_CHARS_PER_THREAD = 200_000
/** Threads kept; past it the one written to longest ago goes (never the one on show). */
export const MAX_THREADS = 64
/** Longest message kept, in UTF-16 units (longer ones are cut). */
export const MAX_MESSAGE_CHARS = 4000

/** One line of a thread: a message of either side, or the page's own note (e.g. "not sent: ..."). */
export interface ThreadLine {
  from: 'me' | 'them' | 'note'
  text: string
  /** The security of the connection it went on (its badge). */
  security?: Security
}

/** Events of the threads: a line added to a thread, a thread's unread count changed. */
export interface ThreadEvents extends Record<string, unknown> {
  line: { peerId: string, line: ThreadLine, dropped: number }
  unread: string
}

/** The threads of the page's session, by peer id (`''`: notes while no peer is picked). */
export class ChatThreads extends Emitter<ThreadEvents> {
  private readonly threads = new Map<string, { lines: ThreadLine[], chars: number }>()
  private readonly unreadCounts = new Map<string, number>()
  /** The thread on show (its lines are read as they come). */
  shown = ''

  /** The lines of `peerId`'s thread, oldest first. */
  lines (peerId: string): readonly ThreadLine[] {
    return this.threads.get(peerId)?.lines ?? []
  }

  /** Messages of `peerId` not read yet (not on show when they came). */
  unread (peerId: string): number {
    return this.unreadCounts.get(peerId) ?? 0
  }

  /** Add `line` to `peerId`'s thread; counts it unread when it is theirs and the thread is not on show. */
  add (peerId: string, line: ThreadLine): void {
    const kept = { ...line, text: line.text.slice(0, MAX_MESSAGE_CHARS) }
    const thread = this.threadOf(peerId)
    thread.lines.push(kept)
    thread.chars += kept.text.length
    let dropped = 0
    while (thread.lines.length > MAX_LINES_PER_THREAD || (thread.chars > MAX_CHARS_PER_THREAD && thread.lines.length > 1)) {
      thread.chars -= thread.lines.shift()?.text.length ?? 0
      dropped++
    }
    this.emit('line', { peerId, line: kept, dropped })
    if (kept.from === 'them' && peerId !== this.shown) {
      this.unreadCounts.set(peerId, this.unread(peerId) + 1)
      this.emit('unread', peerId)
    }
  }

  /** Put `peerId`'s thread on show: its unread count clears. */
  show (peerId: string): void {
    this.shown = peerId
    if (this.unreadCounts.delete(peerId)) this.emit('unread', peerId)
  }

  /** Forget every thread (the session ended: a new identity starts with none). */
  clear (): void {
    const had = [...this.unreadCounts.keys()]
    this.threads.clear()
    this.unreadCounts.clear()
    for (const peerId of had) this.emit('unread', peerId)
  }

  /** The thread of `peerId`, made (and moved last, as the most recent) on use; the oldest goes past `MAX_THREADS`. */
  private threadOf (peerId: string): { lines: ThreadLine[], chars: number } {
    let thread = this.threads.get(peerId)
    if (thread !== undefined) this.threads.delete(peerId)
    thread ??= { lines: [], chars: 0 }
    this.threads.set(peerId, thread)
    for (const old of this.threads.keys()) {
      if (this.threads.size <= MAX_THREADS) break
      if (old === this.shown || old === peerId) continue
      this.threads.delete(old)
      if (this.unreadCounts.delete(old)) this.emit('unread', old)
    }
    return thread
  }
}
