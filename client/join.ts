/**
 * The join on each fresh server connection: hello (with takeover and the resume id), `ss-join`
 * with the crypto challenge, the peer list, and what a refusal means — a first join fails, a
 * rejoin refused by a passing limit retries with backoff, an address taken while away displaces.
 */
import { errorFromWire, StarsockError } from '../shared/errors.ts'
import { EVENTS, type HelloReply, type HelloRequest } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import type { PeerProfile } from '../shared/profile.ts'
import { checkDisplaced, checkHelloReply } from '../shared/validate.ts'
import { publicKeyHex, signNonce, type Identity } from './identity.ts'
import type { PeerList } from './peer-list.ts'
import type { Requester } from './server-link.ts'

/** Time the server has to answer hello; the original server never does. */
const HELLO_TIMEOUT_MS = 3000

/** What a join needs to know. */
export interface JoinOptions {
  identity: Identity
  /** The address joined. */
  addr: string
  /** Ask to take the address over on the first join. */
  takeover: boolean
  /** Sent in every hello: takes the identity back after a reconnect (never logged). */
  resumeId: string
  /** Ask in every hello for stream data as raw frames. @default false */
  rawFrames?: boolean
  reconnectDelayMs: number
  reconnectDelayMaxMs: number
  logger: Logger
  /** This peer's profile now, sent in every hello. */
  profile?: () => PeerProfile
}

/** What a join tells the peer. */
export interface JoinHooks {
  /** Whether the peer closed (a join then stops where it is). */
  closed: () => boolean
  /** Joined; `starsock` is whether the server answered hello (a starsock server). */
  joined: (starsock: boolean) => void
  /** A failure that leaves the peer open (a drop, a timeout, a rejoin that will be retried). */
  error: (err: StarsockError) => void
  /** A failure that closes the peer. */
  fail: (err: StarsockError) => void
}

/** Runs the join on every connection of one peer, and keeps what joins share. */
export class Join {
  /** The server's hello reply on the current connection; `undefined` from a server without one. */
  hello: HelloReply | undefined
  private generation = 0
  private joinedOnce = false
  private retries = 0
  private retryTimer: ReturnType<typeof setTimeout> | undefined

  constructor (
    private readonly link: Requester,
    private readonly peers: PeerList,
    private readonly options: JoinOptions,
    private readonly hooks: JoinHooks
  ) {}

  /** Run hello and the challenge on a fresh server connection, then load the peer list; settles when done or given up (never rejects). */
  async run (): Promise<void> {
    // A join belongs to one server connection; after any await, a newer connection wins.
    const generation = ++this.generation
    const stale = (): boolean => generation !== this.generation || this.hooks.closed()
    try {
      // Take over only on the first join: after a drop, the resume id proves the stale socket is
      // this client's own, and any other holder took the identity while this one was away.
      const request: HelloRequest = { peerEvents: true, peerBatch: true, takeover: this.options.takeover && !this.joinedOnce, resume: this.options.resumeId, rawFrames: this.options.rawFrames, dialHints: true, profile: this.options.profile?.() }
      const sayHello = async (req: HelloRequest): Promise<{ err: unknown, reply: unknown } | undefined> => await this.link.request(EVENTS.HELLO, [req], { timeoutMs: HELLO_TIMEOUT_MS })
        .then(([err, reply]) => ({ err, reply }), () => undefined) // the original server does not answer
      let answer = await sayHello(request)
      if (stale()) return
      if (answer !== undefined && answer.err != null && request.profile !== undefined) {
        // A server that refuses the profile (another Unicode table, a kind it does not know yet)
        // still speaks starsock: join without the profile rather than as a legacy client.
        this.options.logger.warn({ err: String(answer.err) }, 'the server refused this peer\'s profile: joined without a name')
        answer = await sayHello({ ...request, profile: undefined })
        if (stale()) return
      }
      const hello = answer !== undefined && answer.err == null ? checkHelloReply(answer.reply) : undefined
      this.hello = hello
      const gathering = this.peers.gather()
      const { addr, identity } = this.options
      const [err1, nonce, firstPeers] = await this.link.request(EVENTS.JOIN, [addr, publicKeyHex(identity)])
      if (stale()) return
      if (err1 != null) throw this.joinError(err1)
      let peers = firstPeers
      if (typeof nonce === 'string') {
        const [err2, , joinedPeers] = await this.link.request(EVENTS.JOIN, [addr, await signNonce(identity, nonce)])
        if (stale()) return
        if (err2 != null) throw this.joinError(err2)
        peers = joinedPeers
      }
      gathering.collectAll(peers)
      if (hello !== undefined && !await gathering.loadPages(this.link)) this.options.logger.warn('peer list cut at the page cap')
      if (stale()) return
      gathering.apply()
      this.joinedOnce = true
      this.retries = 0
      this.hooks.joined(hello !== undefined)
    } catch (err) {
      if (!stale()) this.failed(err, generation)
    }
  }

  /** `starsock:displaced`: another client took this identity over; fail (close) rather than reconnect into a fight. */
  displaced (payload: unknown): void {
    const info = checkDisplaced(payload)
    if (info === undefined || info.addr !== this.options.addr || this.hooks.closed()) return
    const how = info.reason === 'takeover' ? 'took this peer id over' : 'joined this peer id (a websocket-star client)'
    this.hooks.fail(new StarsockError('E_DISPLACED', `Displaced: another client ${how} from ${info.by}`))
  }

  /** Stop a pending retry (the peer closes). */
  cancel (): void {
    clearTimeout(this.retryTimer)
  }

  private failed (err: unknown, generation: number): void {
    const e = err instanceof StarsockError ? err : new StarsockError('E_BAD_REQUEST', String(err))
    this.options.logger.warn({ code: e.code }, 'join failed')
    if (e.code === 'E_DISCONNECTED' || e.code === 'E_TIMEOUT') this.hooks.error(e)
    else if (this.joinedOnce && e.code.startsWith('E_LIMIT_')) this.retry(e, generation)
    else this.hooks.fail(e)
  }

  /**
   * A rejoin refused by a limit that passes (join rate, peers per IP, peers): say so and try again
   * on the same connection with backoff, still `reconnecting`. A first join fails instead.
   */
  private retry (err: StarsockError, generation: number): void {
    this.hooks.error(err)
    const { reconnectDelayMs, reconnectDelayMaxMs } = this.options
    const delay = Math.min(reconnectDelayMaxMs, reconnectDelayMs * 2 ** this.retries++) * (0.5 + Math.random() / 2)
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => {
      // A newer connection runs its own join.
      if (generation === this.generation && !this.hooks.closed() && this.link.connected) void this.run()
    }, delay)
  }

  /** A join refused: the address held elsewhere after this peer had it means it was taken while away. */
  private joinError (wire: unknown): StarsockError {
    const err = errorFromWire(wire)
    if (err.code !== 'E_ADDRESS_IN_USE' || !this.joinedOnce) return err
    return new StarsockError('E_DISPLACED', `Displaced while disconnected: ${err.message.replace(/^Address in use: /, '')}`)
  }
}
