/**
 * What the page's parts share: the peer and sock agent of the session on show (both change on a
 * new identity, a "use here", a token entered), the picked peer, and events when they change.
 * Each part (`consent.ts`, `files.ts`, `peers.ts`, `chat.ts`, `tunnels.ts`, `live.ts`,
 * `invite.ts`, `session.ts`) takes the context and adds its own agent options and listeners.
 */
import type { Channel } from '../client/mux/channel.ts'
import type { Muxer } from '../client/mux/muxer.ts'
import type { StarsockPeer } from '../client/peer.ts'
import type { OfferAnswer, OfferRequest, SockAgent, SockAgentOptions } from '../client/sock/agent.ts'
import { Emitter } from '../client/emitter.ts'
import { SecurityBook } from './security.ts'
import { shortId } from './dom.ts'

/** Events of the page's context. */
export interface PageEvents extends Record<string, unknown> {
  /** A new session is up: its peer and agent (listen on them here; they are dropped with it). */
  session: { peer: StarsockPeer, agent: SockAgent }
  /** The session on show closed (before a new one, or for good). */
  'session:close': undefined
  /** The picked peer changed (`undefined`: none). */
  picked: string | undefined
  /** The security summary of a peer changed (`book`). */
  security: undefined
}

/** A part's contribution to the agent's options (merged by `main.ts`; see `agentOptions`). */
export interface AgentPart {
  /** Rules this part adds (the person's remembered "always" answers). */
  allow?: () => string[]
  /** Asks a person about offers of these kinds (`file`, or the others). */
  ask?: (request: OfferRequest, signal: AbortSignal) => Promise<OfferAnswer>
  files?: SockAgentOptions['files']
  onAccept?: SockAgentOptions['onAccept']
  /** Channels of the application's own types this part takes (`chat`, ...). */
  channels?: Record<string, (channel: Channel, mux: Muxer) => void>
}

/** The page's shared state. One per page. */
export class PageContext extends Emitter<PageEvents> {
  peer: StarsockPeer | undefined
  agent: SockAgent | undefined
  private pickedId: string | undefined
  /** Per peer, the security of its sessions (badges). */
  readonly book = new SecurityBook(() => this.emit('security', undefined))

  /**
   * How the page names a peer in words (prompts, transfers, chat): by default its short id;
   * `peers.ts` puts the display name first once peers have them.
   */
  nameOf: (peerId: string) => string = shortId

  /** The picked peer, if any. */
  get picked (): string | undefined {
    return this.pickedId
  }

  pick (peerId: string | undefined): void {
    if (peerId === this.pickedId) return
    this.pickedId = peerId
    this.emit('picked', peerId)
  }

  /** The picked peer; throws "Pick a peer first" when none is (the forms say it in place). */
  needPeer (): string {
    if (this.pickedId === undefined) throw new Error('Pick a peer first')
    return this.pickedId
  }

  /** The agent of the session on show; throws when there is none (not joined). */
  needAgent (): SockAgent {
    if (this.agent === undefined || this.agent.isClosed) throw new Error('Not joined yet')
    return this.agent
  }

  /** A new session started (`session.ts`). */
  started (peer: StarsockPeer, agent: SockAgent): void {
    this.peer = peer
    this.agent = agent
    this.emit('session', { peer, agent })
  }

  /** The session on show ended (`session.ts`). */
  stopped (): void {
    this.peer = undefined
    this.agent = undefined
    this.pick(undefined)
    this.book.forget()
    this.emit('session:close', undefined)
  }
}
