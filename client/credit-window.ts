/**
 * The receiving side of a credit window, shared by streams (`stream.ts`) and channels
 * (`mux/channel.ts`): the bytes held unread, and the credit owed back to the sender as they are
 * read. Credit goes back half a window at a time: few credit messages, and a fast reader's sender
 * never runs dry. A window may grow (auto-tuning, as yamux and HTTP/2 do): a reader that has read
 * everything when credit goes back is keeping up, so the window, not the reader, limits the
 * transfer, and it doubles, up to its largest, within a budget the caller keeps.
 *
 * "Has read everything" is asked of the whole time since the last grant, not only of the moment
 * credit goes back: a reader that caught up with all that had arrived at least once in that time
 * waited for bytes in flight, so the window was the limit. A reader that takes what arrived in
 * several reads (a socket writer, a batch at a time) is seldom empty at the very moment credit
 * goes back, and its window would stay small while the sender waits for credit; a slow reader,
 * whose sender keeps its window full, never catches up, and its window never grows.
 */
export class CreditWindow {
  private window: number
  private held = 0
  private owed = 0
  private grown = 0
  /** Whether everything held was read at least once since the last grant. */
  private caughtUp = false

  /** Starts at `windowBytes`; never grows past `maxWindowBytes` (by default it never grows). */
  constructor (windowBytes: number, private readonly maxWindowBytes = windowBytes) {
    this.window = windowBytes
  }

  /** The window now. */
  get windowBytes (): number {
    return this.window
  }

  /** Bytes arrived and not read yet. */
  get bufferedBytes (): number {
    return this.held
  }

  /** Whether `bytes` more fit in the window now. */
  fits (bytes: number): boolean {
    return this.held + bytes <= this.window
  }

  /** `bytes` arrived and are held until read. */
  hold (bytes: number): void {
    this.held += bytes
  }

  /** Everything held was dropped (the stream or channel failed). */
  clear (): void {
    this.held = 0
  }

  /** `bytes` held were read: they are owed back to the sender. */
  read (bytes: number): void {
    this.held -= bytes
    this.owed += bytes
    if (this.held === 0) this.caughtUp = true
  }

  /**
   * The credit to send now: 0 while less than half a window is owed, else all that is owed, plus
   * the growth of the window when it grows. It grows (doubles) only when the reader caught up
   * (held nothing) at least once since the last grant, the double stays within the largest
   * window, and `reserve(growth)` says the budget allows it.
   */
  grant (reserve?: (bytes: number) => boolean): number {
    if (this.owed < this.window / 2) return 0
    let extra = 0
    const caughtUp = this.caughtUp || this.held === 0
    this.caughtUp = false
    if (reserve !== undefined && caughtUp && this.window * 2 <= this.maxWindowBytes && reserve(this.window)) {
      extra = this.window
      this.grown += extra
      this.window *= 2
    }
    const credit = this.owed + extra
    this.owed = 0
    return credit
  }

  /** What the window grew by (taken from the caller's budget): given back now, and forgotten. */
  takeGrown (): number {
    const grown = this.grown
    this.grown = 0
    return grown
  }
}
