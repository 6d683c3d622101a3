/**
 * The page's session: the identity (IndexedDB), joining the server (with its token), one identity
 * per tab (Web Locks, the server's displacement), "use here" and "new identity", and the agent
 * whose options the page's parts give (`AgentPart`).
 */
import { loadOrCreateBrowserIdentity, replaceBrowserIdentity } from '../client/identity.browser.ts'
import type { Identity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { StarsockError } from '../shared/errors.ts'
import { byId } from './dom.ts'
import { describeError } from './security.ts'
import type { PageContext } from './context.ts'
import { savedName } from './peers.ts'
import { askForToken, isTokenRefusal } from './token.ts'

export interface SessionOptions {
  /** The server's URL (the page's own folder). */
  server: string
  /** Slot of the identity in this browser (`?slot=`). */
  slot: string
  /** The token to join with (`#token=`, or kept by this tab). */
  token: string | undefined
  /** Plaintext mode (`?insecure=1`). */
  plaintext: boolean
  /** The agent's options, from the page's parts (made anew for each session). */
  agentOptions: () => SockAgentOptions
}

function randomHex (bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')
}

/** Run the page's session; returns the token in use (it changes once the person enters one). */
export function runSession (ctx: PageContext, options: SessionOptions): { token: () => string | undefined } {
  let { slot, token } = options
  let resuming: { peerId: string, resumeId: string } | undefined
  const resumeKey = (peerId: string): string => `starsock:resume:${slot}:${peerId}`

  const showState = (s: string, text = s): void => {
    const stateLabel = byId('state')
    stateLabel.textContent = text
    stateLabel.dataset.state = s
  }

  /**
   * The resume id a reload of this tab left for `peerId`, taken out of session storage: it is there
   * only between a `pagehide` and the next load, so a duplicated tab does not get it too.
   */
  const takeResumeId = (peerId: string): string | undefined => {
    try {
      const id = sessionStorage.getItem(resumeKey(peerId)) ?? undefined
      sessionStorage.removeItem(resumeKey(peerId))
      return id
    } catch {
      return undefined
    }
  }

  addEventListener('pagehide', () => {
    if (ctx.peer === undefined || ctx.peer.state === 'closed' || resuming === undefined) return
    try { sessionStorage.setItem(resumeKey(resuming.peerId), resuming.resumeId) } catch {}
  })

  const start = async (identity: Identity, takeover: boolean): Promise<void> => {
    byId('my-id').textContent = identity.peerId
    // A reload of this tab resumes its own session (the server holds the identity for it a while);
    // a takeover starts afresh.
    const resumeId = (takeover ? undefined : takeResumeId(identity.peerId)) ?? randomHex(32)
    resuming = { peerId: identity.peerId, resumeId }
    const p = await createPeer({ server: options.server, identity, token, takeover, resumeId, secure: !options.plaintext, profile: { name: savedName(identity.peerId) } })
    const a = createSockAgent(p, options.agentOptions())
    a.on('session', (mux) => { if (ctx.agent === a) ctx.book.session(mux) })
    // A plaintext connection the agent refused (E_SECURE_REQUIRED) shows on the badge of the id it claimed, as a claim.
    a.on('refused', ({ peerId, error }) => { if (ctx.agent === a) ctx.book.refused(peerId, error) })
    p.on('state', (s) => {
      const why = p.closedBy
      if (s === 'closed' && why?.code === 'E_DISPLACED') displacedHere(why)
      else if (s === 'closed' && isTokenRefusal(why)) failedToJoin(why)
      else showState(s)
    })
    ctx.started(p, a)
    showState(p.state)
  }

  let identity: Identity | undefined
  let releaseLock: (() => void) | undefined
  let waitingLock: AbortController | undefined

  const unlockIdentity = (): void => {
    waitingLock?.abort()
    waitingLock = undefined
    releaseLock?.()
    releaseLock = undefined
  }

  /**
   * Hold the Web Lock of `peerId` for as long as this tab uses that identity. `now`: settles with
   * `false` at once when another tab of this browser holds it; `wait`: queues for it (after a
   * "use here" the other tab lets go once it is displaced). `true` without Web Locks (an insecure
   * origin): the server's refusal still tells.
   */
  const lockIdentity = async (peerId: string, mode: 'now' | 'wait'): Promise<boolean> => {
    unlockIdentity()
    const locks = (navigator as Navigator & { locks?: LockManager }).locks
    if (locks === undefined) return true
    const waiting = new AbortController()
    if (mode === 'wait') waitingLock = waiting
    return await new Promise<boolean>((resolve) => {
      const lockOptions: LockOptions = mode === 'now' ? { ifAvailable: true } : { signal: waiting.signal }
      locks.request(`starsock:identity:${peerId}`, lockOptions, async (lock) => {
        if (lock === null) return resolve(false)
        resolve(true)
        await new Promise<void>((release) => { releaseLock = release })
      }).catch(() => resolve(mode === 'wait'))
    })
  }

  /**
   * Offer "use here" and "new identity" with `text`, in state `state`. The focus goes to "use here"
   * only when it is nowhere else: a tab displaced while the person types keeps their focus, so an
   * Enter meant for a message never takes the identity back from the other tab.
   */
  const showConflict = (state: 'in-use' | 'displaced', text: string): void => {
    showState(state, state === 'displaced' ? 'displaced' : 'in use elsewhere')
    byId('conflict-text').textContent = text
    byId('identity-conflict').hidden = false
    if (document.activeElement === null || document.activeElement === document.body) byId('use-here').focus()
  }

  /** Close the session on show when called (not one started while this one closes). */
  const stop = async (): Promise<void> => {
    const [a, p] = [ctx.agent, ctx.peer]
    await a?.close()
    await p?.close()
    if (ctx.peer !== p) return
    ctx.stopped()
  }

  const displacedHere = (err: StarsockError): void => {
    unlockIdentity()
    // Nothing of the old session stays on show: no peers, no mappings; unless a quick "use here"
    // started a new one meanwhile, which stays.
    void stop()
    showConflict('displaced', `This identity is now used in another tab or program (${err.message.replace(/^Displaced: /, '')}). This page is not joined any more.`)
  }

  /** Join as `id`: first make sure no other tab of this browser is it, unless taking it over. */
  const begin = async (id: Identity, takeover: boolean): Promise<void> => {
    identity = id
    byId('identity-conflict').hidden = true
    byId('my-id').textContent = id.peerId
    if (takeover) {
      void lockIdentity(id.peerId, 'wait')
    } else if (!await lockIdentity(id.peerId, 'now')) {
      return showConflict('in-use', 'This identity is in use in another tab of this browser.')
    }
    showState('connecting')
    try {
      await start(id, takeover)
    } catch (err) {
      if (!(err instanceof StarsockError) || err.code !== 'E_ADDRESS_IN_USE') throw err
      unlockIdentity()
      showConflict('in-use', `This identity is in use elsewhere: ${err.message.replace(/^Address in use: this peer id is /, '')}.`)
    }
  }

  /** Whether the token field is on show (one join follows its answer, whatever failed meanwhile). */
  let askingToken = false

  const failedToJoin = (err: unknown): void => {
    if (!isTokenRefusal(err)) return showState('failed', `could not join: ${describeError(err)}`)
    // The server has a token: ask for it, then join again (with the identity on show by then).
    showState('refused', token === undefined ? 'this server needs a token' : 'token refused')
    if (askingToken) return
    askingToken = true
    void askForToken(token).then(async (entered) => {
      askingToken = false
      token = entered
      await stop()
      // This tab still holds the identity's lock (begin took it): join again under it.
      showState('connecting')
      await start(identity as Identity, false)
    }).catch(failedToJoin)
  }

  byId<HTMLButtonElement>('use-here').addEventListener('click', () => {
    void (async () => {
      await stop()
      await begin(identity as Identity, true)
    })().catch(failedToJoin)
  })

  /**
   * Make and join a new identity. While another tab or program has this one, the new one goes in a
   * slot of this tab's own (kept in the URL), so the shared slot keeps the identity in use there.
   */
  const newIdentity = async (): Promise<void> => {
    const ownSlot = !byId('identity-conflict').hidden
    await stop()
    if (ownSlot) {
      slot = `tab-${crypto.getRandomValues(new Uint32Array(2)).join('')}`
      const url = new URL(location.href)
      url.searchParams.set('slot', slot)
      history.replaceState(null, '', url)
    }
    await begin(await replaceBrowserIdentity(slot), false)
  }

  byId<HTMLButtonElement>('conflict-new-identity').addEventListener('click', () => {
    newIdentity().catch(failedToJoin)
  })
  byId<HTMLButtonElement>('new-identity').addEventListener('click', () => {
    newIdentity().catch(failedToJoin)
  })

  void (async () => {
    await begin((await loadOrCreateBrowserIdentity(slot)).identity, false)
  })().catch(failedToJoin)

  return { token: () => token }
}
