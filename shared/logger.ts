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
}

const noop: LogFn = () => {}

/** A logger that drops everything; the default of every library entry point. */
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger
}

/**
 * A logger that writes through `parent` with `fields` added to every line, like
 * `parent.child(fields)` but without making the child up front: a pino child costs about 2 KB,
 * which a server that keeps one per connected socket pays for every idle peer.
 */
export function withFields (parent: Logger, fields: Record<string, unknown>): Logger {
  return new FieldsLogger(parent, fields)
}

class FieldsLogger implements Logger {
  constructor (private readonly parent: Logger, private readonly fields: Record<string, unknown>) {}

  debug (a: string | Record<string, unknown>, msg?: string): void { this.parent.debug(...this.line(a, msg)) }
  info (a: string | Record<string, unknown>, msg?: string): void { this.parent.info(...this.line(a, msg)) }
  warn (a: string | Record<string, unknown>, msg?: string): void { this.parent.warn(...this.line(a, msg)) }
  error (a: string | Record<string, unknown>, msg?: string): void { this.parent.error(...this.line(a, msg)) }

  child (bindings: Record<string, unknown>): Logger {
    return new FieldsLogger(this.parent, { ...this.fields, ...bindings })
  }

  private line (a: string | Record<string, unknown>, msg?: string): [Record<string, unknown>, string?] {
    return typeof a === 'string' ? [this.fields, a] : [{ ...this.fields, ...a }, msg]
  }
}
