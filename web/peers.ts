/** The peers online: the list to pick from, and the picked peer with its badge. */
import { byId, el } from './dom.ts'
import type { PageContext } from './context.ts'
import { badge } from './security.ts'

export function setupPeers (ctx: PageContext): void {
  const renderPeers = (): void => {
    const list = byId('peer-list')
    const peers = ctx.peer?.peers() ?? []
    byId('peer-count').textContent = String(peers.length)
    list.replaceChildren(...peers.map(({ peerId }) => {
      const item = el('li', { role: 'option', tabindex: '0', 'aria-selected': String(peerId === ctx.picked), 'data-peer': peerId })
      item.append(el('span', { class: 'peer-id' }, peerId))
      const security = ctx.book.of(peerId)
      if (security !== undefined) item.append(' ', badge(security))
      const pick = (): void => ctx.pick(peerId)
      item.addEventListener('click', pick)
      item.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick() } })
      return item
    }))
  }

  /** The picked peer, with its badge once the page has a session with it (or failed to secure one). */
  const renderPicked = (): void => {
    if (ctx.picked === undefined) return
    const security = ctx.book.of(ctx.picked)
    byId('picked').replaceChildren(`Picked ${ctx.picked}`, ...(security === undefined ? [] : [' ', badge(security)]))
  }

  ctx.on('security', () => {
    renderPeers()
    renderPicked()
  })
  ctx.on('picked', () => {
    renderPicked()
    renderPeers()
  })
  ctx.on('session', ({ peer }) => {
    peer.on('peer:join', renderPeers)
    peer.on('peer:leave', (info) => { ctx.book.forget(info.peerId) })
    renderPeers()
  })
  ctx.on('session:close', renderPeers)
}
