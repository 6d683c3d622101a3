/**
 * A mapping: one granted offer between two peers (connect to a host, bind a port, or send
 * accepts), and every channel opened under it. Killing it, from either side, closes them all.
 */
import { StarsockError } from '../../shared/errors.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import type { Offer, SockProto } from '../../shared/sock-protocol.ts'
import { Emitter } from '../emitter.ts'
import type { Channel, DatagramDrops } from '../mux/channel.ts'
import type { Muxer } from '../mux/muxer.ts'

/** Events of a mapping. */
export interface MappingEvents extends Record<string, unknown> {
  /** A channel of the mapping opened (either side). */
  channel: Channel
  /** The mapping is over: `E_KILLED` by a kill, `E_PEER_SHUTDOWN` when a side stopped, another code when the connection went down. */
  close: StarsockError
}

/** Figures of a mapping. */
export interface MappingStats {
  channelsOpen: number
  channelsTotal: number
  bytesIn: number
  bytesOut: number
  droppedDatagrams: number
  /** The same drops by cause (see `DatagramDrops`). */
  droppedBy: DatagramDrops
  /** Whether its connection is end-to-end encrypted, the other peer's id proved (see `Mapping.secure`). */
  secure: boolean
}

/** One granted offer. */
export class Mapping extends Emitter<MappingEvents> {
  /** For a bind: the address the other peer listens on (set once bound). */
  bound: SockAddress | undefined
  /** For a bind to a wildcard (`0.0.0.0`, `::`): the addresses the port can be reached at (see `Reply.addresses`). */
  addresses: SockAddress[] | undefined
  /** For a bind: its channel (for UDP, the datagrams flow on it). */
  bindChannel: Channel | undefined
  /** A service (or an accept for one) granted here: where its channels go, as it was when granted. */
  target: { to: SockAddress, proto: SockProto } | undefined
  /** A bind granted here with `allowFrom`: the sources its port lets in. */
  sourceFilter: { allows: (ip: string | undefined) => boolean } | undefined
  /** For a file: the bytes the receiver had already (a resumed transfer); the channel carries the rest. */
  fileOffset = 0
  /** Takes the accept channels of this mapping (our bind, or an accept mapping we granted). */
  acceptHandler: ((channel: Channel) => void) | undefined
  private readonly open = new Set<Channel>()
  private total = 0
  private readonly closedTotals = { bytesIn: 0, bytesOut: 0, droppedDatagrams: 0 }
  private readonly closedDrops: DatagramDrops = { credit: 0, queue: 0, window: 0 }
  private ended: StarsockError | undefined

  constructor (
    /** Mapping id on the wire (unique on its connection). */
    readonly id: number,
    /** What was granted. */
    readonly offer: Offer,
    /** The other peer. */
    readonly peerId: string,
    /** Whether this side asked for it (`false`: the other side asked and we run it). */
    readonly local: boolean,
    /** The connection it lives on. */
    readonly mux: Muxer,
    private readonly onEnd: (mapping: Mapping, err: StarsockError) => void
  ) {
    super()
  }

  /** A short label for logs and prompts: `#3 connect/tcp 127.0.0.1:8080`, `#4 file "a.txt"`. */
  get label (): string {
    if (this.offer.kind === 'file') return `#${this.id} file ${JSON.stringify(this.offer.name)}`
    if (this.offer.kind === 'service') return `#${this.id} service/${this.offer.proto} ${this.offer.service ?? '?'}`
    return `#${this.id} ${this.offer.kind}/${this.offer.proto} ${this.offer.host}:${this.bound?.port ?? this.offer.port}`
  }

  /**
   * Whether the mapping's connection is end-to-end encrypted and `peerId` proved by the other
   * side; `false`: plaintext (an `insecure` agent), `peerId` is the server's word.
   */
  get secure (): boolean {
    return this.mux.secure
  }

  /** Whether the mapping is over. */
  get closed (): boolean {
    return this.ended !== undefined
  }

  /** The error the mapping ended with. */
  get error (): StarsockError | undefined {
    return this.ended
  }

  /**
   * Open a connect channel to the mapped host (a connect mapping this side asked for), or to the
   * service's target (a service mapping: the other peer picks it); settles once the other peer
   * has connected, or rejects with its code (`E_CONNECT_REFUSED`, ...).
   */
  async connect (options: { body?: Uint8Array, signal?: AbortSignal, src?: SockAddress } = {}): Promise<Channel> {
    if (!this.local || (this.offer.kind !== 'connect' && this.offer.kind !== 'service')) throw new TypeError('connect() is for connect and service mappings this side asked for')
    this.checkOpen()
    const dst = this.offer.kind === 'connect' ? { ip: this.offer.host, port: this.offer.port } : undefined
    const channel = await this.mux.open({
      type: 'sock', sock: 'connect', reliable: this.offer.proto === 'tcp', mapping: this.id, src: options.src, dst
    }, options)
    if (this.ended !== undefined) {
      channel.abort(this.ended)
      throw this.ended
    }
    this.add(channel)
    return channel
  }

  /**
   * Kill the mapping: tell the other side and close every channel. `E_KILLED` is final (a person
   * or the application said so); `E_PEER_SHUTDOWN` says this side is stopping, and the other side
   * may ask again once it is back.
   */
  kill (reason = 'Killed', code: 'E_KILLED' | 'E_PEER_SHUTDOWN' = 'E_KILLED'): void {
    if (this.ended !== undefined) return
    const err = new StarsockError(code, code === 'E_KILLED' ? `Mapping ${this.label} killed: ${reason}` : `Mapping ${this.label} closed: ${reason}`)
    this.mux.kill(this.id, err)
    this.end(err)
  }

  /** Channels open now. */
  channels (): Channel[] {
    return [...this.open]
  }

  /** Figures now. */
  stats (): MappingStats {
    const s = { ...this.closedTotals, droppedBy: { ...this.closedDrops }, channelsOpen: this.open.size, channelsTotal: this.total, secure: this.secure }
    for (const c of this.open) {
      const cs = c.stats()
      s.bytesIn += cs.receivedBytes
      s.bytesOut += cs.sentBytes
      s.droppedDatagrams += cs.droppedDatagrams
      addDrops(s.droppedBy, cs.droppedBy)
    }
    return s
  }

  /** Track a channel of this mapping (closed with it). */
  add (channel: Channel): void {
    if (this.ended !== undefined) return channel.abort(this.ended)
    this.open.add(channel)
    this.total++
    this.emit('channel', channel)
    void channel.whenClosed.then(() => this.forget(channel))
  }

  private forget (channel: Channel): void {
    if (!this.open.delete(channel)) return
    const cs = channel.stats()
    this.closedTotals.bytesIn += cs.receivedBytes
    this.closedTotals.bytesOut += cs.sentBytes
    this.closedTotals.droppedDatagrams += cs.droppedDatagrams
    addDrops(this.closedDrops, cs.droppedBy)
  }

  /** The mapping is over (killed either side, or its connection went down). */
  end (err: StarsockError): void {
    if (this.ended !== undefined) return
    this.ended = err
    for (const c of [...this.open]) {
      c.abort(err)
      this.forget(c)
    }
    this.bindChannel?.abort(err)
    this.onEnd(this, err)
    this.emit('close', err)
  }

  private checkOpen (): void {
    if (this.ended !== undefined) throw this.ended
  }
}

/** Add the drops of `more` to `into`. */
export function addDrops<T extends { [K in keyof T]: number }> (into: T, more: Partial<T>): void {
  for (const key of Object.keys(more) as Array<keyof T>) into[key] = (into[key] + (more[key] ?? 0)) as T[keyof T]
}
