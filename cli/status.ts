/**
 * What a sock command shows while it runs: on a terminal, a live status line (channels open, bytes
 * each way, rates, drops) with events printed above it; otherwise one line per event; with
 * `--json`, one JSON object per event on stdout (and a `stats` object every few seconds).
 */
import { formatAddress } from '../shared/sock-protocol.ts'

/** The words for an end-to-end encrypted connection, whose peer proved its id. */
export const SECURE_TEXT = 'end-to-end encrypted (peer verified)'
/** The words for a plaintext connection between starsock peers that both passed `--insecure`. */
export const INSECURE_TEXT = 'plaintext (--insecure)'
/**
 * How a connection to a peer is protected, in the status's words: `secure`, or plaintext with a
 * starsock peer (`--insecure` on both sides). A legacy websocket-star peer never gets this far: it
 * does not speak the multiplexer, so a sock agent never has a session with it.
 */
export function securityText (secure: boolean): string {
  return secure ? SECURE_TEXT : INSECURE_TEXT
}

/** `A:P, B:P` (IPv6 in brackets). */
export function addressList (list: ReadonlyArray<{ ip: string, port: number }>): string {
  return list.map(formatAddress).join(', ')
}

/** Figures the status line shows. */
export interface StatusFigures {
  channelsOpen: number
  bytesIn: number
  bytesOut: number
  droppedDatagrams: number
  /** Shown when it is not `up` (a tunnel waiting for its peer: `away`). */
  state?: string
  /** How the connections to peers are protected (see `securityText`), when there are any. */
  security?: string
}

const MiB = 1024 * 1024

function size (bytes: number): string {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB` : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${Math.round(bytes)} B`
}

/** Prints events and, on a terminal, keeps a status line under them. */
export class StatusReporter {
  private timer: ReturnType<typeof setInterval> | undefined
  private last: { at: number, bytesIn: number, bytesOut: number } | undefined
  private line = ''
  private readonly live: boolean
  private held = false
  /** Called after each event printed on a terminal (a prompt draws itself again under it). */
  afterEvent: () => void = () => {}

  constructor (private readonly json: boolean, private readonly figures: () => StatusFigures, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.live = !json && out.isTTY === true
  }

  /** Start redrawing (terminal) or printing stats (JSON). */
  start (): void {
    if (this.live) this.timer = setInterval(() => this.draw(), 500)
    else if (this.json) this.timer = setInterval(() => this.event('stats', { ...this.figures() }), 5000)
    this.timer?.unref()
  }

  /** One event: a line of text, or a JSON object `{ event, ...fields }`. */
  event (name: string, fields: Record<string, unknown>, text?: string): void {
    if (this.json) {
      process.stdout.write(JSON.stringify({ event: name, time: new Date().toISOString(), ...fields }) + '\n')
      return
    }
    const line = `${new Date().toISOString()} ${text ?? `${name} ${JSON.stringify(fields)}`}`
    if (this.live) {
      this.out.write(`\r\x1b[K${line}\n${this.held ? '' : this.line}`)
      this.afterEvent()
    } else this.out.write(line + '\n')
  }

  /** Hold redraws (while a prompt waits for an answer, or the person types, on the same terminal), or go on. */
  hold (held: boolean): void {
    if (held && this.live && !this.held) this.out.write('\r\x1b[K')
    this.held = held
  }

  /** Stop redrawing; leaves the last status line in place. */
  stop (): void {
    clearInterval(this.timer)
    if (this.live) {
      this.draw()
      this.out.write('\n')
    }
  }

  private draw (): void {
    if (this.held) return
    const f = this.figures()
    const now = Date.now()
    const last = this.last ?? { at: now - 1, bytesIn: f.bytesIn, bytesOut: f.bytesOut }
    const seconds = Math.max(0.001, (now - last.at) / 1000)
    const rateIn = (f.bytesIn - last.bytesIn) / seconds
    const rateOut = (f.bytesOut - last.bytesOut) / seconds
    this.last = { at: now, bytesIn: f.bytesIn, bytesOut: f.bytesOut }
    this.line = `channels ${f.channelsOpen} · in ${size(f.bytesIn)} (${size(rateIn)}/s) · out ${size(f.bytesOut)} (${size(rateOut)}/s) · drops ${f.droppedDatagrams}${f.state !== undefined && f.state !== 'up' ? ` · ${f.state}` : ''}${f.security !== undefined ? ` · ${f.security}` : ''}`
    this.out.write(`\r\x1b[K${this.line}`)
  }
}
