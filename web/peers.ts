/**
 * The peers online and this page's own display name. The list shows per peer an icon for its kind,
 * the name it chose (its word, relayed by the server), its short id (the full id in the title and
 * for screen readers: the id is what the secure channel verifies), its badge and its unread count;
 * it is a listbox with a roving tabindex (Up/Down/Home/End move, Enter/Space pick). `ctx.nameOf`
 * names a peer as "name (short id)" for every other part.
 */
import type { PeerInfo } from '../client/peer-list.ts'
import { StarsockError } from '../shared/errors.ts'
import { checkName, type PeerKind } from '../shared/profile.ts'
import { byId, el, inert, shortId } from './dom.ts'
import type { PageContext } from './context.ts'
import { badge, describeError } from './security.ts'
import type { ChatThreads } from './threads.ts'

/**
 * Icon (SVG path data on a 16x16 box; no emoji, which a system without an emoji font shows as a
 * box) and words of each kind of peer, and of one whose kind the server did not say (a legacy
 * peer, an older server).
 */
const KINDS: Record<PeerKind | 'unknown', { path: string, words: string }> = {
  // A browser window: a frame and its tab bar.
  browser: { path: 'M2 3h12v10H2z M2 6h12', words: 'browser' },
  // Node's hexagon.
  node: { path: 'M8 1.5l5.6 3.25v6.5L8 14.5l-5.6-3.25v-6.5z', words: 'Node program' },
  // Two arrows, one each way: the server's own peer that relays.
  gateway: { path: 'M2 5.5h10 M9 2.5l3 3-3 3 M14 10.5H4 M7 7.5l-3 3 3 3', words: 'server gateway' },
  unknown: { path: 'M5.5 6a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .8-1 1.5V11 M8 13v.5', words: 'unknown kind' }
}

const SVG = 'http://www.w3.org/2000/svg'

/** The icon of `kind`, with its words as the text alternative. */
function kindIcon (kind: PeerKind | 'unknown'): SVGSVGElement {
  const { path, words } = KINDS[kind]
  const svg = document.createElementNS(SVG, 'svg')
  for (const [k, v] of Object.entries({ class: 'kind', role: 'img', 'aria-label': words, 'data-kind': kind, viewBox: '0 0 16 16', width: '16', height: '16' })) svg.setAttribute(k, v)
  const title = document.createElementNS(SVG, 'title')
  title.textContent = words
  const shape = document.createElementNS(SVG, 'path')
  shape.setAttribute('d', path)
  svg.append(title, shape)
  return svg
}

const nameKey = (peerId: string): string => `starsock:name:${peerId}`

/** What this browser keeps as the display name of the identity `peerId`, unchecked. */
function storedName (peerId: string): string | null {
  try { return localStorage.getItem(nameKey(peerId)) } catch { return null }
}

/** The display name this browser keeps for the identity `peerId` (checked again: storage is not trusted either). */
export function savedName (peerId: string): string | undefined {
  const name = checkName(storedName(peerId))
  return name instanceof StarsockError ? undefined : name
}

/** Why the name kept for `peerId` is not used (a rule it was saved before, or storage changed); `undefined` when it is, or there is none. */
function savedNameRefusal (peerId: string): string | undefined {
  const stored = storedName(peerId)
  const name = checkName(stored)
  if (!(name instanceof StarsockError) || stored === null) return undefined
  const shown = [...inert(stored)].slice(0, 60).join('')
  return `Your saved name "${shown}" is not used: ${describeError(name)}. Other peers see no name until you give another.`
}

/** Keep `name` for the identity `peerId` (`undefined`: none). */
function saveName (peerId: string, name: string | undefined): void {
  try {
    if (name === undefined) localStorage.removeItem(nameKey(peerId))
    else localStorage.setItem(nameKey(peerId), name)
  } catch {}
}

/** "name (short id)", or the short id of a peer without a name. */
function nameOf (info: PeerInfo | undefined, peerId: string): string {
  return info?.name !== undefined ? `${info.name} (${shortId(peerId)})` : shortId(peerId)
}

export function setupPeers (ctx: PageContext, threads: ChatThreads): void {
  const list = byId<HTMLUListElement>('peer-list')
  /** The peers of the session on show, by id, in the order they came. */
  const infos = new Map<string, PeerInfo>()
  /** The peer whose row takes Tab (the roving tabindex). */
  let active: string | undefined

  ctx.nameOf = (peerId) => nameOf(infos.get(peerId), peerId)

  /** One row: icon, name, short id (full id for screen readers and in the title), badge, unread. */
  const row = (info: PeerInfo): HTMLLIElement => {
    const { peerId } = info
    const item = el('li', { id: `peer-${peerId}`, role: 'option', tabindex: peerId === active ? '0' : '-1', 'aria-selected': String(peerId === ctx.picked), 'data-peer': peerId, title: peerId })
    item.append(kindIcon(info.kind ?? 'unknown'))
    // <bdi>: a name in a right-to-left script does not reorder the id beside it.
    if (info.name !== undefined) item.append(el('bdi', { class: 'peer-name' }, info.name))
    item.append(el('code', { class: 'peer-short', 'aria-hidden': 'true' }, shortId(peerId)))
    item.append(el('span', { class: 'peer-id visually-hidden' }, `peer id ${peerId}`))
    const security = ctx.book.of(peerId)
    if (security !== undefined) item.append(' ', badge(security))
    const unread = threads.unread(peerId)
    if (unread > 0) {
      const count = el('span', { class: 'unread', 'data-count': String(unread) }, String(unread))
      count.append(el('span', { class: 'visually-hidden' }, ' unread'))
      item.append(count)
    }
    return item
  }

  /** A whole-list render asked for by what peers do (joins, leaves, sessions), made once a frame. */
  let renderFrame = 0
  const renderSoon = (): void => {
    if (renderFrame === 0) renderFrame = requestAnimationFrame(() => { renderFrame = 0; render() })
  }

  const render = (): void => {
    if (renderFrame !== 0) cancelAnimationFrame(renderFrame)
    renderFrame = 0
    const focused = document.activeElement instanceof HTMLElement && list.contains(document.activeElement) ? document.activeElement.dataset.peer : undefined
    if (active === undefined || !infos.has(active)) active = ctx.picked !== undefined && infos.has(ctx.picked) ? ctx.picked : infos.keys().next().value
    byId('peer-count').textContent = String(infos.size)
    list.replaceChildren(...[...infos.values()].map(row))
    // Rows are made anew: the one that had focus gets it back.
    if (focused !== undefined) rowOf(focused)?.focus()
  }

  /** Make `peerId`'s row anew (its unread count or profile changed), keeping focus on it; the rest stays. */
  const renderRow = (peerId: string): void => {
    const old = rowOf(peerId)
    const info = infos.get(peerId)
    if (old === undefined || info === undefined) return
    const focused = document.activeElement === old
    const fresh = row(info)
    old.replaceWith(fresh)
    if (focused) fresh.focus()
  }

  const rowOf = (peerId: string): HTMLElement | undefined => list.querySelector<HTMLElement>(`li[data-peer="${CSS.escape(peerId)}"]`) ?? undefined

  /** Make `peerId`'s row the one Tab reaches, and focus it. */
  const moveTo = (peerId: string | undefined): void => {
    if (peerId === undefined) return
    rowOf(active ?? '')?.setAttribute('tabindex', '-1')
    active = peerId
    const target = rowOf(peerId)
    target?.setAttribute('tabindex', '0')
    target?.focus()
    target?.scrollIntoView({ block: 'nearest' })
  }

  list.addEventListener('keydown', (e) => {
    const ids = [...infos.keys()]
    const here = (e.target as HTMLElement).dataset.peer
    const at = here === undefined ? -1 : ids.indexOf(here)
    const to = e.key === 'ArrowDown' ? ids[Math.min(at + 1, ids.length - 1)]
      : e.key === 'ArrowUp' ? ids[Math.max(at - 1, 0)]
        : e.key === 'Home' ? ids[0]
          : e.key === 'End' ? ids[ids.length - 1] : undefined
    if (to !== undefined) {
      e.preventDefault()
      moveTo(to)
    } else if ((e.key === 'Enter' || e.key === ' ') && here !== undefined) {
      e.preventDefault()
      ctx.pick(here)
    }
  })
  list.addEventListener('click', (e) => {
    const here = (e.target as HTMLElement).closest<HTMLElement>('li[data-peer]')?.dataset.peer
    if (here === undefined) return
    moveTo(here)
    ctx.pick(here)
  })
  list.addEventListener('focusin', (e) => {
    const here = (e.target as HTMLElement).dataset.peer
    if (here !== undefined && here !== active) moveTo(here)
  })

  /** The picked peer, by name and id, with its badge once the page has a session with it (or failed to secure one). */
  const renderPicked = (): void => {
    if (ctx.picked === undefined) return
    const security = ctx.book.of(ctx.picked)
    byId('picked').replaceChildren(`Picked ${ctx.nameOf(ctx.picked)}`, ...(security === undefined ? [] : [' ', badge(security)]))
    byId('picked').title = ctx.picked
  }

  // Many at once when many peers come or go (a crowd leaving): the list is made once a frame, not once each.
  ctx.on('security', () => {
    renderSoon()
    renderPicked()
  })
  ctx.on('picked', () => {
    if (ctx.picked !== undefined) active = ctx.picked
    renderPicked()
    render()
  })
  threads.on('unread', renderRow)
  ctx.on('session', ({ peer }) => {
    infos.clear()
    for (const info of peer.peers()) infos.set(info.peerId, info)
    const update = (info: PeerInfo): void => {
      if (ctx.peer !== peer) return
      const known = infos.has(info.peerId)
      infos.set(info.peerId, info)
      if (known) renderRow(info.peerId)
      else renderSoon()
      if (info.peerId === ctx.picked) renderPicked()
    }
    peer.on('peer:join', update)
    peer.on('peer:profile', update)
    peer.on('peer:leave', (info) => {
      if (ctx.peer !== peer) return
      infos.delete(info.peerId)
      ctx.book.forget(info.peerId)
      renderSoon()
    })
    byId<HTMLInputElement>('my-name').value = savedName(peer.peerId) ?? ''
    const refusal = savedNameRefusal(peer.peerId)
    if (refusal !== undefined) {
      const result = byId('name-result')
      result.textContent = refusal
      result.dataset.state = 'failed'
    }
    render()
  })
  ctx.on('session:close', () => {
    infos.clear()
    render()
  })
  setupNameForm(ctx)
}

/** "You": the display name field; kept per identity in this browser, applied live with `setProfile`. */
function setupNameForm (ctx: PageContext): void {
  const input = byId<HTMLInputElement>('my-name')
  const result = byId('name-result')
  const say = (text: string, state: 'done' | 'failed'): void => {
    result.textContent = text
    result.dataset.state = state
  }
  byId<HTMLFormElement>('name-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const name = checkName(input.value)
    if (name instanceof StarsockError) return say(describeError(name), 'failed')
    const peer = ctx.peer
    if (peer === undefined) return say('Not joined yet: the name is used once this page joins.', 'failed')
    input.value = name ?? ''
    peer.setProfile({ name }).then(() => {
      saveName(peer.peerId, name)
      say(name === undefined ? 'Other peers see no name, only your id.' : `Other peers see you as ${name} (${shortId(peer.peerId)}).`, 'done')
    }, (err: unknown) => { say(`Not changed: ${describeError(err)}`, 'failed') })
  })
}
