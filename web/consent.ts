/** Offers from other peers (a person grants or denies them) and the mappings running, with Kill. */
import type { OfferRequest } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { byId, el } from './dom.ts'
import type { AgentPart, PageContext } from './context.ts'
import { badge } from './security.ts'

export function setupConsent (ctx: PageContext): AgentPart {
  /** Show an offer with accept and deny; settles with the answer (or `false` when withdrawn). */
  const askHere = async (request: OfferRequest, signal: AbortSignal): Promise<boolean> => {
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
  const renderMappings = (): void => {
    const live = new Set(ctx.agent?.mappings() ?? [])
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

  ctx.on('session', ({ agent }) => {
    agent.on('mapping', (m) => {
      m.on('channel', renderMappings)
      renderMappings()
    })
    agent.on('mapping:close', renderMappings)
  })
  ctx.on('session:close', renderMappings)
  setInterval(renderMappings, 1000)

  return { ask: askHere }
}
