/**
 * The logger library code writes to: pino-compatible, injectable, silent by default.
 * Never pass payload bytes, keys, signatures or tokens to it.
 */

/** One log method: a message, or structured fields then a message. */
export interface LogFn {
  (msg: string): void
  (fields: Record<string, unknown>, msg?: string): void
}

/** A structured logger with namespaced children (`child({ ns: 'starsock:server:relay' })`). */
export interface Logger {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
  child: (bindings: Record<string, unknown>) => Logger
  /** Whether a line at `level` would be written (pino has it); absent means yes. */
  isLevelEnabled?: (level: string) => boolean
}

const noop: LogFn = () => {}

/** A logger that drops everything; the default of every library entry point. */
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
  isLevelEnabled: () => false
}

/**
 * A logger that writes through `parent` with `fields` added to every line, like
 * `parent.child(fields)` but without making the child up front: a pino child costs about 2 KB,
 * which a server that keeps one per connected socket pays for every idle peer.
 */
export function withFields (parent: Logger, fields: Record<string, unknown>): Logger {
  return new FieldsLogger(parent, fields)
}

type Level = 'debug' | 'info' | 'warn' | 'error'

class FieldsLogger implements Logger {
  constructor (private readonly parent: Logger, private readonly fields: Record<string, unknown>) {}

  debug (a: string | Record<string, unknown>, msg?: string): void { this.write('debug', a, msg) }
  info (a: string | Record<string, unknown>, msg?: string): void { this.write('info', a, msg) }
  warn (a: string | Record<string, unknown>, msg?: string): void { this.write('warn', a, msg) }
  error (a: string | Record<string, unknown>, msg?: string): void { this.write('error', a, msg) }

  child (bindings: Record<string, unknown>): Logger {
    return new FieldsLogger(this.parent, { ...this.fields, ...bindings })
  }

  isLevelEnabled (level: string): boolean {
    return this.parent.isLevelEnabled?.(level) ?? true
  }

  /** A line the level drops costs no merged fields (a server logs at debug for every socket). */
  private write (level: Level, a: string | Record<string, unknown>, msg?: string): void {
    if (this.parent.isLevelEnabled?.(level) === false) return
    if (typeof a === 'string') this.parent[level](this.fields, a)
    else this.parent[level]({ ...this.fields, ...a }, msg)
  }
}

/** How many lines a `cappedLogger` lets through: a burst, then a steady rate. */
export interface LogCap {
  /** Lines per second once the burst is spent. */
  linesPerSecond: number
  /** Lines that may go out at once (a restart's wave of rejoins). */
  burstLines: number
}

/**
 * A logger that writes through `parent` at most `cap` lines (a token bucket shared with its
 * children), so a flood of joins or dials cannot make logging the bottleneck or fill a disk at
 * the attacker's rate. Lines over the cap are dropped and counted; a `warn` line
 * `{ suppressed: N }` says how many, at most once a second, when the flood lets up or a second
 * after it began (a timer that does not hold the process open).
 */
export function cappedLogger (parent: Logger, cap: LogCap, now: () => number = Date.now): Logger {
  if (!(cap.linesPerSecond > 0) || !(cap.burstLines >= 1)) throw new RangeError('cappedLogger: linesPerSecond must be > 0 and burstLines >= 1')
  return new CappedLogger(parent, new LineBudget(parent, cap, now))
}

/** The bucket and the count of dropped lines that a capped logger and its children share. */
class LineBudget {
  private tokens: number
  private last: number
  private suppressed = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor (private readonly out: Logger, private readonly cap: LogCap, private readonly now: () => number) {
    this.tokens = cap.burstLines
    this.last = now()
  }

  /** Whether one more line may go out now; counts it as suppressed when not. */
  take (): boolean {
    const t = this.now()
    this.tokens = Math.min(this.cap.burstLines, this.tokens + ((t - this.last) / 1000) * this.cap.linesPerSecond)
    this.last = t
    if (this.tokens >= 1) {
      this.tokens -= 1
      return true
    }
    this.suppressed++
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.report(), 1000)
      this.timer.unref?.()
    }
    return false
  }

  /** Say how many lines were dropped since the last report (the report itself is not capped). */
  private report (): void {
    this.timer = undefined
    const suppressed = this.suppressed
    this.suppressed = 0
    if (suppressed > 0) this.out.warn({ suppressed, linesPerSecond: this.cap.linesPerSecond }, 'log lines suppressed (over the log cap)')
  }
}

class CappedLogger implements Logger {
  constructor (private readonly parent: Logger, private readonly budget: LineBudget) {}

  debug (a: string | Record<string, unknown>, msg?: string): void { this.write('debug', a, msg) }
  info (a: string | Record<string, unknown>, msg?: string): void { this.write('info', a, msg) }
  warn (a: string | Record<string, unknown>, msg?: string): void { this.write('warn', a, msg) }
  error (a: string | Record<string, unknown>, msg?: string): void { this.write('error', a, msg) }

  isLevelEnabled (level: string): boolean {
    return this.parent.isLevelEnabled?.(level) ?? true
  }

  child (bindings: Record<string, unknown>): Logger {
    return new CappedLogger(this.parent.child(bindings), this.budget)
  }

  /** A line the level lets through spends a token; one it would drop anyway spends nothing. */
  private write (level: Level, a: string | Record<string, unknown>, msg?: string): void {
    if (!this.isLevelEnabled(level) || !this.budget.take()) return
    if (typeof a === 'string') this.parent[level](a)
    else this.parent[level](a, msg)
  }
}
