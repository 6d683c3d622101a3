/**
 * Consent: offers from other peers (other than files, which `files.ts` asks about) open a prompt
 * (`prompt.ts`) in plain words; "Always for this peer" answers `'always'`, and the rule the agent
 * adds for it is kept per identity of the page (`always.ts`) with a Forget button each; the
 * mappings running (both directions) are listed with their traffic and a Kill button.
 */
import { ruleForOffer, type OfferRequest, type SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { formatAddress, type Offer } from '../shared/sock-protocol.ts'
import { parseRule, type SockRule } from '../shared/sock-rules.ts'
import { addAlways, loadAlways, MAX_ALWAYS_RULES, removeAlways, type AlwaysEntry } from './always.ts'
import type { AgentPart, PageContext } from './context.ts'
import { byId, el, formatBytes, secondsParam } from './dom.ts'
import { prompt } from './prompt.ts'
import { RateMeter } from './rate.ts'
import { badge } from './security.ts'

/** The URL parameter that sets how long a person has to answer an offer, in seconds (`?ask-timeout=20`). */
export const ASK_TIMEOUT_PARAM = 'ask-timeout'
/** Shortest and longest `?ask-timeout=` taken, in seconds; anything else leaves the agent's default (60 s). */
export const ASK_TIMEOUT_RANGE_S = [2, 600] as const

/** `askTimeoutMs` for the page's agent from `?ask-timeout=SECONDS`; undefined (the agent's default) without one or out of range. */
export function askTimeoutOf (search: string): number | undefined {
  return secondsParam(search, ASK_TIMEOUT_PARAM, ASK_TIMEOUT_RANGE_S)
}

const PROTO_WORDS = { tcp: 'TCP', udp: 'UDP' } as const

/** What an offer asks of this page, in words after the peer's name ("wants to …"). */
export function offerWords (offer: Offer): string {
  const at = `${formatAddress({ ip: offer.host, port: offer.port })} (${PROTO_WORDS[offer.proto]})`
  switch (offer.kind) {
    case 'accept': return offer.service === undefined
      ? `wants to forward to this page the connections it takes on its ${at}; the page answers each with the file it serves, or a greeting`
      : `wants to forward the connections it takes on its ${at} to your service ${offer.service}`
    case 'connect': return `wants to reach ${at} on this computer through your browser`
    case 'bind': return `wants this computer to listen on ${at} for it${offer.allowFrom === undefined ? '' : `, for ${offer.allowFrom.length === 0 ? 'nobody' : offer.allowFrom.join(', ')}`}`
    case 'service': return `wants to use your service ${offer.service ?? '?'}`
    case 'file': return `wants to send you the file ${JSON.stringify(offer.name)}`
  }
}

/** What a kept rule lets its peer do without asking, in words after the peer's name ("may …"). */
export function ruleWords (rule: SockRule): string {
  const ports = rule.ports[0] === rule.ports[1] ? String(rule.ports[0]) : `${rule.ports[0]}-${rule.ports[1]}`
  const at = `${rule.host === '*' ? 'any address' : rule.host.includes(':') ? `[${rule.host}]` : rule.host}:${ports} (${PROTO_WORDS[rule.proto]})`
  switch (rule.kind) {
    case 'accept': return `may forward to this page the connections it takes on its ${at}`
    case 'connect': return `may reach ${at} through this page`
    case 'bind': return `may have this page listen on ${at}`
    case 'service': return `may use your service ${rule.host}`
    default: return `may: ${rule.text}`
  }
}

/** The prompt's question: the peer by name, the connection's badge, what it wants, and its own label as its words. */
function question (request: OfferRequest, name: string): DocumentFragment {
  const text = document.createDocumentFragment()
  text.append('Peer ', el('strong', { class: 'peer-name' }, name), ' ', badge({ secure: request.secure }), ` ${offerWords(request.offer)}.`)
  if (request.offer.name !== '' && request.offer.kind !== 'file') text.append(' It calls this ', el('q', { class: 'their-words' }, request.offer.name), '.')
  if (!request.secure) text.append(el('span', { class: 'plaintext-note' }, ' This connection is plaintext: the peer id is only the server\'s word, so "always" is not offered.'))
  return text
}

/** The prompts for offers, the "always allowed" list, and the mappings table. */
export function setupConsent (ctx: PageContext): AgentPart {
  /** The page identity whose kept rules are on show (`always.ts` keeps them per identity). */
  let self: string | undefined
  let kept: AlwaysEntry[] = []

  /** Ask the person about an offer; settles with the answer (`false` on Deny, Escape, timeout, or the requester giving up). */
  const ask = async (request: OfferRequest, signal: AbortSignal): Promise<boolean | 'always'> => {
    // "Always" only on an end-to-end encrypted connection (a verified id), and for what a rule can say.
    const canAlways = request.secure && ruleForOffer(request.offer, request.peerId) !== undefined
    const { answer, checked } = await prompt({
      title: request.offer.kind === 'accept' ? 'Connections offered' : 'Tunnel request',
      text: question(request, ctx.nameOf(request.peerId)),
      actions: [{ answer: 'deny', label: 'Deny' }, { answer: 'allow', label: 'Allow', grants: true }],
      deny: 'deny',
      timeoutMs: ctx.agent?.askTimeoutMs ?? 60_000,
      signal,
      checkbox: canAlways ? 'Always for this peer' : undefined,
      checkboxDisabled: kept.length >= MAX_ALWAYS_RULES ? `the always-allowed list has ${MAX_ALWAYS_RULES}: forget one first` : undefined,
      data: { peer: request.peerId, kind: request.offer.kind }
    })
    if (answer !== 'allow') return false
    return checked ? 'always' : true
  }

  /** The agent added a rule for an "always" answer: keep it for this identity (or, with the list full, take it back: the grant itself stands). */
  const ruleAdded = (agent: SockAgent, rule: SockRule, peerId: string): void => {
    if (self === undefined || ctx.agent !== agent) return
    const next = addAlways(self, { rule: rule.text, peerId, at: Date.now() })
    if (next === undefined) agent.setRules(agent.rules().filter((r) => r.text !== rule.text))
    else kept = next
    renderAlways()
  }

  /** Forget a kept rule: out of storage and out of the running agent, with the yes answers it stood for. */
  const forget = (entry: AlwaysEntry): void => {
    if (self !== undefined) kept = removeAlways(self, entry.rule)
    const agent = ctx.agent
    if (agent !== undefined) {
      agent.setRules(agent.rules().filter((r) => r.text !== entry.rule))
      agent.forgetAnswers(entry.peerId)
    }
    renderAlways()
  }

  /** The "always allowed" list, drawn again whole (it changes only on a person's action or a new session). */
  const renderAlways = (): void => {
    const list = byId('always-list')
    const focused = list.contains(document.activeElement) ? [...list.querySelectorAll('button')].indexOf(document.activeElement as HTMLButtonElement) : -1
    list.replaceChildren(...kept.map((entry) => {
      const item = el('li', { 'data-rule': entry.rule, 'data-peer': entry.peerId })
      const rule = loadRule(entry.rule)
      const words = `${ctx.nameOf(entry.peerId)} ${rule === undefined ? entry.rule : ruleWords(rule)}`
      const button = el('button', { type: 'button', class: 'forget', 'aria-label': `Forget: ${words}` }, 'Forget')
      button.addEventListener('click', () => forget(entry))
      item.append(el('strong', { class: 'peer-name' }, ctx.nameOf(entry.peerId)), ` ${rule === undefined ? '' : ruleWords(rule)} `, el('code', {}, entry.rule), ' ', button)
      return item
    }))
    byId('always-empty').hidden = kept.length > 0
    // Focus was on a Forget button that went: the next one (or the previous), else the list's title.
    if (focused >= 0) {
      const buttons = list.querySelectorAll('button')
      ;(buttons[Math.min(focused, buttons.length - 1)] ?? byId('always-title')).focus()
    }
  }

  const rows = new Map<Mapping, MappingRow>()

  /** Keep the mappings table in step: rows come and go with mappings; figures update in place (focus stays). */
  const renderMappings = (): void => {
    const live = new Set(ctx.agent?.mappings() ?? [])
    const body = byId('mappings').querySelector('tbody') as HTMLTableSectionElement
    for (const [m, row] of rows) {
      if (live.has(m)) continue
      const hadFocus = row.tr.contains(document.activeElement)
      const next = row.tr.nextElementSibling ?? row.tr.previousElementSibling
      row.tr.remove()
      rows.delete(m)
      if (hadFocus) (next?.querySelector('button') ?? byId('mappings-title')).focus()
    }
    for (const m of live) {
      let row = rows.get(m)
      if (row === undefined) {
        row = mappingRow(m, ctx.nameOf(m.peerId))
        body.append(row.tr)
        rows.set(m, row)
      }
      row.update()
    }
    byId('mappings-empty').hidden = rows.size > 0
  }

  ctx.on('session', ({ peer, agent }) => {
    // Synchronous with the agent's creation (`session.ts` emits this right after it): the kept
    // rules are in place before any offer can be decided.
    self = peer.peerId
    kept = loadAlways(self)
    const have = new Set(agent.rules().map((r) => r.text))
    agent.setRules([...agent.rules(), ...kept.map((e) => e.rule).filter((r) => !have.has(r))])
    agent.on('rule', ({ rule, peerId }) => ruleAdded(agent, rule, peerId))
    agent.on('mapping', (m) => {
      m.on('channel', renderMappings)
      renderMappings()
    })
    agent.on('mapping:close', renderMappings)
    renderAlways()
    renderMappings()
  })
  ctx.on('session:close', renderMappings)
  setInterval(renderMappings, 1000)

  return { ask }
}

/** A rule kept in storage, parsed (`undefined` if it no longer parses). */
function loadRule (text: string): SockRule | undefined {
  try {
    return parseRule(text)
  } catch {
    return undefined
  }
}

/** One row of the mappings table and how to bring its figures up to date. */
interface MappingRow {
  tr: HTMLTableRowElement
  update: () => void
}

/** A row for `m`: peer (name and badge), what, channels, bytes in and out (exact in `data-bytes-*`), the rate now (exact in `data-rate-*`), and Kill. */
function mappingRow (m: Mapping, name: string): MappingRow {
  const tr = el('tr', { 'data-mapping': m.label, 'data-peer': m.peerId, 'data-direction': m.local ? 'asked' : 'granted' })
  const peerCell = el('td')
  peerCell.append(el('strong', { class: 'peer-name' }, name), ' ', badge({ secure: m.secure }))
  const what = el('td', { class: 'what' }, `${m.local ? 'you asked: ' : 'you granted: '}${m.label}`)
  const channels = el('td', { class: 'channels' })
  const bytesIn = el('td', { class: 'bytes-in' })
  const bytesOut = el('td', { class: 'bytes-out' })
  const rate = el('td', { class: 'rate' })
  const kill = el('button', { type: 'button', class: 'kill', 'aria-label': `Kill ${m.local ? 'the mapping you asked of' : 'the mapping you granted'} ${name}: ${m.label}` }, 'Kill')
  kill.addEventListener('click', () => m.kill('killed in the page'))
  const actions = el('td')
  actions.append(kill)
  tr.append(peerCell, what, channels, bytesIn, bytesOut, rate, actions)
  const meterIn = new RateMeter()
  const meterOut = new RateMeter()
  const set = (cell: HTMLElement, text: string): void => { if (cell.textContent !== text) cell.textContent = text }
  return {
    tr,
    update: () => {
      const s = m.stats()
      set(channels, String(s.channelsOpen))
      set(bytesIn, formatBytes(s.bytesIn))
      set(bytesOut, formatBytes(s.bytesOut))
      tr.dataset.bytesIn = String(s.bytesIn)
      tr.dataset.bytesOut = String(s.bytesOut)
      bytesIn.title = `${s.bytesIn} bytes`
      bytesOut.title = `${s.bytesOut} bytes`
      const now = performance.now()
      const rateIn = meterIn.sample(s.bytesIn, now)
      const rateOut = meterOut.sample(s.bytesOut, now)
      set(rate, `in ${formatBytes(rateIn)}/s, out ${formatBytes(rateOut)}/s`)
      // The figures shown, exact (bytes per second), for tests and tools.
      tr.dataset.rateIn = String(Math.round(rateIn))
      tr.dataset.rateOut = String(Math.round(rateOut))
    }
  }
}
