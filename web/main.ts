/// <reference types="vite/client" />
/**
 * The starsock page: a browser peer on the server that serves it. Identity in IndexedDB, the
 * peers online, chat, file transfer, tunnels through Node peers, consent prompts and mappings,
 * and a live throughput chart.
 */
import { loadOrCreateBrowserIdentity, replaceBrowserIdentity } from '../client/identity.browser.ts'
import type { Identity } from '../client/identity.ts'
import type { Channel } from '../client/mux/channel.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent, type OfferRequest, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { StarsockError } from '../shared/errors.ts'
import { ThroughputChart } from './chart.ts'
import { byId, el, formatBytes } from './dom.ts'
import { MAX_FILE_BYTES, receiveFile, sendFile } from './files.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { answerHttp, fetchThrough, serveThrough, type Served } from './tunnels.ts'
import { askForToken, isTokenRefusal, takeToken } from './token.ts'
import { badge, describeError, encryptedUrl, plaintextModeOf, SecurityBook, setPlaintextMode, type Security } from './security.ts'

/** The server's token (`#token=`, `?token=`, or typed in), for a server started with `--token`; read first, as it leaves the address bar. */
let token = takeToken()
const params = new URLSearchParams(location.search)
/**
 * The server: the one that serves the page, at the page's own folder (`/`, or the prefix of a
 * server with a `path`, `/starsock/` for `/starsock/socket.io`: the client finds socket.io there).
 * Only a development build takes `?server=`: in production a crafted link could otherwise make
 * this identity join a server of someone else's.
 */
const SERVER = (import.meta.env.DEV ? params.get('server') : null) ?? new URL('.', location.href).href
/** `?slot=` keeps separate identities for several pages in one browser profile. */
let slot = params.get('slot') ?? 'default'
/**
 * `?insecure=1`: plaintext mode, for measurement only (`security.ts`). The page says so in a
 * warning it keeps on show; by default every connection is end-to-end encrypted.
 */
const PLAINTEXT_MODE = plaintextModeOf(location.search)
setPlaintextMode(PLAINTEXT_MODE)

let peer: StarsockPeer | undefined
let agent: SockAgent | undefined
let picked: string | undefined
let served: Served | undefined
const chats = new Map<string, Promise<Channel>>()
/** Whether each chat channel's own connection is end-to-end encrypted (its badge; not the peer's summary). */
const chatSecure = new WeakMap<Channel, boolean>()
const chart = new ThroughputChart(byId<HTMLCanvasElement>('chart'), byId('rates'))
const book = new SecurityBook(() => {
  renderPeers()
  renderPicked()
})

/** A chat line, with the badge of the connection it went on. */
function say (text: string, from: string, security?: Security): void {
  const item = el('li', { class: from === 'me' ? 'mine' : 'theirs' })
  item.append(el('span', { class: 'from' }, from === 'me' ? 'you' : from))
  if (security !== undefined) item.append(badge(security))
  item.append(el('span', { class: 'text' }, text))
  byId('messages').append(item)
  item.scrollIntoView({ block: 'nearest' })
}

function problem (where: HTMLElement, err: unknown, peerId?: string): void {
  where.textContent = describeError(err)
  where.dataset.state = 'failed'
  if (peerId !== undefined) book.failed(peerId, err)
}

function needPeer (): string {
  if (picked === undefined) throw new Error('Pick a peer first')
  return picked
}

// ---- peers ----

function renderPeers (): void {
  const list = byId('peer-list')
  const peers = peer?.peers() ?? []
  byId('peer-count').textContent = String(peers.length)
  list.replaceChildren(...peers.map(({ peerId }) => {
    const item = el('li', { role: 'option', tabindex: '0', 'aria-selected': String(peerId === picked), 'data-peer': peerId })
    item.append(el('span', { class: 'peer-id' }, peerId))
    const security = book.of(peerId)
    if (security !== undefined) item.append(' ', badge(security))
    const pick = (): void => {
      picked = peerId
      renderPicked()
      renderPeers()
    }
    item.addEventListener('click', pick)
    item.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick() } })
    return item
  }))
}

/** The picked peer, with its badge once the page has a session with it (or failed to secure one). */
function renderPicked (): void {
  if (picked === undefined) return
  const security = book.of(picked)
  byId('picked').replaceChildren(`Picked ${picked}`, ...(security === undefined ? [] : [' ', badge(security)]))
}

// ---- chat ----

async function chatChannel (peerId: string): Promise<Channel> {
  let channel = chats.get(peerId)
  if (channel === undefined) {
    channel = (async () => {
      const mux = await (agent as SockAgent).session(peerId)
      const c = await mux.open({ type: 'chat', reliable: true })
      chatSecure.set(c, mux.secure)
      return c
    })()
    chats.set(peerId, channel)
    channel.then((c) => { void c.whenClosed.then(() => chats.delete(peerId)) }, () => chats.delete(peerId))
  }
  return await channel
}

async function readChat (channel: Channel, secure: boolean): Promise<void> {
  const reader = new LineReader(channel)
  try {
    for (;;) {
      const line = await reader.next() as { text?: unknown } | null
      if (line === null) return
      if (typeof line.text === 'string') say(line.text.slice(0, 4000), channel.remotePeer, { secure })
    }
  } catch {
    channel.abort()
  }
}

byId<HTMLFormElement>('chat-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const input = byId<HTMLInputElement>('chat-text')
  const text = input.value
  void (async () => {
    let peerId: string | undefined
    try {
      peerId = needPeer()
      const channel = await chatChannel(peerId)
      await writeLine(channel, { text })
      say(text, 'me', { secure: chatSecure.get(channel) === true })
      input.value = ''
    } catch (err) {
      if (peerId !== undefined) book.failed(peerId, err)
      say(`not sent: ${describeError(err)}`, 'me')
    }
  })()
})

// ---- files ----

byId<HTMLFormElement>('file-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const file = byId<HTMLInputElement>('file-input').files?.[0]
  if (file === undefined) return
  void (async () => {
    try {
      await sendFile(agent as SockAgent, needPeer(), file, byId('transfers'), book)
    } catch (err) {
      byId('transfers').prepend(el('li', { 'data-state': 'failed' }, `Not sent: ${(err as Error).message}`))
    }
  })()
})

// ---- tunnels ----

byId<HTMLFormElement>('fetch-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const out = byId('fetch-result')
  out.textContent = 'fetching…'
  delete out.dataset.state
  void (async () => {
    let peerId: string | undefined
    try {
      peerId = needPeer()
      const text = await fetchThrough(agent as SockAgent, peerId, byId<HTMLInputElement>('fetch-host').value, Number(byId<HTMLInputElement>('fetch-port').value), byId<HTMLInputElement>('fetch-path').value || '/')
      out.textContent = text
      out.dataset.state = 'done'
    } catch (err) {
      problem(out, err, peerId)
    }
  })()
})

byId<HTMLFormElement>('serve-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const out = byId('serve-result')
  const file = byId<HTMLInputElement>('serve-file').files?.[0]
  if (file === undefined) return
  out.textContent = 'asking the peer to listen…'
  delete out.dataset.state
  void (async () => {
    let peerId: string | undefined
    try {
      peerId = needPeer()
      served = { name: file.name, type: file.type === '' ? 'application/octet-stream' : file.type, data: new Uint8Array(await file.arrayBuffer()) }
      const mapping = await serveThrough(agent as SockAgent, peerId, byId<HTMLInputElement>('serve-host').value, Number(byId<HTMLInputElement>('serve-port').value), served)
      out.replaceChildren(`Serving ${file.name} (${formatBytes(served.data.byteLength)}) on port ${mapping.bound?.port ?? '?'} of ${mapping.peerId} `, badge({ secure: mapping.secure }))
      out.dataset.port = String(mapping.bound?.port ?? '')
      out.dataset.state = 'done'
    } catch (err) {
      problem(out, err, peerId)
    }
  })()
})

// ---- consent and mappings ----

/** Show an offer with accept and deny; settles with the answer (or `false` when withdrawn). */
async function askHere (request: OfferRequest, signal: AbortSignal): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const card = el('li', { class: 'offer', 'data-peer': request.peerId })
    const accept = el('button', { type: 'button', class: 'accept' }, 'Accept')
    const deny = el('button', { type: 'button', class: 'deny' }, 'Deny')
    const done = (answer: boolean): void => {
      card.remove()
      resolve(answer)
    }
    accept.addEventListener('click', () => done(true))
    deny.addEventListener('click', () => done(false))
    signal.addEventListener('abort', () => done(false), { once: true })
    // The badge of the connection the offer came on, not the peer's summary.
    card.append(el('span', {}, `${request.peerId} asks: ${request.text}`), badge({ secure: request.secure }), accept, deny)
    byId('offers').append(card)
    accept.focus()
  })
}

const mappingRows = new Map<Mapping, { row: HTMLTableRowElement, channels: HTMLTableCellElement }>()

/** Keep the mappings table in step: rows come and go with mappings, counts update in place (focus stays). */
function renderMappings (): void {
  const live = new Set(agent?.mappings() ?? [])
  const body = byId('mappings').querySelector('tbody') as HTMLTableSectionElement
  for (const [m, { row }] of mappingRows) {
    if (!live.has(m)) {
      row.remove()
      mappingRows.delete(m)
    }
  }
  for (const m of live) {
    let entry = mappingRows.get(m)
    if (entry === undefined) {
      const row = el('tr', { 'data-mapping': m.label, 'data-peer': m.peerId })
      const kill = el('button', { type: 'button', class: 'kill', 'aria-label': `Kill mapping ${m.label}` }, 'Kill')
      kill.addEventListener('click', () => m.kill('killed in the page'))
      const cell = el('td')
      cell.append(kill)
      const channels = el('td', { class: 'channels' })
      const peerCell = el('td', {}, `${m.peerId} `)
      peerCell.append(badge({ secure: m.secure }))
      row.append(peerCell, el('td', {}, `${m.local ? 'asked: ' : 'granted: '}${m.label}`), channels, cell)
      body.append(row)
      entry = { row, channels }
      mappingRows.set(m, entry)
    }
    entry.channels.textContent = String(m.stats().channelsOpen)
  }
}

/** What the page answers on accept channels of a mapping it granted: the served file, or a greeting. */
function greeting (): Served {
  return served ?? { name: 'hello.txt', type: 'text/plain; charset=utf-8', data: new TextEncoder().encode(`hello from the starsock page ${peer?.peerId ?? ''}\n`) }
}

// ---- the peer ----

async function start (identity: Identity, takeover: boolean): Promise<void> {
  byId('my-id').textContent = identity.peerId
  // A reload of this tab resumes its own session (the server holds the identity for it a while);
  // a takeover starts afresh.
  const resumeId = (takeover ? undefined : takeResumeId(identity.peerId)) ?? randomHex(32)
  resuming = { peerId: identity.peerId, resumeId }
  const p = await createPeer({ server: SERVER, identity, token, takeover, resumeId, secure: !PLAINTEXT_MODE })
  peer = p
  // `insecure`: the agent takes plaintext connections only in plaintext mode (by default it
  // refuses them with E_SECURE_REQUIRED).
  const options: SockAgentOptions = {
    insecure: PLAINTEXT_MODE,
    ask: askHere,
    // TODO(issue 17): a page takes every file offered (within MAX_FILE_BYTES and the quota), as it did before files were offers.
    allow: ['file:*'],
    files: { maxFileBytes: MAX_FILE_BYTES, onFile: (channel, mapping) => { void receiveFile(channel, byId('transfers'), mapping.offer, { secure: mapping.secure }, book) } },
    // Accept channels of an accept offer granted here: the page answers each with its greeting.
    onAccept: (channel) => { void answerHttp(channel, greeting()) },
    onChannel: async (channel, _body, mux) => {
      if (channel.header.type === 'chat') void readChat(channel, mux.secure)
      else throw new StarsockError('E_UNSUPPORTED', `The page takes no ${channel.header.type} channels`)
      return undefined
    }
  }
  const a = createSockAgent(p, options)
  agent = a
  a.on('session', (mux) => { if (agent === a) book.session(mux) })
  // A plaintext connection the agent refused (E_SECURE_REQUIRED) shows on the badge of the id it claimed, as a claim.
  a.on('refused', ({ peerId, error }) => { if (agent === a) book.refused(peerId, error) })
  a.on('mapping', (m) => {
    m.on('channel', renderMappings)
    renderMappings()
  })
  a.on('mapping:close', renderMappings)
  p.on('peer:join', renderPeers)
  p.on('peer:leave', (info) => { book.forget(info.peerId) })
  p.on('state', (s) => {
    const why = p.closedBy
    if (s === 'closed' && why?.code === 'E_DISPLACED') displacedHere(why)
    else if (s === 'closed' && isTokenRefusal(why)) failedToJoin(why)
    else showState(s)
  })
  showState(p.state)
  renderPeers()
}

function showState (s: string, text = s): void {
  const stateLabel = byId('state')
  stateLabel.textContent = text
  stateLabel.dataset.state = s
}

// ---- one identity, one place ----

let resuming: { peerId: string, resumeId: string } | undefined
const resumeKey = (peerId: string): string => `starsock:resume:${slot}:${peerId}`

function randomHex (bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * The resume id a reload of this tab left for `peerId`, taken out of session storage: it is there
 * only between a `pagehide` and the next load, so a duplicated tab does not get it too.
 */
function takeResumeId (peerId: string): string | undefined {
  try {
    const id = sessionStorage.getItem(resumeKey(peerId)) ?? undefined
    sessionStorage.removeItem(resumeKey(peerId))
    return id
  } catch {
    return undefined
  }
}

addEventListener('pagehide', () => {
  if (peer === undefined || peer.state === 'closed' || resuming === undefined) return
  try { sessionStorage.setItem(resumeKey(resuming.peerId), resuming.resumeId) } catch {}
})

let identity: Identity | undefined
let releaseLock: (() => void) | undefined
let waitingLock: AbortController | undefined

/**
 * Hold the Web Lock of `peerId` for as long as this tab uses that identity. `now`: settles with
 * `false` at once when another tab of this browser holds it; `wait`: queues for it (after a
 * "use here" the other tab lets go once it is displaced). `true` without Web Locks (an insecure
 * origin): the server's refusal still tells.
 */
async function lockIdentity (peerId: string, mode: 'now' | 'wait'): Promise<boolean> {
  unlockIdentity()
  const locks = (navigator as Navigator & { locks?: LockManager }).locks
  if (locks === undefined) return true
  const waiting = new AbortController()
  if (mode === 'wait') waitingLock = waiting
  return await new Promise<boolean>((resolve) => {
    const options: LockOptions = mode === 'now' ? { ifAvailable: true } : { signal: waiting.signal }
    locks.request(`starsock:identity:${peerId}`, options, async (lock) => {
      if (lock === null) return resolve(false)
      resolve(true)
      await new Promise<void>((release) => { releaseLock = release })
    }).catch(() => resolve(mode === 'wait'))
  })
}

function unlockIdentity (): void {
  waitingLock?.abort()
  waitingLock = undefined
  releaseLock?.()
  releaseLock = undefined
}

/** Offer "use here" and "new identity" with `text`, in state `state`. */
function showConflict (state: 'in-use' | 'displaced', text: string): void {
  showState(state, state === 'displaced' ? 'displaced' : 'in use elsewhere')
  byId('conflict-text').textContent = text
  byId('identity-conflict').hidden = false
  byId('use-here').focus()
}

function displacedHere (err: StarsockError): void {
  unlockIdentity()
  // Nothing of the old session stays on show: no peers, no mappings; unless a quick "use here"
  // started a new one meanwhile, which stays.
  const old = peer
  void stop().then(() => {
    if (peer !== old) return
    peer = undefined
    agent = undefined
    renderPeers()
    renderMappings()
  })
  showConflict('displaced', `This identity is now used in another tab or program (${err.message.replace(/^Displaced: /, '')}). This page is not joined any more.`)
}

/** Join as `id`: first make sure no other tab of this browser is it, unless taking it over. */
async function begin (id: Identity, takeover: boolean): Promise<void> {
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

function failedToJoin (err: unknown): void {
  if (!isTokenRefusal(err)) return showState('closed', `could not join: ${(err as Error).message}`)
  // The server has a token: ask for it, then join again (with the identity on show by then).
  showState('closed', token === undefined ? 'this server needs a token' : 'token refused')
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
async function newIdentity (): Promise<void> {
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

/** Close the session on show when called (not one started while this one closes). */
async function stop (): Promise<void> {
  const [a, p] = [agent, peer]
  await a?.close()
  await p?.close()
  if (peer !== p) return
  chats.clear()
  picked = undefined
  book.forget()
}

byId<HTMLButtonElement>('new-identity').addEventListener('click', () => {
  newIdentity().catch(failedToJoin)
})

/** The token `/status.json` refused (`null`: none refused): no use asking again with it. */
let figuresRefused: string | undefined | null = null

async function serverFigures (): Promise<void> {
  if (figuresRefused !== null && figuresRefused === token) return
  try {
    const asked = token
    // Relative: a server with a prefix serves its figures under it.
    const res = await fetch(new URL('status.json', SERVER.endsWith('/') ? SERVER : SERVER + '/'), { headers: asked === undefined ? {} : { authorization: `Bearer ${asked}` } })
    if (res.status === 401) figuresRefused = asked
    if (!res.ok) return
    const figures = await res.json() as Record<string, unknown>
    const list = byId('server-figures')
    const shown: Array<[string, string]> = [
      ['peers online', String(figures.peers ?? '?')],
      ['relayed', typeof figures.relayedBytes === 'number' ? formatBytes(figures.relayedBytes) : '?'],
      ['server', String(figures.version ?? '?')]
    ]
    list.replaceChildren(...shown.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
  } catch {}
}

setInterval(() => {
  const s = agent?.stats()
  if (s !== undefined) chart.sample(s.bytesIn, s.bytesOut)
  renderMappings()
}, 1000)
setInterval(() => { void serverFigures() }, 2000)
void serverFigures()

if (PLAINTEXT_MODE) {
  byId('plaintext-mode').hidden = false
  byId<HTMLAnchorElement>('encrypted-link').href = encryptedUrl(location.href)
  const mode = byId('mode')
  mode.dataset.mode = 'plaintext'
  mode.textContent = 'Plaintext mode: connections are not encrypted, and peer ids are the server\'s word.'
}

begin((await loadOrCreateBrowserIdentity(slot)).identity, false).catch(failedToJoin)
