/// <reference types="vite/client" />
/**
 * The starsock page: a browser peer on the server that serves it. Each part of the page is a
 * module with its own `setup`: the session and identity (`session.ts`), the peers online
 * (`peers.ts`), chat (`chat.ts`), files (`files.ts`), tunnels (`tunnels.ts`), consent and
 * mappings (`consent.ts`), and the live view (`live.ts`). They share a `PageContext`; the parts'
 * agent options are merged here.
 */
import type { SockAgentOptions } from '../client/sock/agent.ts'
import { StarsockError } from '../shared/errors.ts'
import { setupChat } from './chat.ts'
import { askTimeoutOf, setupConsent } from './consent.ts'
import { PageContext, type AgentPart } from './context.ts'
import { byId } from './dom.ts'
import { setupEnable } from './enable.ts'
import { setupFiles } from './files.ts'
import { setupInvite } from './invite.ts'
import { setupLive } from './live.ts'
import { setupPeers } from './peers.ts'
import { encryptedUrl, plaintextModeOf, setPlaintextMode } from './security.ts'
import { runSession } from './session.ts'
import { ChatThreads } from './threads.ts'
import { takeToken } from './token.ts'
import { setupTunnels } from './tunnels.ts'

/** The server's token (`#token=`, `?token=`, or typed in), for a server started with `--token`; read first, as it leaves the address bar. */
const token = takeToken()
const params = new URLSearchParams(location.search)
/**
 * The server: the one that serves the page, at the page's own folder (`/`, or the prefix of a
 * server with a `path`, `/starsock/` for `/starsock/socket.io`: the client finds socket.io there).
 * Only a development build takes `?server=`: in production a crafted link could otherwise make
 * this identity join a server of someone else's.
 */
const SERVER = (import.meta.env.DEV ? params.get('server') : null) ?? new URL('.', location.href).href
/**
 * `?insecure=1`: plaintext mode, for measurement only (`security.ts`). The page says so in a
 * warning it keeps on show; by default every connection is end-to-end encrypted.
 */
const PLAINTEXT_MODE = plaintextModeOf(location.search)
setPlaintextMode(PLAINTEXT_MODE)

const ctx = new PageContext()
/** Chat threads per peer: `chat.ts` fills them, `peers.ts` shows their unread counts. */
const threads = new ChatThreads()
setupPeers(ctx, threads)
const consent = setupConsent(ctx)
const files = setupFiles(ctx)
const parts: AgentPart[] = [setupChat(ctx, threads), consent, files, setupTunnels(ctx)]
// Every `[data-needs]` control waits until it can work (joined, a peer picked).
setupEnable(ctx)

/** The agent's options: every part's rules, channels and handlers; files are asked by `files`, other offers by `consent`. */
function agentOptions (): SockAgentOptions {
  const channels = Object.assign({}, ...parts.map((p) => p.channels ?? {})) as NonNullable<AgentPart['channels']>
  return {
    // `insecure`: the agent takes plaintext connections only in plaintext mode (by default it
    // refuses them with E_SECURE_REQUIRED).
    insecure: PLAINTEXT_MODE,
    // How long a person has to answer an offer: `?ask-timeout=SECONDS` (2 to 600), else the agent's 60 s.
    askTimeoutMs: askTimeoutOf(location.search),
    allow: parts.flatMap((p) => p.allow?.() ?? []),
    ask: async (request, signal) => {
      const asker = request.offer.kind === 'file' ? files.ask : consent.ask
      return asker === undefined ? false : await asker(request, signal)
    },
    files: files.files,
    onAccept: parts.find((p) => p.onAccept !== undefined)?.onAccept,
    onChannel: async (channel, _body, mux) => {
      const type = channel.header.type
      const take = Object.hasOwn(channels, type) ? channels[type] : undefined
      if (take === undefined) throw new StarsockError('E_UNSUPPORTED', `The page takes no ${type} channels`)
      take(channel, mux)
      return undefined
    }
  }
}

const session = runSession(ctx, { server: SERVER, slot: params.get('slot') ?? 'default', token, plaintext: PLAINTEXT_MODE, agentOptions })
setupLive(ctx, SERVER, session.token)
setupInvite(ctx, session.token)

if (PLAINTEXT_MODE) {
  byId('plaintext-mode').hidden = false
  byId<HTMLAnchorElement>('encrypted-link').href = encryptedUrl(location.href)
  const mode = byId('mode')
  mode.dataset.mode = 'plaintext'
  mode.textContent = 'Plaintext mode: connections are not encrypted, and peer ids are the server\'s word.'
}
