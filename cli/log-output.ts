/**
 * The CLI's logger: pino, writing JSON lines, or readable lines through pino-pretty when asked or
 * when stdout is a terminal. pino-pretty runs in this thread as a stream (not as a worker-thread
 * transport, which costs a thread, its own heap and start-up) and is loaded only when used.
 */
import { pino } from 'pino'
import type { Logger } from '../shared/logger.ts'

/** The values of `--log-format` / `STARSOCK_LOG_FORMAT`. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const
/** How log lines are written: `auto` is `pretty` on a terminal, `json` otherwise. */
export type LogFormat = typeof LOG_FORMATS[number]

/** The levels of `--log-level`, most severe first. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** The format `format` means for an output that is (`tty`) or is not a terminal. */
export function resolveLogFormat (format: LogFormat, tty: boolean): 'pretty' | 'json' {
  return format === 'auto' ? (tty ? 'pretty' : 'json') : format
}

/**
 * A logger at `level` writing to stdout in `format`. Pretty lines are one per event:
 * `[HH:MM:ss.l] INFO: starsock:server:peers: peer joined {"peer":…}`, coloured unless `NO_COLOR`
 * is set or stdout is not a terminal. Settles once pino-pretty is loaded (when used).
 */
export async function createCliLogger (level: string, format: LogFormat): Promise<Logger> {
  const options = { level, base: undefined }
  const tty = process.stdout.isTTY === true
  if (resolveLogFormat(format, tty) === 'json') return asLogger(pino(options))
  const { default: pretty } = await import('pino-pretty')
  const stream = pretty({
    destination: 1,
    sync: true, // each line written before the next statement, as pino's own stdout destination does
    colorize: tty && process.env.NO_COLOR === undefined,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'ns',
    messageFormat: '{if ns}{ns}: {end}{msg}'
  })
  return asLogger(pino(options, stream))
}

/** pino's logger as the library's `Logger` (a plain value: pino's type looks thenable to an async function). */
function asLogger (logger: Logger): Logger {
  return logger
}
